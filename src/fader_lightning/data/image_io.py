"""Reading images and masks from disk as a person means them, with errors that name the file.

* Images: grayscale, palette, 16-bit, 32-bit integer and float sources become RGB ``uint8``; 16-bit sources are
  scaled by their bit depth, float and 32-bit sources from their value range (``[0, 1]``, ``[0, 255]`` or
  ``[0, 65535]``; anything else by the image's own minimum and maximum, with a warning).
* Masks: a palette mask is read by colour, not by palette index; a mask whose colour is constant but whose alpha
  channel varies is read from its alpha channel; lossless masks mark a defect where any value is above 0 (VisA
  masks are label-valued, not 0/255); JPEG masks, whose compression smears edges, are thresholded at mid-grey.
* Headers above Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, raised with
  ``FADER_MAX_IMAGE_PIXELS``) are refused before any pixel is decoded.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fader_lightning.errors import DataError

log = logging.getLogger(__name__)

MAX_PIXELS_ENV = "FADER_MAX_IMAGE_PIXELS"
JPEG_MASK_THRESHOLD = 128


@dataclass(frozen=True)
class FileInfo:
    """What a full decode of one file found.

    Attributes:
        width: Width in pixels.
        height: Height in pixels.
        lossy: Whether the file is JPEG-compressed (masks then get a mid-grey threshold).
    """

    width: int
    height: int
    lossy: bool


def _pixel_limit() -> int:
    """The largest number of pixels a header may declare (Pillow's limit unless ``FADER_MAX_IMAGE_PIXELS`` is set)."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return int(Image.MAX_IMAGE_PIXELS or 0)
    try:
        return int(value)
    except ValueError as err:
        raise DataError(f"{MAX_PIXELS_ENV}={value!r} is not an integer number of pixels") from err


def _open(path: Path, decode: bool = True) -> Image.Image:
    if not path.is_file():
        raise DataError(f"image file {path} does not exist; check the dataset root and layout")
    if path.stat().st_size == 0:
        raise DataError(f"image file {path} is empty (0 bytes); re-copy it from the original archive")
    limit = _pixel_limit()
    if limit and limit > 2 * (Image.MAX_IMAGE_PIXELS or 0):  # a raised limit must also lift Pillow's own refusal
        Image.MAX_IMAGE_PIXELS = limit
    try:
        image = Image.open(path)
        width, height = image.size
        if limit and width * height > limit:
            image.close()
            raise DataError(
                f"image file {path} declares {width}x{height} = {width * height:,} pixels, above the limit of "
                f"{limit:,} (a decompression-bomb guard; decoding it would take about "
                f"{width * height * 3 / 2**30:.1f} GiB). If the file is genuine, downscale it, or raise the limit "
                f"with {MAX_PIXELS_ENV}={width * height}"
            )
        if decode:
            image.load()
    except Image.DecompressionBombError as err:
        raise DataError(f"image file {path}: {err}; downscale it, or raise the limit with {MAX_PIXELS_ENV}") from err
    except UnidentifiedImageError as err:
        raise DataError(f"image file {path} is not a readable image format; re-copy it or remove it") from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise DataError(
            f"image file {path} is corrupt or truncated ({err}); re-copy it from the original archive"
        ) from err
    return image


def decode_info(path: Path) -> FileInfo:
    """Decode a file completely (so truncation shows) and report its size and compression.

    Args:
        path: Image or mask file.

    Returns:
        Its :class:`FileInfo`.

    Raises:
        DataError: When the file is missing, empty, corrupt, truncated or too large.
    """
    with _open(path) as image:
        return FileInfo(image.size[0], image.size[1], image.format == "JPEG")


def scale_to_uint8(array: np.ndarray, source: Path | str) -> np.ndarray:
    """Map a float or 32-bit integer array to ``uint8`` by the value range it lies in.

    Values within [0, 1], [0, 255] or [0, 65535] are scaled by that range's top; any other range by its own minimum
    and maximum, with a warning naming ``source``.

    Args:
        array: The pixel values.
        source: Where they came from, for the warning.

    Returns:
        The ``uint8`` array.
    """
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    for top in (1.0, 255.0, 65535.0):
        if low >= 0.0 and high <= top:
            return (np.nan_to_num(array) / top * 255.0).round().clip(0, 255).astype(np.uint8)
    log.warning("image %s has values in [%g, %g]; scaled by its own minimum and maximum", source, low, high)
    return ((np.nan_to_num(array, nan=low) - low) / max(high - low, 1e-12) * 255.0).round().astype(np.uint8)


def read_image(path: Path) -> np.ndarray:
    """Read an image as RGB ``uint8`` (grayscale, palette, 16-bit, float and RGBA sources are converted).

    Args:
        path: Image file.

    Returns:
        Array of shape (H, W, 3), dtype uint8.

    Raises:
        DataError: When the file is missing, empty, corrupt, truncated or too large.
    """
    image = _open(path)
    if image.mode in ("I;16", "I;16B", "I;16L"):  # 16-bit sources: scale by the bit depth, not per image
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((array / 65535.0 * 255.0).round().clip(0, 255).astype(np.uint8))
    elif image.mode in ("I", "F"):
        image = Image.fromarray(scale_to_uint8(np.asarray(image, dtype=np.float64), path))
    return np.array(image.convert("RGB"), dtype=np.uint8)


def read_mask(path: Path) -> np.ndarray:
    """Read a pixel mask as a person means it (see the module docstring) and binarise it.

    Args:
        path: Mask file.

    Returns:
        Array of shape (H, W), dtype uint8, values in {0, 1}.

    Raises:
        DataError: When the file is missing, empty, corrupt, truncated or too large.
    """
    image = _open(path)
    lossy = image.format == "JPEG"
    if image.mode == "P":  # by colour, not by palette index
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    array = np.asarray(image)
    if image.mode in ("LA", "RGBA"):
        colour, alpha = array[..., :-1], array[..., -1]
        array = alpha if alpha.min() != alpha.max() and colour.min() == colour.max() else colour
    if array.ndim == 3:
        array = array.max(axis=-1)
    return ((array >= JPEG_MASK_THRESHOLD) if lossy else (array > 0)).astype(np.uint8)

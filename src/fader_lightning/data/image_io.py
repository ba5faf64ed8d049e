"""Reading images and masks from disk with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fader_lightning.errors import DataError


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(f"image file {path} does not exist; check the dataset root and layout")
    if path.stat().st_size == 0:
        raise DataError(f"image file {path} is empty (0 bytes); re-copy it from the original archive")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(
            f"image file {path} is corrupt or truncated ({err}); re-copy it from the original archive"
        ) from err
    return image


def image_size(path: Path) -> tuple[int, int]:
    """Read the (width, height) of an image from its header only.

    Args:
        path: Image file.

    Returns:
        Width and height in pixels.

    Raises:
        DataError: When the file is missing, empty or not an image.
    """
    if not path.is_file() or path.stat().st_size == 0:
        _open(path)
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"image file {path} is not a readable image ({err}); re-copy it") from err


def read_image(path: Path) -> np.ndarray:
    """Read an image as RGB ``uint8`` (grayscale, palette, 16-bit and RGBA sources are converted).

    Args:
        path: Image file.

    Returns:
        Array of shape (H, W, 3), dtype uint8.

    Raises:
        DataError: When the file is missing, empty, corrupt or truncated.
    """
    image = _open(path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit sources: scale by the bit depth, not per image
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((array / 65535.0 * 255.0).round().clip(0, 255).astype(np.uint8))
    return np.array(image.convert("RGB"), dtype=np.uint8)


def read_mask(path: Path) -> np.ndarray:
    """Read a pixel mask and binarise it with ``> 0`` (VisA masks are not stored as 0/255).

    Args:
        path: Mask file.

    Returns:
        Array of shape (H, W), dtype uint8, values in {0, 1}.

    Raises:
        DataError: When the file is missing, empty, corrupt or truncated.
    """
    array = np.asarray(_open(path))
    if array.ndim == 3:
        array = array[..., :3].max(axis=-1) if array.shape[-1] >= 3 else array[..., 0]
    return (array > 0).astype(np.uint8)

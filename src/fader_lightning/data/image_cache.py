"""Resized images and masks kept on disk, so that the jobs of a sweep decode and resize each file once.

Decoding a 900-px PNG costs about as much as a fifth of the U-Net forward at 128 px, and every job of a sweep over
masking methods, seeds or FADeR settings reads the same files at the same size.

* An entry holds one sample's resized image and mask as a single ``(H, W, 4)`` ``uint8`` array (RGB, then the mask)
  in NumPy's ``.npy`` format: loading it takes about a millisecond.
* Its name is a hash of what decides its content: the image and mask files (path, size and modification time), the
  output size, the interpolation, and the code that makes it (the source of :mod:`~fader_lightning.data.image_io`
  and :mod:`~fader_lightning.data.transforms`, and the versions of Pillow, OpenCV and albumentations). A changed
  file, size, method or reader is a new name, so an entry is never stale.
* A damaged entry is read again from the source and rewritten. Entries are written atomically, so jobs running at
  once may share the folder.
* The folder grows by ``H * W * 4`` bytes per image (256 KiB at 256 px) and can be deleted at any time.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import threading
from pathlib import Path

import albumentations
import cv2
import numpy as np
import PIL

from fader_lightning.data import image_io, transforms
from fader_lightning.data.samples import Sample
from fader_lightning.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)

_FAILURE_LOCK = threading.Lock()
FORMAT = 1
"""Version of the entry layout; part of every name, so a new layout never reads an old entry."""


@functools.cache
def reader_identity() -> str:
    """A digest of the code that decodes and resizes: a change to it names every entry anew."""
    digest = hashlib.sha256()
    for module in (image_io, transforms):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(f"{PIL.__version__} {cv2.__version__} {albumentations.__version__}".encode())
    return digest.hexdigest()


def _file_identity(path: Path | None) -> list[object] | None:
    """What identifies a file's content without reading it: resolved path, size and modification time."""
    if path is None:
        return None
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


class ResizedImageCache:
    """A folder of resized image-and-mask arrays.

    Args:
        folder: Where the entries live (created on the first write).
        image_size: Height and width of the resized arrays.
        interpolation: The image resize method (part of every entry's name).
    """

    def __init__(self, folder: str | Path, image_size: tuple[int, int], interpolation: str) -> None:
        self.folder = Path(folder)
        self.image_size = tuple(image_size)
        self.interpolation = interpolation
        self.writable = True

    def entry(self, sample: Sample) -> Path:
        """The file that holds (or will hold) a sample's resized image and mask.

        Args:
            sample: The sample.

        Returns:
            Its path inside :attr:`folder`.
        """
        identity = [FORMAT, reader_identity(), _file_identity(sample.image_path), _file_identity(sample.mask_path),
                    list(self.image_size), self.interpolation]  # fmt: skip
        digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray] | None:
        """A sample's cached image ``(H, W, 3)`` and mask ``(H, W)``, or ``None`` when the cache lacks them.

        Args:
            sample: The sample.

        Returns:
            The arrays, or ``None`` for a missing or damaged entry (which the next :meth:`store` replaces).
        """
        path = self.entry(sample)
        if not path.is_file():
            return None
        try:
            stacked = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            log.warning("image cache entry %s is damaged (%s); reading %s again", path, err, sample.image_path)
            return None
        if stacked.dtype != np.uint8 or stacked.shape != (*self.image_size, 4):
            log.warning("image cache entry %s has the wrong shape; reading %s again", path, sample.image_path)
            return None
        return stacked[..., :3], stacked[..., 3]

    def store(self, sample: Sample, image: np.ndarray, mask: np.ndarray) -> None:
        """Keep a sample's resized image and mask (atomically: readers never see half an entry).

        A folder that cannot be written is reported once; the job then goes on without storing.

        Args:
            sample: The sample.
            image: Resized image, ``(H, W, 3)`` ``uint8``.
            mask: Resized mask, ``(H, W)`` ``uint8``.
        """
        if not self.writable:
            return
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate([image, mask[..., None]], axis=-1), allow_pickle=False)
        try:
            atomic_write_bytes(self.entry(sample), buffer.getvalue())
        except OSError as err:
            with _FAILURE_LOCK:  # the threads that fill the cache may fail at once: report it once
                if not self.writable:
                    return
                self.writable = False
            log.warning("data.image_cache=%s cannot be written (%s); going on without it (set data.image_cache to a "
                        "writable folder, or null)", self.folder, err.strerror or err)  # fmt: skip

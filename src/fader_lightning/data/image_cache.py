"""Resized images and masks kept on disk, so that the jobs of a sweep decode and resize each file once.

Decoding a 900-px PNG costs about as much as a fifth of the U-Net forward at 128 px, and every job of a sweep over
masking methods, seeds or FADeR settings reads the same files at the same size.

* An entry holds one sample's resized image and mask as a single ``(H, W, 4)`` ``uint8`` array (RGB, then the mask)
  in NumPy's ``.npy`` format, followed by a 32-byte check: the SHA-256 of the entry's name and the array's bytes
  (``np.load`` ignores it). Loading and checking an entry takes about a millisecond.
* Its name is a hash of what decides its content: the SHA-256 digests of the image and mask files' bytes (see
  :func:`~fader_lightning.data.verify.file_digest`), the output size, the interpolation, and the code that makes it
  (the source of :mod:`~fader_lightning.data.image_io` and :mod:`~fader_lightning.data.transforms`, and the versions
  of Pillow, OpenCV and albumentations). A changed file, size, method or reader is a new name, so an entry is never
  stale, whatever the file's size and modification time say (``touch -r``, ``cp -p`` and ``tar`` keep them).
* An entry whose check fails (a damaged entry, or another entry's file copied over it: its check was made for
  another name) is reported once, read again from the source and rewritten. Entries are written atomically, so
  jobs running at once may share the folder.
* The folder grows by ``H * W * 4`` bytes per image (256 KiB at 256 px) and can be deleted at any time.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
import os
import threading
from pathlib import Path

import albumentations
import cv2
import numpy as np
import PIL

from fader_lightning.data import image_io, transforms
from fader_lightning.data.samples import Sample
from fader_lightning.data.verify import file_digest
from fader_lightning.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)

_FAILURE_LOCK = threading.Lock()
FORMAT = 2
"""Version of the entry layout; part of every name, so a new layout never reads an old entry."""
CHECK_BYTES = 32
"""Length of the check that ends every entry (a SHA-256 digest)."""


@functools.cache
def reader_identity() -> str:
    """A digest of the code that decodes and resizes: a change to it names every entry anew."""
    digest = hashlib.sha256()
    for module in (image_io, transforms):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(f"{PIL.__version__} {cv2.__version__} {albumentations.__version__}".encode())
    return digest.hexdigest()


def _check(entry: Path, array_bytes: bytes | memoryview) -> bytes:
    """The 32 bytes that end an entry: they tie its array to its name, so another entry's file fails them."""
    digest = hashlib.sha256(entry.stem.encode())
    digest.update(array_bytes)
    return digest.digest()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header that ``np.save`` writes for a ``uint8`` array of ``shape``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _read(path: Path) -> bytearray:
    """A file's bytes in a writable buffer: the arrays made on it are then writable without a copy."""
    with path.open("rb") as handle:
        content = bytearray(os.fstat(handle.fileno()).st_size)
        handle.readinto(content)
    return content


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
        self._header = _npy_header((*self.image_size, 4))
        self._reported: set[Path] = set()

    def entry(self, sample: Sample) -> Path:
        """The file that holds (or will hold) a sample's resized image and mask.

        Args:
            sample: The sample.

        Returns:
            Its path inside :attr:`folder`.
        """
        mask = None if sample.mask_path is None else file_digest(sample.mask_path)
        identity = [FORMAT, reader_identity(), file_digest(sample.image_path), mask, list(self.image_size),
                    self.interpolation]  # fmt: skip
        digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray] | None:
        """A sample's cached image ``(H, W, 3)`` and mask ``(H, W)``, or ``None`` when the cache lacks them.

        Args:
            sample: The sample.

        Returns:
            The arrays, or ``None`` for a missing entry or one whose check fails (which the next :meth:`store`
            replaces).
        """
        path = self.entry(sample)
        try:
            content = _read(path)
        except FileNotFoundError:
            return None
        except OSError as err:
            return self._reject(path, f"is unreadable ({err.strerror or err})", sample)
        array_bytes = memoryview(content)[:-CHECK_BYTES]
        if _check(path, array_bytes) != content[-CHECK_BYTES:]:
            return self._reject(path, "is damaged or holds another image (its check fails)", sample)
        if array_bytes[: len(self._header)] != self._header:
            return self._reject(path, "has the wrong shape", sample)
        shape = (*self.image_size, 4)
        stacked = np.frombuffer(content, np.uint8, count=math.prod(shape), offset=len(self._header)).reshape(shape)
        return stacked[..., :3], stacked[..., 3]

    def _reject(self, entry: Path, problem: str, sample: Sample) -> None:
        """Report an entry that cannot be used, once per entry; the caller then reads the source and rewrites it."""
        with _FAILURE_LOCK:  # the threads that fill the cache may meet it at once
            if entry in self._reported:
                return
            self._reported.add(entry)
        log.warning("image cache entry %s %s; reading %s again and rewriting the entry", entry, problem,
                    sample.image_path)  # fmt: skip

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
        array_bytes, path = buffer.getvalue(), self.entry(sample)
        try:
            atomic_write_bytes(path, array_bytes + _check(path, array_bytes))
        except OSError as err:
            with _FAILURE_LOCK:  # the threads that fill the cache may fail at once: report it once
                if not self.writable:
                    return
                self.writable = False
            log.warning("data.image_cache=%s cannot be written (%s); going on without it (set data.image_cache to a "
                        "writable folder, or null)", self.folder, err.strerror or err)  # fmt: skip

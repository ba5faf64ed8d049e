"""Decode every file of a split before any work, in parallel, remembering files already checked.

A truncated test image or mask must fail before stage 1 trains, not an hour later in the test loop. Decoding a
full MVTec AD category takes seconds on a few threads (Pillow releases the GIL while decoding); the result of
each file is remembered by a SHA-256 digest of its bytes (and of the decoding code), in memory and optionally in a
JSON file, so the jobs of a sweep check a file once. A file whose bytes changed is checked again, whatever its
size and modification time say: ``touch -r``, ``cp -p`` or ``tar`` cannot make a changed file pass as checked.

Hashing a file costs 2-3% of decoding it (SHA-256 of a 900-px MVTec AD PNG of about 0.5 MB: 0.5-1 ms, against
17-40 ms to decode it), and :func:`file_digest` remembers each digest in the process, so the stage-1 store, this
check and the image cache hash each file once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import PIL
import torch

from fader_lightning.data import image_io
from fader_lightning.data.image_io import FileInfo, decode_info
from fader_lightning.utils.io import atomic_write_json

log = logging.getLogger(__name__)

_CHECKED: dict[str, dict[str, int | bool]] = {}
_DIGESTS: dict[tuple[int, ...], str] = {}
RACY_NS = 2_000_000_000
"""A digest is remembered only for a file unchanged this long before hashing began: a file changed again within
its file system's timestamp granularity could keep the same ``ctime`` (git's "racy" files)."""


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, remembered in this process while its device, inode, size and times stay.

    The change time (``ctime``) is set by the kernel on every write and every ``utime``, and cannot be set back
    by a user, so a remembered digest is never served for changed bytes.

    Args:
        path: The file.

    Returns:
        The hex digest.
    """
    stat = path.stat()
    signature = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    known = _DIGESTS.get(signature)
    if known is not None:
        return known
    started = time.time_ns()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    value = digest.hexdigest()
    if stat.st_ctime_ns < started - RACY_NS:
        _DIGESTS[signature] = value
    return value


@functools.cache
def _decoder_identity() -> str:
    """A digest of the code that decodes: a change to it checks every file again."""
    digest = hashlib.sha256(Path(image_io.__file__).read_bytes())
    digest.update(PIL.__version__.encode())
    return digest.hexdigest()


def _key(path: Path) -> str:
    """What a file's verdict is remembered under: the digests of its bytes and of the decoding code."""
    return hashlib.sha256(f"{_decoder_identity()} {file_digest(path)}".encode()).hexdigest()


def _read_cache(cache_file: Path | None) -> dict[str, dict[str, int | bool]]:
    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        stored = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        log.warning("decode-check cache %s is unreadable; checking every file again", cache_file)
        return {}
    if not isinstance(stored, dict):
        return {}
    fields = set(FileInfo.__dataclass_fields__)
    return {key: entry for key, entry in stored.items() if isinstance(entry, dict) and set(entry) == fields}


def decode_all(
    paths: Iterable[Path], cache_file: str | Path | None = None, workers: int | None = None
) -> dict[Path, FileInfo]:
    """Decode each file completely unless a file of the same bytes was checked before by the same code.

    Args:
        paths: Image and mask files (each must exist; see :func:`~fader_lightning.data.samples.validate_samples`).
        cache_file: JSON file remembering checked files across processes (``None``: this process only).
        workers: Decoding threads (default: the job's thread budget, ``torch.get_num_threads()``, at most 8).

    Returns:
        The :class:`FileInfo` of every path.

    Raises:
        DataError: For the first file (in the given order) that is corrupt, truncated or too large.
    """
    cache_path = None if cache_file is None else Path(cache_file)
    known = {**_read_cache(cache_path), **_CHECKED}
    paths = list(dict.fromkeys(paths))
    workers = workers or min(8, torch.get_num_threads())
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # hashlib releases the GIL too
        keys = list(pool.map(_key, paths))
        todo = [(path, key) for path, key in zip(paths, keys, strict=True) if key not in known]
        infos = list(pool.map(lambda item: _try_decode(item[0]), todo))
    if todo:
        for (_path, key), info in zip(todo, infos, strict=True):
            if isinstance(info, Exception):
                raise info
            known[key] = _CHECKED[key] = asdict(info)
        if cache_path is not None:
            try:
                atomic_write_json(cache_path, {**_read_cache(cache_path), **{key: known[key] for _p, key in todo}})
            except OSError as err:
                log.warning("cannot write the decode-check cache %s (%s); files are checked again", cache_path, err)
        log.info("decoded %d files (%d remembered from earlier checks)", len(todo), len(paths) - len(todo))
    return {path: FileInfo(**known[key]) for path, key in zip(paths, keys, strict=True)}


def _try_decode(path: Path) -> FileInfo | Exception:
    """The file's info, or the error decoding it raised (re-raised in order by :func:`decode_all`)."""
    try:
        return decode_info(path)
    except Exception as err:
        return err

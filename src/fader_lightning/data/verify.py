"""Decode every file of a split before any work, in parallel, remembering files already checked.

A truncated test image or mask must fail before stage 1 trains, not an hour later in the test loop. Decoding a
full MVTec AD category takes seconds on a few threads (Pillow releases the GIL while decoding); the result of
each file is remembered by path, size and modification time, in memory and optionally in a JSON file, so the
jobs of a sweep check a file once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import torch

from fader_lightning.data.image_io import FileInfo, decode_info
from fader_lightning.utils.io import atomic_write_json

log = logging.getLogger(__name__)

_CHECKED: dict[str, dict[str, int | bool]] = {}


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


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
    """Decode each file completely unless it was checked before with the same size and modification time.

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
    keys = [_key(path) for path in paths]
    todo = [(path, key) for path, key in zip(paths, keys, strict=True) if key not in known]
    if todo:
        workers = workers or min(8, torch.get_num_threads())
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            infos = list(pool.map(lambda item: _try_decode(item[0]), todo))
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

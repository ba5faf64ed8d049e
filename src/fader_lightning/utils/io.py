"""Atomic file writes: a crash never leaves a half-written result behind, nor a set of files half replaced."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fader_lightning.errors import ConfigError

REPLACED_PREFIX = ".replaced-"
"""``overwrite=true`` moves what it replaces into ``<folder>/.replaced-<time>/`` (a run's artefacts, a sweep's grid)."""


def aside_folder(folder: Path) -> Path:
    """Create ``folder/.replaced-<time>/``, where ``overwrite=true`` moves what it replaces."""
    replaced = folder / f"{REPLACED_PREFIX}{datetime.now():%Y-%m-%d_%H-%M-%S-%f}"
    replaced.mkdir()
    return replaced


def writable_folder(path: str | Path, key: str, names: Iterable[str] | None = None) -> Path:
    """Check, before any work, that ``path`` can be the output folder a command writes into.

    Args:
        path: The folder (created if missing).
        key: The argument that named it, for the error message.
        names: The entries the command writes there, when it writes only these (an export's files beside
            whatever else the folder holds); ``None``: the folder is the command's own.

    Returns:
        The folder.

    Raises:
        ConfigError: When it is an existing file, or cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={path} is a file; name a folder for the outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{key}={path} cannot be created ({err.strerror}); choose a writable folder") from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path} is not writable; choose a writable folder")
    check_links_stay_inside(path, names)
    return path


def check_links_stay_inside(folder: str | Path, names: Iterable[str] | None = None) -> None:
    """Refuse an output folder whose sub-folder is a symbolic link leading out of it.

    A command writes its files into named sub-folders (``checkpoints/``, ``overlays/``, ``maps/``); a link there
    would silently send them, and any overwrite of an existing name, somewhere else.

    Args:
        folder: The output folder.
        names: Only these entries (the ones the command writes); ``None``: every entry.

    Raises:
        ConfigError: Naming the link, where it leads, and the fix.
    """
    folder = Path(folder)
    root = folder.resolve()
    entries = folder.iterdir() if names is None else (folder / name for name in names)
    for entry in entries if folder.is_dir() else ():
        if entry.is_symlink() and not entry.resolve().is_relative_to(root):
            raise ConfigError(
                f"{entry} is a symbolic link to {entry.resolve()}, outside the output folder {folder}; outputs never "
                "follow a link out of their folder: remove the link or choose another output folder"
            )


RELATIONS: dict[str, str] = {
    "is": "writing it would replace that input",
    "holds": "the outputs written there could replace that input",
    "lies inside": "a re-run would read the outputs as inputs",
}
"""How an output may overlap an input (:func:`check_apart`), and why each is refused."""


def check_apart(
    key: str,
    output: str | Path,
    inputs: Mapping[str, str | os.PathLike | None],
    *,
    folder: bool = False,
    writes: Sequence[Path] = (),
) -> None:
    """Refuse an output that is one of the command's inputs, or, for an output folder, holds one or lies inside one.

    Paths are compared resolved (symbolic links followed, ``..`` removed), so a link to an input is caught too.

    Args:
        key: The argument that named the output (``output``).
        output: The file or folder the command writes.
        inputs: The command's inputs by argument (``ckpt_path``, ``input``, ...; ``None`` for one not given): files, or
            folders that count with everything in them.
        folder: ``output`` is a folder: it must neither hold an input nor lie inside an input folder.
        writes: Other files the command writes beside ``output`` (an export's weights and side-car).

    Raises:
        ConfigError: Naming the output, the input, why and the fix.
    """
    for name, given in inputs.items():
        if given is None:
            continue
        source = Path(given).resolve()
        for written in (Path(output), *writes):
            target = written.resolve()
            relation = "is" if target == source else None
            if folder and relation is None:
                relation = "holds" if source.is_relative_to(target) else None
                relation = relation or ("lies inside" if target.is_relative_to(source) else None)
            if relation is not None:
                what = f"{key}={output}" + (f" (its file {written})" if written != Path(output) else "")
                raise ConfigError(
                    f"{what} {relation} {name}={given}: {RELATIONS[relation]}; a command never writes over, into or "
                    f"beside what it reads: choose another {key}= apart from every input"
                )


@contextmanager
def staged(folder: str | Path, names: Sequence[str]) -> Iterator[Path]:
    """Write a set of entries of ``folder`` in a temporary sibling folder, and swap them in together at the end.

    Files that belong together (a model, its weights and its side-car; maps, overlays and the table that lists them)
    are written into the yielded folder. When the block completes, ``folder``'s earlier entries ``names`` are moved
    out, the new ones moved in (renames within one folder) and the earlier ones deleted; an entry of ``names`` the
    block did not write is removed too, so nothing of an earlier set stays beside the new one. When the block fails
    ``folder`` is left as it was, and when a rename fails the earlier entries are put back.

    Args:
        folder: The destination folder (created if missing).
        names: The entries that make up the set.

    Yields:
        The temporary folder (hidden, inside ``folder``, unique per process and call); it is removed at the end.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staged-", dir=folder))
    try:
        yield staging
        _swap_in(staging, folder, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, folder: Path, names: Sequence[str]) -> None:
    """Move ``folder``'s entries ``names`` out (into ``staging``), then ``staging``'s in; on an error, undo both."""
    replaced = staging / ".replaced"
    replaced.mkdir()
    moved_out, moved_in = [], []
    try:
        for name in names:
            if os.path.lexists(folder / name):
                os.rename(folder / name, replaced / name)
                moved_out.append(name)
        for name in names:
            if os.path.lexists(staging / name):
                os.rename(staging / name, folder / name)
                moved_in.append(name)
    except OSError:
        for name in moved_in:
            os.rename(folder / name, staging / name)
        for name in moved_out:
            os.rename(replaced / name, folder / name)
        raise


def _umask() -> int:
    """The process umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, unique per process and call, with the mode a plain open would give."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes to a temporary file in the same folder, fsync it, then rename it over ``path``.

    The file gets the mode a plain ``open`` would give it (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.

    Args:
        path: Destination file (its folder is created).
        data: Content.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (see :func:`atomic_write_bytes`).

    Args:
        path: Destination file.
        text: Content, written as UTF-8.

    Returns:
        The destination path.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (an undefined metric) replaced by ``None``, so it is strict JSON.

    Args:
        value: Nested dicts, lists, tuples and scalars.

    Returns:
        The same structure (tuples become lists).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    """Write strict JSON atomically, indented and with sorted keys.

    Args:
        path: Destination file.
        payload: JSON-serialisable object; NaN and infinite floats are written as ``null``.

    Returns:
        The destination path.
    """
    text = json.dumps(strict_json(payload), indent=2, sort_keys=True, default=str, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def atomic_save(path: str | Path, save: Callable[[Path], None]) -> Path:
    """Run a writer on a temporary path in the destination folder, then rename it into place.

    The temporary name is unique per process and call, so two writers of one folder never collide.

    Args:
        path: Destination file.
        save: Callable that writes the file at the path it is given (for example ``image.save``).

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = _temporary(path)
    os.close(fd)
    tmp = Path(name).with_suffix(f".tmp{path.suffix}")  # writers such as cv2 pick the format from the suffix
    os.replace(name, tmp)
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

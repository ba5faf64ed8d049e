"""Run folders that cannot mix: a job refuses a folder that already holds a run, and locks the folder it uses.

A re-run into an existing ``hydra.run.dir`` (or sweep folder) would otherwise train stage 2 on the previous run's
stage-1 model and point ``metrics.json`` at old checkpoints; two jobs in one folder at once would mix their seeds.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fader_lightning.errors import ConfigError
from fader_lightning.results import METRICS_FILE
from fader_lightning.utils.io import check_links_stay_inside, writable_folder

log = logging.getLogger(__name__)

LOCK_FILE = ".fader-run.lock"
RUN_ARTEFACTS = (METRICS_FILE, "checkpoints")


def prepare_run_dir(output_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that already holds a run, unless the job resumes it or is told to overwrite it.

    Args:
        output_dir: The job's run folder.
        resume: The job resumes training from a checkpoint (``ckpt_path=...``): the folder's run is continued.
        overwrite: ``overwrite=true``: the earlier run's ``metrics.json`` and checkpoints are deleted first.

    Raises:
        ConfigError: When the folder holds a run and neither applies, or a sub-folder is a symbolic link that
            leads out of it.
    """
    check_links_stay_inside(output_dir)
    found = [name for name in RUN_ARTEFACTS if (output_dir / name).exists()]
    if not found or resume:
        return
    if overwrite:
        log.warning("overwrite=true: deleting the earlier run's %s in %s", ", ".join(found), output_dir)
        for name in found:
            path = output_dir / name
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        return
    raise ConfigError(
        f"run folder {output_dir} already holds a run ({', '.join(found)}); choose a new folder (hydra.run.dir=... or "
        "hydra.sweep.dir=...), resume it with ckpt_path=<its checkpoints/ear/last.ckpt>, or replace it with "
        "overwrite=true"
    )


def _holder(lock: Path) -> tuple[int, str] | None:
    """``(pid, host)`` written in a lock file, or ``None`` when it cannot be read."""
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(output_dir: Path) -> Iterator[Path]:
    """Hold ``output_dir/.fader-run.lock`` while a job uses the folder.

    A lock left by a process that no longer runs on this host is taken over, with a warning.

    Args:
        output_dir: The run folder (created if needed).

    Yields:
        The lock file.

    Raises:
        ConfigError: When the folder is a file or not writable, or another live job (or a job on another host) holds
            it.
    """
    writable_folder(output_dir, "the run folder (hydra.run.dir, paths.output_dir)")
    lock = output_dir / LOCK_FILE
    me = f"{os.getpid()} {socket.gethostname()}"
    for attempt in (0, 1):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            here = holder is not None and holder[1] == socket.gethostname()
            if attempt == 0 and here and not _alive(holder[0]):
                log.warning("run folder %s: taking over the lock of process %d, which no longer runs", output_dir,
                            holder[0])  # fmt: skip
                lock.unlink(missing_ok=True)
                continue
            who = f"process {holder[0]} on {holder[1]}" if holder else "another job"
            raise ConfigError(
                f"run folder {output_dir} is in use by {who}; wait for it, or choose another folder "
                f"(hydra.run.dir=...). If that job is gone, delete {lock}"
            ) from None
        with os.fdopen(fd, "w") as handle:
            handle.write(me)
        break
    try:
        yield lock
    finally:
        if _holder(lock) == (os.getpid(), socket.gethostname()):
            lock.unlink(missing_ok=True)

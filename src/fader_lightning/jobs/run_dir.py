"""Run folders that cannot mix: a job refuses a folder that already holds a run, and locks the folder it uses.

A re-run into an existing ``hydra.run.dir`` (or sweep folder) would otherwise train stage 2 on the previous run's
stage-1 model and point ``metrics.json`` at old checkpoints; two jobs in one folder at once would mix their seeds.
``overwrite=true`` never deletes: it moves the earlier run aside, and only a run of fader-lightning. Once its folder
checks pass, a job writes Hydra's record there (:func:`record_config`) and points ``logs/<task>/latest`` at it
(:func:`link_run`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fader_lightning.errors import ConfigError
from fader_lightning.keys import STAGE_ORDER
from fader_lightning.results import METRICS_FILE, load_results
from fader_lightning.run_layout import CHECKPOINTS
from fader_lightning.utils.io import (
    REPLACED_PREFIX,
    aside_folder,
    atomic_write_json,
    atomic_write_text,
    check_links_stay_inside,
    writable_folder,
)
from fader_lightning.utils.latest import link_latest

log = logging.getLogger(__name__)

LOCK_FILE = ".fader-run.lock"
RUN_ARTEFACTS = (METRICS_FILE, CHECKPOINTS)
STAGES = STAGE_ORDER
"""What a run of ours holds: ``metrics.json`` entries and ``checkpoints/`` sub-folders of these stages only."""


def prepare_run_dir(
    output_dir: Path, resume: bool, overwrite: bool, reads: Mapping[str, str | os.PathLike | None] | None = None
) -> Path | None:
    """Refuse a folder that already holds a run, unless the job resumes it or is told to overwrite it.

    A folder holds a run when it has a ``metrics.json`` or a ``checkpoints/``. It is a run of fader-lightning when
    its ``metrics.json`` is a non-empty ``{stage: entry}`` object whose stages are ``ear``/``fader`` and whose
    entries all have a ``status``, and its ``checkpoints/`` holds only ``ear/`` and ``fader/`` sub-folders: what
    every job has written, runs from before this check included. Anything else is another tool's, and never
    replaced.

    Args:
        output_dir: The job's run folder.
        resume: The job resumes training from one of this folder's checkpoints (``ckpt_path=...``, checked by
            :func:`fader_lightning.jobs.resume.check_resume`): the folder's run is continued.
        overwrite: ``overwrite=true``: the earlier run's ``metrics.json`` and checkpoints are moved into
            ``output_dir/.replaced-<time>/`` first (nothing is deleted).
        reads: The checkpoints the job reads, by config key (``fader.ckpt_path``, ``ckpt_path``; ``None`` values are
            ignored). ``overwrite`` leaves those inside the folder in place, and keeps the ``metrics.json`` entries
            that name them.

    Returns:
        The folder the earlier run was moved into, or ``None`` when nothing was moved.

    Raises:
        ConfigError: When the folder holds a run and neither applies, holds a ``metrics.json`` or ``checkpoints/``
            that fader-lightning did not write, or a sub-folder is a symbolic link that leads out of it.
    """
    check_links_stay_inside(output_dir)
    found = [name for name in RUN_ARTEFACTS if (output_dir / name).exists()]
    if not found:
        return None
    foreign = _foreign(output_dir, found)  # a resume included: its results go into that metrics.json
    if foreign:
        raise ConfigError(
            f"run folder {output_dir} holds {foreign}, which fader-lightning did not write: a job never replaces "
            "another tool's files, overwrite=true included; choose a new folder (hydra.run.dir=... or "
            f"hydra.sweep.dir=...), or move those files out of {output_dir}"
        )
    if resume:
        return None
    if not overwrite:
        raise ConfigError(
            f"run folder {output_dir} already holds a run ({', '.join(found)}); choose a new folder (hydra.run.dir=... "
            "or hydra.sweep.dir=...), resume it with ckpt_path=<its checkpoints/ear/last.ckpt>, or replace it with "
            f"overwrite=true (which moves it into {output_dir}/{REPLACED_PREFIX}<time>/)"
        )
    return _move_run_aside(output_dir, found, reads or {})


def _foreign(output_dir: Path, found: list[str]) -> str | None:
    """Which of a folder's run artefacts fader-lightning did not write (see :func:`prepare_run_dir`), or ``None``."""
    if METRICS_FILE in found and not _our_results(output_dir / METRICS_FILE):
        return f"a {METRICS_FILE} that is not a {{stage: entry}} object of the stages {', '.join(STAGES)}"
    checkpoints = output_dir / CHECKPOINTS
    if CHECKPOINTS in found:
        if not checkpoints.is_dir():
            return f"a file {CHECKPOINTS}"
        others = sorted(entry.name for entry in checkpoints.iterdir() if entry.name not in STAGES or not entry.is_dir())
        if others:
            return f"{CHECKPOINTS}/{', '.join(others)} (a run keeps only {'/ and '.join(STAGES)}/ there)"
    return None


def _our_results(path: Path) -> bool:
    """Whether ``path`` is a ``metrics.json`` a job of ours wrote: ``{stage: {"status": ..., ...}}``."""
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (
        isinstance(results, dict)
        and bool(results)
        and all(stage in STAGES and isinstance(entry, dict) and "status" in entry for stage, entry in results.items())
    )


def _move_run_aside(output_dir: Path, found: list[str], reads: Mapping[str, str | os.PathLike | None]) -> Path:
    """Move a run's artefacts into ``.replaced-<time>/``, except the checkpoints the job reads (and their entries).

    Args:
        output_dir: The run folder.
        found: Its artefacts (:data:`RUN_ARTEFACTS` that exist).
        reads: The job's input checkpoints by config key.

    Returns:
        The ``.replaced-<time>/`` folder.
    """
    run = output_dir.resolve()
    kept = {Path(path).resolve(): key for key, path in reads.items() if path}
    kept = {path: key for path, key in kept.items() if path.is_relative_to(run)}
    results = load_results(run / METRICS_FILE)
    replaced = aside_folder(run)
    for name in found:
        _move_aside(run / name, run, replaced, set(kept))
    entries = {stage: entry for stage, entry in results.items() if _named(entry.get("checkpoint")) in kept}
    if entries:
        atomic_write_json(run / METRICS_FILE, entries)
    log.warning("overwrite=true: moved the earlier run's %s in %s into %s", ", ".join(found), output_dir, replaced)
    for path, key in kept.items():
        log.warning("overwrite=true: kept %s in place: %s=%s reads it", path, key, reads[key])
    return replaced


def _named(path: str | None) -> Path | None:
    """The resolved path a ``metrics.json`` entry's ``checkpoint`` names, or ``None``."""
    return Path(path).resolve() if path else None


def _move_aside(path: Path, run: Path, replaced: Path, kept: set[Path]) -> None:
    """Move ``path`` to the same place under ``replaced``; a kept file stays, and so do the folders on its way."""
    if path.resolve() in kept:
        return
    if path.is_dir() and not path.is_symlink() and any(file.is_relative_to(path) for file in kept):
        for entry in sorted(path.iterdir()):
            _move_aside(entry, run, replaced, kept)
        return
    target = replaced / path.relative_to(run)
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)


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


def link_run(cfg: DictConfig, output_dir: Path) -> None:
    """Point ``logs/<task>/latest`` at this job's run folder, or at its sweep folder in a multirun.

    ``logs/<task>/runs/latest`` and ``logs/<task>/multiruns/latest`` keep the newest of each kind, so that a command
    that needs a single run (``runs/latest/checkpoints/...``) still finds one after a sweep.

    Args:
        cfg: Composed config (``paths.log_dir``, ``task_name``).
        output_dir: The job's run folder.
    """
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    task_dir = Path(cfg.paths.log_dir) / cfg.task_name
    target = Path(HydraConfig.get().sweep.dir if multirun else output_dir).resolve()
    link_latest(task_dir, target)
    if target.is_relative_to(task_dir.resolve()):  # not for a hydra.run.dir outside logs/
        link_latest(task_dir / target.relative_to(task_dir.resolve()).parts[0], target)


HYDRA_RECORD = ".hydra"
"""Hydra's record of a job in its run folder: ``config.yaml``, ``hydra.yaml`` and ``overrides.yaml``."""


def record_config(cfg: DictConfig, output_dir: Path) -> None:
    """Write Hydra's record of the job into its run folder, once the folder checks have passed.

    ``conf/hydra/default.yaml`` turns Hydra's own writing off (``output_subdir: null``): Hydra writes the record
    before the job starts, so a job refused for its folder would have rewritten the record of the run it refused to
    touch. The files are Hydra's own (``fader-aggregate`` places a job in its sweep by them); ``config.yaml`` holds
    what the job runs, with what it took from a checkpoint.

    Args:
        cfg: The job's config.
        output_dir: Its run folder.

    Raises:
        ConfigError: When ``.hydra`` in the folder is a file or a link.
    """
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    folder = output_dir / HYDRA_RECORD
    if (folder.exists() and not folder.is_dir()) or folder.is_symlink():
        raise ConfigError(f"{folder} is not a folder: Hydra's record of the job goes there; move it away")
    folder.mkdir(parents=True, exist_ok=True)
    job = OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"])
    atomic_write_text(folder / "config.yaml", OmegaConf.to_yaml(job))
    atomic_write_text(folder / "hydra.yaml", OmegaConf.to_yaml({"hydra": OmegaConf.to_container(hydra_cfg)}))
    atomic_write_text(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.to_container(hydra_cfg.overrides.task)))

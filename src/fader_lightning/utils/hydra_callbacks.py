"""Hydra callbacks: a folder problem stops the command in one clear line, before any job and before Hydra writes.

An output folder that cannot be written, or a sweep folder that holds another sweep, is refused there.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fader_lightning.errors import ConfigError
from fader_lightning.utils.io import REPLACED_PREFIX, aside_folder, writable_folder

MULTIRUN_FILE = "multirun.yaml"


class OutputFolderCheck(Callback):
    """Check the run folder (``hydra.run.dir``) or the sweep folder (``hydra.sweep.dir``) before Hydra writes there.

    Hydra creates the folder and its ``.hydra/`` record before the job starts; a folder it cannot create or write
    would otherwise end in a traceback from inside Hydra.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check ``hydra.run.dir``, and that the job's log file there (``<job name>.log``) can be a file."""
        _check(config.hydra.run.dir, "hydra.run.dir")
        log_file = Path(config.hydra.run.dir) / f"{config.hydra.job.name}.log"
        if log_file.is_dir():
            sys.stderr.write(f"ConfigError: {log_file} is a folder: the job's log file goes there; move it away, or "
                             "choose another folder (hydra.run.dir=...)\n")  # fmt: skip
            sys.exit(1)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check ``hydra.sweep.dir``, and that it holds no other sweep (see :func:`earlier_sweep`)."""
        _check(config.hydra.sweep.dir, "hydra.sweep.dir")
        try:
            earlier_sweep(Path(config.hydra.sweep.dir), list(config.hydra.overrides.task),
                          bool(config.get("overwrite", False)))  # fmt: skip
        except ConfigError as err:
            sys.stderr.write(f"ConfigError: {err}\n")
            sys.exit(1)


def earlier_sweep(sweep_dir: Path, overrides: list[str], overwrite: bool) -> Path | None:
    """Keep a sweep folder's ``multirun.yaml`` from being rewritten by another sweep.

    Hydra writes ``multirun.yaml`` (the sweep's grid, which ``fader-aggregate`` reads to find the jobs that never ran)
    before any job starts. The same sweep run again (the same overrides) may rewrite it: its finished jobs are refused
    by their folders and the missing ones run. Another sweep would give the folder a grid its jobs do not match.

    Args:
        sweep_dir: ``hydra.sweep.dir``.
        overrides: The new sweep's overrides (``hydra.overrides.task``).
        overwrite: ``overwrite=true``: move the earlier ``multirun.yaml`` into ``<sweep>/.replaced-<time>/``.

    Returns:
        Where the earlier file was moved, or ``None``.

    Raises:
        ConfigError: When the folder holds another sweep's ``multirun.yaml`` (or one that cannot be read) and
            ``overwrite`` is not set.
    """
    grid = sweep_dir / MULTIRUN_FILE
    if not grid.is_file():
        return None
    try:
        earlier = OmegaConf.to_container(OmegaConf.load(grid).hydra.overrides.task)
    except Exception:  # not a sweep record of Hydra's: compared as a different sweep
        earlier = None
    if earlier == overrides:
        return None
    if not overwrite:
        raise ConfigError(
            f"sweep folder {sweep_dir} already holds another sweep ({MULTIRUN_FILE}: {earlier}); choose a new "
            "hydra.sweep.dir (fader-aggregate reads several sweep folders together), run the same sweep again to "
            f"complete it, or set overwrite=true (its {MULTIRUN_FILE} moves into {sweep_dir}/{REPLACED_PREFIX}<time>/ "
            "and each job moves its own earlier run aside)"
        )
    replaced = aside_folder(sweep_dir)
    grid.rename(replaced / MULTIRUN_FILE)
    return replaced


def _check(folder: str, key: str) -> None:
    try:
        writable_folder(Path(folder), key)
    except ConfigError as err:
        sys.stderr.write(f"ConfigError: {err} (or set paths.log_dir / FADER_ROOT to a writable folder)\n")
        sys.exit(1)

"""Hydra callbacks: an output folder that cannot be written stops the command in one clear line, before any job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from fader_lightning.errors import ConfigError
from fader_lightning.utils.io import writable_folder


class OutputFolderCheck(Callback):
    """Check the run folder (``hydra.run.dir``) or the sweep folder (``hydra.sweep.dir``) before Hydra writes there.

    Hydra creates the folder and its ``.hydra/`` record before the job starts; a folder it cannot create or write
    would otherwise end in a traceback from inside Hydra.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check ``hydra.run.dir``."""
        _check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check ``hydra.sweep.dir``."""
        _check(config.hydra.sweep.dir, "hydra.sweep.dir")


def _check(folder: str, key: str) -> None:
    try:
        writable_folder(Path(folder), key)
    except ConfigError as err:
        sys.stderr.write(f"ConfigError: {err} (or set paths.log_dir / FADER_ROOT to a writable folder)\n")
        sys.exit(1)

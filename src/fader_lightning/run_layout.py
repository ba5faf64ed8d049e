"""Where a run keeps its files: ``metrics.json`` and ``checkpoints/<stage>/last.ckpt`` (the one home of the layout).

A run folder holds ``metrics.json`` (:mod:`fader_lightning.results`), Hydra's ``.hydra/`` record and, per stage, its
final checkpoint at ``checkpoints/<stage>/last.ckpt``. Training writes there (:func:`checkpoint_dir`), and every
command that reads a run finds its checkpoints and results through this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fader_lightning.results import load_results

CHECKPOINTS = "checkpoints"
"""Folder of a run's checkpoints, one sub-folder per stage."""
LAST = "last.ckpt"
"""File name of a stage's final checkpoint."""


def checkpoint_dir(run_dir: str | os.PathLike[str], stage: str) -> Path:
    """Where a run keeps a stage's checkpoints: ``<run>/checkpoints/<stage>``."""
    return Path(run_dir) / CHECKPOINTS / stage


def stage_checkpoint(run_dir: str | os.PathLike[str], stage: str) -> Path:
    """Where a run keeps a stage's final checkpoint: ``<run>/checkpoints/<stage>/last.ckpt``."""
    return checkpoint_dir(run_dir, stage) / LAST


def checkpoint_run(ckpt: str | os.PathLike[str]) -> Path | None:
    """The run folder of a checkpoint at ``<run>/checkpoints/<stage>/<name>.ckpt``, else ``None`` (a copy elsewhere)."""
    ckpt = Path(ckpt).resolve()
    return ckpt.parents[2] if ckpt.parent.parent.name == CHECKPOINTS else None


def run_entry(ckpt: str | os.PathLike[str], stage: str) -> dict[str, Any]:
    """The ``metrics.json`` entry of the run a checkpoint was written by.

    Args:
        ckpt: Checkpoint file; only ``<run>/checkpoints/<stage>/<name>.ckpt`` has a run folder.
        stage: Stage whose entry to return.

    Returns:
        The entry (``config``, ``metrics``, ...), empty when the checkpoint is not in a run folder or the run has no
        ``metrics.json``.
    """
    run = checkpoint_run(ckpt)
    return load_results(run).get(stage, {}) if run is not None else {}

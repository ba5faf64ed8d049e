"""Where a run keeps its files: ``metrics.json`` and ``checkpoints/<stage>/last.ckpt`` (the one home of the layout).

A run folder holds ``metrics.json`` (:mod:`fader_lightning.results`), Hydra's ``.hydra/`` record and, per stage, its
final checkpoint at ``checkpoints/<stage>/last.ckpt``. Training writes there (:func:`checkpoint_dir`), and every
command that reads a run finds its checkpoints through this module (and its results through
:func:`fader_lightning.results.run_entry`).
"""

from __future__ import annotations

import os
from pathlib import Path

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

"""Checkpoints that appear whole: written under a temporary name, then renamed into place."""

from __future__ import annotations

import os
from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class AtomicModelCheckpoint(ModelCheckpoint):
    """:class:`~lightning.pytorch.callbacks.ModelCheckpoint` whose files are replaced atomically.

    With the default config (no monitor, ``save_top_k=1``, ``filename=last``) ``last.ckpt`` is a real file that is
    never missing and never half written, whenever the job is killed: each epoch's checkpoint is written to
    ``last.ckpt.<pid>.tmp`` and renamed over the previous one.
    """

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        write = super()._save_checkpoint
        save_atomically(trainer, filepath, lambda tmp: write(trainer, tmp))
        self._last_checkpoint_saved = filepath


def save_atomically(
    trainer: L.Trainer, filepath: str | os.PathLike[str], write: Callable[[str], None] | None = None
) -> None:
    """Write a checkpoint under a temporary name and rename it into place, from the global-zero process.

    Every process calls this (Lightning's checkpoint writing is collective); only global zero writes and renames.

    Args:
        trainer: The trainer whose state is saved.
        filepath: Destination file.
        write: Writer of the checkpoint at a given path; ``trainer.save_checkpoint`` when ``None``.
    """
    tmp = f"{filepath}.{os.getpid()}.tmp"
    try:
        if write is None:
            trainer.save_checkpoint(tmp, weights_only=False)  # resumable: optimizer and loop state included
        else:
            write(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, filepath)
    finally:
        if trainer.is_global_zero and os.path.exists(tmp):
            os.remove(tmp)
    trainer.strategy.barrier("atomic_checkpoint")

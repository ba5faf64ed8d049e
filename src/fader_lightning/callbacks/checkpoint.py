"""Checkpoints that appear whole: written under a temporary name, then renamed into place."""

from __future__ import annotations

import os
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from fader_lightning.utils.checkpoints import read_checkpoint
from fader_lightning.utils.io import atomic_save


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


def refresh_weights(trainer: L.Trainer, filepath: str | os.PathLike[str]) -> None:
    """Rewrite a checkpoint's weights and buffers with the module's current ones, keeping its training state.

    What a module measures after its last epoch (thresholds, normal-map statistics) then travels in the final
    checkpoint, while its epoch, optimizer and loop state stay those of the last epoch, so resuming is unchanged.
    Every process calls this; global zero rewrites the file atomically.

    Args:
        trainer: The trainer whose module is saved.
        filepath: A checkpoint the trainer wrote.
    """
    if trainer.is_global_zero:
        module = trainer.lightning_module
        checkpoint = read_checkpoint(filepath, "the checkpoint this run has just written")
        checkpoint["state_dict"] = module.state_dict()
        module.on_save_checkpoint(checkpoint)  # what the module leaves out of its checkpoints, left out again
        atomic_save(filepath, lambda tmp: torch.save(checkpoint, tmp))
    trainer.strategy.barrier("refresh_weights")

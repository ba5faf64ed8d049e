"""Checkpoints that appear whole: written under a temporary name, then renamed into place."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from fader_lightning.models.checkpoint_file import save_atomically


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

"""One log line per epoch (loss, elapsed time, ETA) and an estimate of a stage's training time from its first steps."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Timer

from fader_lightning.keys import FADER

log = logging.getLogger(__name__)

LOSS_KEYS = ("train/loss", "train/rank_loss")
"""The logged training losses of stage 1 and stage 2, shown in the epoch lines."""
LONG_CPU_SECONDS = 3600.0
"""An estimate above this on a CPU comes with the switches that shorten training."""
SHORTER_ON_CPU = (
    "it is long for a CPU: fewer epochs (trainer.max_epochs, fader.trainer.max_epochs), a time budget "
    "(trainer.max_time=00:00:20:00), the CPU profile's size (profile=cpu: 128 px, U-Net widths 16-128) or a GPU "
    "(trainer=gpu) make it shorter"
)


def duration(seconds: float) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class EpochLog(L.Callback):
    """Log each training epoch in one line, and estimate the stage's training time after its second step.

    The estimate times the second step (the first one carries one-off costs), multiplies by the steps of all epochs
    and caps it at ``trainer.max_time``; on a CPU, an estimate over an hour names the switches that shorten it. After
    the second epoch it is revised from the epochs' own times when it was off by half or more (stage 2 computes
    the frozen model's features in its first epoch only). The epoch lines are written only when the progress bar
    is off (a bar already shows the same), and at most ``lines`` of them per stage (evenly spaced, the last epoch
    always), so a run's console output fits on one screen either way.

    Args:
        lines: Most epoch lines per stage; ``0`` writes one for every epoch.
    """

    def __init__(self, lines: int) -> None:
        if lines < 0:
            raise ValueError(f"lines={lines} must be >= 0 (0: a line for every epoch)")
        self.lines = lines
        self._start = 0.0
        self._step_start = 0.0
        self._estimate = 0.0
        self._first_epoch = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock."""
        self._start = time.perf_counter()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Time the second step of the first epoch."""
        if trainer.current_epoch == 0 and batch_idx == 1:
            self._step_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Log the estimate once the second step is done (or after the first, for a one-step epoch)."""
        steps = trainer.num_training_batches
        if trainer.current_epoch != 0 or batch_idx != min(1, int(steps) - 1):
            return
        step = time.perf_counter() - (self._step_start if batch_idx == 1 else self._start)
        self._estimate = step * steps * trainer.max_epochs
        self._announce(trainer, pl_module, f"about {{}} ({step:.2f} s a step, {int(steps)} steps an epoch, "
                       f"{trainer.max_epochs} epochs: {{}})")  # fmt: skip

    def _announce(self, trainer: L.Trainer, pl_module: L.LightningModule, template: str) -> None:
        """Log the estimate (capped at ``trainer.max_time``), and the switches when it is long for a CPU."""
        stage = getattr(pl_module, "stage", "stage")
        limit = _max_time_seconds(trainer)
        seconds = min(self._estimate, limit) if limit is not None else self._estimate
        capped = " (its trainer.max_time)" if seconds < self._estimate else ""
        epochs_key = "fader.trainer.max_epochs" if stage == FADER else "trainer.max_epochs"
        log.info("%s: training will take %s", stage, template.format(duration(seconds) + capped, epochs_key))
        if seconds > LONG_CPU_SECONDS and trainer.strategy.root_device.type == "cpu":
            log.warning("%s: %s", stage, SHORTER_ON_CPU)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """One line: epoch, loss, elapsed time and ETA (only when the progress bar is off); the revised estimate."""
        epoch, epochs = trainer.current_epoch + 1, trainer.max_epochs
        elapsed = time.perf_counter() - self._start
        if epoch == 1:
            self._first_epoch = elapsed
        elif epoch == 2 and epochs > 2:
            revised = self._first_epoch + (elapsed - self._first_epoch) * (epochs - 1)
            if not 0.5 < revised / max(self._estimate, 1e-9) < 1.5:
                self._estimate = revised
                self._announce(trainer, pl_module, "about {} in all, from its first two epochs ({})")
        every = math.ceil(epochs / self.lines) if self.lines and epochs > 0 else 1
        if trainer.progress_bar_callback is not None or (epoch % every and epoch != epochs):
            return
        losses = {key: value for key, value in trainer.callback_metrics.items() if key in LOSS_KEYS}
        loss_text = "".join(f"{key.split('/')[-1]} {float(value):.4f}, " for key, value in losses.items())
        per_epoch = (elapsed - self._first_epoch) / (epoch - 1) if epoch > 1 else elapsed
        eta = per_epoch * (epochs - epoch)
        log.info("%s epoch %d/%d: %s%s elapsed, ETA %s", getattr(pl_module, "stage", "stage"), epoch, epochs,
                 loss_text, duration(elapsed), duration(eta))  # fmt: skip


def _max_time_seconds(trainer: L.Trainer) -> float | None:
    """``trainer.max_time`` in seconds, or ``None`` without one."""
    limits = [callback._duration for callback in trainer.callbacks if isinstance(callback, Timer)]
    return next((float(limit) for limit in limits if limit is not None), None)

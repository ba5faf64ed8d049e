"""Learning-rate schedules for both stages, as partial factories that Hydra instantiates."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from fader_lightning.errors import ConfigError


def warmup_cosine(optimizer: Optimizer, max_epochs: int, warmup_epochs: int, min_lr_ratio: float) -> LambdaLR:
    """Linear warm-up from ``lr / (warmup_epochs + 1)`` to ``lr``, then cosine decay to ``min_lr_ratio * lr``.

    Stepped once per epoch, so a run of ``max_epochs`` ends at the floor whatever its dataset size.

    Args:
        optimizer: The optimizer whose learning rates are scaled.
        max_epochs: Epochs of the stage (``trainer.max_epochs`` or ``fader.trainer.max_epochs``).
        warmup_epochs: Epochs of linear warm-up (0: none).
        min_lr_ratio: Final learning rate as a fraction of the configured one.

    Returns:
        The scheduler.

    Raises:
        ConfigError: When the epochs or the ratio are out of range.
    """
    if max_epochs < 1 or not 0 <= warmup_epochs < max_epochs or not 0.0 <= min_lr_ratio <= 1.0:
        raise ConfigError(
            f"scheduler warmup_cosine(max_epochs={max_epochs}, warmup_epochs={warmup_epochs}, "
            f"min_lr_ratio={min_lr_ratio}) needs max_epochs >= 1, 0 <= warmup_epochs < max_epochs and a ratio in [0, 1]"
        )

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        progress = min(1.0, (epoch - warmup_epochs) / max(1, max_epochs - warmup_epochs - 1))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)

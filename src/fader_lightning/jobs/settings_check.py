"""The numeric settings of a training job, checked before any work.

A wrong one is named with its fix, never found after training (``trainer.max_epochs=0`` would otherwise record an
untrained model as ``ok``).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fader_lightning.data.configured import check_dataset
from fader_lightning.data.transforms import as_hw
from fader_lightning.errors import ConfigError, settings_of
from fader_lightning.keys import FADER, JOB_STAGES
from fader_lightning.models.calibration import Calibration

COUNTS = {
    "data.train_batch_size": 1,
    "data.eval_batch_size": 1,
    "data.num_workers": 0,
    "trainer.max_epochs": 1,
}
"""Integer settings and their smallest allowed value."""
MAX_SEED = 2**32 - 1
"""The largest seed every generator accepts (numpy's)."""


def _integer(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_counts(cfg: DictConfig, counts: dict[str, int]) -> None:
    """Check integer settings against their smallest value.

    Args:
        cfg: The job's config.
        counts: ``{key: smallest allowed value}``; keys the config lacks are skipped.

    Raises:
        ConfigError: Naming the first key that is not an integer of at least its smallest value.
    """
    for key, smallest in counts.items():
        value = OmegaConf.select(cfg, key, default=smallest)
        if not _integer(value) or value < smallest:
            budget = " (trainer.max_time sets a time budget)" if key.endswith("max_epochs") else ""
            raise ConfigError(f"{key}={value!r} must be an integer of at least {smallest}{budget}")


def check_rate(key: str, value: Any) -> None:
    """Check a learning rate: a finite number above 0.

    Raises:
        ConfigError: Naming the key.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a finite number above 0 (e.g. {key}=1e-3)")


def check_training_job(cfg: DictConfig) -> None:
    """Check a ``fader-train`` job's numeric settings before anything runs.

    Args:
        cfg: The composed ``train.yaml`` config.

    Raises:
        ConfigError: Naming the first wrong setting and what it must be.
    """
    if not _integer(cfg.seed) or not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed={cfg.seed!r} must be an integer from 0 to {MAX_SEED}")
    check_dataset(cfg.data)
    counts = dict(COUNTS)
    if FADER in JOB_STAGES.get(cfg.stage, ()):
        counts["fader.trainer.max_epochs"] = 1
    check_counts(cfg, counts)
    check_rate("model.optimizer.lr", OmegaConf.select(cfg, "model.optimizer.lr", default=1.0))
    check_rate("fader.optimizer.lr", OmegaConf.select(cfg, "fader.optimizer.lr", default=1.0))
    size = OmegaConf.select(cfg, "data.image_size")
    if size is not None:
        as_hw(size)
    with settings_of("calibration"):
        Calibration.of(OmegaConf.select(cfg, "calibration", default=None) or {})

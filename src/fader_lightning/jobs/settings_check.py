"""The numeric settings of a training job, checked before any work.

A wrong one is named with its fix, never found after training (``trainer.max_epochs=0`` would otherwise record an
untrained model as ``ok``).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch
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


PRECISIONS = {"32": "32-true", "32-true": "32-true", "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed",
              "16": "16-mixed", "16-mixed": "16-mixed"}  # fmt: skip
"""``trainer.precision`` values a job can train with, by Lightning's spellings: float32 weights, and mixed precision."""


def cpu_bf16_units() -> str | None:
    """The bfloat16 units of this CPU (``AMX``, ``AVX512-BF16``), or ``None`` when it has none (bf16 is emulated)."""
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    return "AVX512-BF16" if torch.cpu._is_avx512_bf16_supported() else None


def check_precision(key: str, value: Any, accelerator: str) -> None:
    """Refuse a precision the job cannot train with on this machine, naming what the machine supports.

    Args:
        key: ``trainer.precision`` or ``fader.trainer.precision``.
        value: Its value.
        accelerator: ``trainer.accelerator`` (``auto``: CUDA when available, else the CPU).

    Raises:
        ConfigError: For a value Lightning does not know, weights in another dtype than float32 (``16-true``,
            ``bf16-true``, ``64-true``: the inputs, losses and metrics are float32), float16 on a CPU, or bfloat16
            where neither the CPU nor the GPU has bfloat16 units.
    """
    precision = PRECISIONS.get(str(value))
    if precision is None:
        raise ConfigError(
            f"{key}={value!r} is not a precision this project trains with (its inputs, losses and metrics are float32, "
            "so the weights are too); use 32-true, bf16-mixed (bfloat16 autocast: a CPU with AMX or AVX512-BF16, or "
            "a GPU) or 16-mixed (float16 autocast with a scaler, GPU only)"
        )
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if precision == "16-mixed" and not gpu:
        raise ConfigError(
            f"{key}={value} runs float16 on the CPU, which has no float16 training path here; use bf16-mixed "
            f"({cpu_bf16_units() or 'emulated, no bfloat16 units'} on this CPU) or 32-true"
        )
    if precision == "bf16-mixed" and gpu and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}={value}: this GPU has no bfloat16 support; use 16-mixed or 32-true")
    if precision == "bf16-mixed" and not gpu and cpu_bf16_units() is None:
        raise ConfigError(
            f"{key}={value}: this CPU has no bfloat16 units (AMX or AVX512-BF16; it has "
            f"{torch.backends.cpu.get_cpu_capability()}), so bfloat16 would be emulated and slower; use 32-true"
        )


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
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    for key in ("trainer.precision", "fader.trainer.precision"):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            check_precision(key, value, accelerator)
    size = OmegaConf.select(cfg, "data.image_size")
    if size is not None:
        as_hw(size)
    with settings_of("calibration"):
        Calibration.of(OmegaConf.select(cfg, "calibration", default=None) or {})

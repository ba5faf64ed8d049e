"""Thresholds chosen on normal images only, at a stated false-positive rate (``docs/CALIBRATION.md``).

A threshold is a value of the scores of normal images that the model has never trained on (the normals that
``data.val_policy=from_train`` holds out). Methods (``calibration.method``), ``a`` being ``target_fpr``:

* ``max``: the largest held-out score. Its rate on unseen normals is about ``1 / (n + 1)`` whatever ``a`` says.
* ``quantile``: the ``(1 - a) (n + 1)``-th smallest of the ``n`` held-out scores (interpolated), whose expected
  rate on unseen normals is ``a`` (the plain ``1 - a`` quantile of a few scores flags more); it needs
  ``ceil(1 / a) - 1`` of them, so that the position lies within them.
* ``gaussian``: ``mean + z(1 - a) * std`` of the held-out scores, a normal tail fitted to them.
* ``seen_gap``: the ``1 - a`` quantile of the training images' scores (many, but lower than unseen normals': the
  model fitted them), scaled by the gap the held-out normals measure, ``median(held-out) / median(training)``.

* ``auto`` (the default): ``seen_gap`` where the data gives it what it needs (held-out normals, and ``1 / a``
  training images), else ``max``, without the margin when a single normal image gives no spread; the method and
  margin used are recorded. ``docs/CALIBRATION.md`` has the measurements that
  chose it.

Every method then adds ``margin`` standard deviations of the held-out scores. The pixel threshold is the same
method applied to each image's largest map value, so that ``a`` is also the share of normal images with any pixel
flagged. Pure torch: the Lightning modules feed it
(:meth:`~fader_lightning.models.base_module.AnomalyModule.fit_thresholds`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import torch
from torch import Tensor

from fader_lightning.errors import ConfigError

METHODS = ("max", "quantile", "gaussian", "seen_gap")
"""tuple[str, ...]: The calibration methods (see the module docstring)."""
AUTO = "auto"
"""The setting that picks ``seen_gap`` where the data allows it, else ``max`` (:meth:`Calibration.resolved`)."""
CALIBRATION_KEY = "threshold_calibration"
"""The hyper-parameter (so the checkpoint entry) that records the settings (FADeR's own ``calibration`` is its
soft mask's)."""
LEGACY = {"method": "max", "target_fpr": 0.05, "margin": 0.0}
"""What checkpoints written before the methods existed were calibrated with (``target_fpr`` was not used by max)."""


@dataclass(frozen=True)
class Calibration:
    """How thresholds are chosen on normal images (``calibration`` of ``conf/calibration/default.yaml``).

    Args:
        method: One of :data:`METHODS`, or :data:`AUTO`.
        target_fpr: The share of unseen normal images the threshold may flag, in ``(0, 1)``.
        margin: Standard deviations of the held-out scores added to the threshold (``>= 0``).

    Raises:
        ConfigError: On an unknown method, a target outside ``(0, 1)`` or a negative margin.
    """

    method: str
    target_fpr: float
    margin: float

    def __post_init__(self) -> None:
        if self.method not in (*METHODS, AUTO):
            raise ConfigError(f"method={self.method!r} is unknown; use one of {', '.join((*METHODS, AUTO))}")
        target = self.target_fpr
        if isinstance(target, bool) or not isinstance(target, int | float) or not 0.0 < target < 1.0:
            raise ConfigError(
                f"target_fpr={target!r} is invalid; use the share of normal images the threshold may flag, in (0, 1) "
                "(e.g. 0.05)"
            )
        margin = self.margin
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0.0 <= margin < math.inf:
            raise ConfigError(f"margin={margin!r} is invalid; use a number of standard deviations >= 0 (e.g. 0)")
        object.__setattr__(self, "target_fpr", float(target))  # 1 and 1.0 are the same settings
        object.__setattr__(self, "margin", float(margin))

    @classmethod
    def of(cls, settings: Any) -> Calibration:
        """The settings of a mapping (a config node or a checkpoint's hyper-parameters).

        Args:
            settings: ``{"method": ..., "target_fpr": ..., "margin": ...}``; keys left out take :data:`LEGACY`.

        Returns:
            The settings.
        """
        values = {**LEGACY, **{key: settings[key] for key in LEGACY if settings.get(key) is not None}}
        return cls(values["method"], values["target_fpr"], values["margin"])

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for hyper-parameters, ``metrics.json`` and side-cars."""
        return asdict(self)

    def resolved(self, held_out: int, training: int) -> Calibration:
        """The method that runs: :data:`AUTO` becomes ``seen_gap`` where the data allows it, else ``max``.

        Args:
            held_out: Held-out normal images (0 without a held-out split).
            training: Training images.

        Returns:
            These settings, with a method of :data:`METHODS`.
        """
        if self.method != AUTO:
            return self
        margin = self.margin if held_out != 1 else 0.0  # one normal image has no spread: no margin, no refusal
        gap = Calibration("seen_gap", self.target_fpr, margin)
        fits = held_out >= gap.held_out_needed and training >= gap.training_needed
        return gap if fits else Calibration("max", self.target_fpr, margin)

    @property
    def held_out_needed(self) -> int:
        """How many held-out normal scores the method needs."""
        need = {"max": 1, "quantile": math.ceil(1.0 / self.target_fpr - 1e-9) - 1, "gaussian": 3, "seen_gap": 1,
                AUTO: 1}  # fmt: skip
        return max(need[self.method], 2 if self.margin > 0 else 1)

    @property
    def training_needed(self) -> int:
        """How many training-image scores the method needs (``seen_gap`` only)."""
        return math.ceil(1.0 / self.target_fpr - 1e-9) if self.method == "seen_gap" else 0

    def threshold(self, held_out: Tensor, training: Tensor | None = None) -> float:
        """The threshold of one kind of score.

        Args:
            held_out: Scores of normal images the model was not trained on, ``(n,)``.
            training: Scores of the training images (``seen_gap`` only), ``(m,)``.

        Returns:
            The threshold.

        Raises:
            ValueError: With fewer scores than :attr:`held_out_needed` or :attr:`training_needed` (the callers say
                which setting gives more).
        """
        if self.method == AUTO:
            raise ValueError("resolve auto first (Calibration.resolved)")
        held = held_out.double().flatten()
        if held.numel() < self.held_out_needed:
            raise ValueError(f"{self.method} needs {self.held_out_needed} held-out scores, got {held.numel()}")
        level = 1.0 - self.target_fpr
        if self.method == "max":
            value = held.max()
        elif self.method == "quantile":
            value = torch.quantile(held, unbiased_level(level, held.numel()))
        elif self.method == "gaussian":
            value = held.mean() + NormalDist().inv_cdf(level) * held.std()
        else:
            seen = torch.zeros(0) if training is None else training.double().flatten()
            if seen.numel() < self.training_needed:
                raise ValueError(f"seen_gap needs {self.training_needed} training scores, got {seen.numel()}")
            value = torch.quantile(seen, level) * torch.quantile(held, 0.5) / torch.quantile(seen, 0.5).clamp_min(1e-12)
        if self.margin > 0:
            value = value + self.margin * held.std()
        return float(value)


def unbiased_level(level: float, count: int) -> float:
    """The quantile level (linear interpolation) at the ``level * (count + 1)``-th smallest of ``count`` values.

    The expected share of a distribution below the ``k``-th smallest of ``count`` draws is ``k / (count + 1)``.

    Args:
        level: The share wanted below the threshold.
        count: The number of values.

    Returns:
        The level for :func:`torch.quantile`, clipped to ``[0, 1]``.
    """
    if count < 2:
        return 1.0
    return min(max((level * (count + 1) - 1) / (count - 1), 0.0), 1.0)


def ratio_for(needed: int, total: int) -> float | None:
    """The smallest ``data.val_ratio`` (two decimals) that holds out ``needed`` of ``total`` images, if any.

    Mirrors :func:`~fader_lightning.data.datamodule.split_train_val` (``round(total * ratio)`` held out, at least one
    left to train on).

    Args:
        needed: Held-out images wanted.
        total: Normal training images.

    Returns:
        The ratio, or ``None`` when ``total`` is too small.
    """
    for hundredths in range(1, 100):
        held = round(total * hundredths / 100)
        if needed <= held < total:
            return hundredths / 100
    return None

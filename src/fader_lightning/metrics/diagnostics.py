"""Diagnostics of a test pass: where the mask, the predictor and the image score stand against the ground truth.

They are computed from test labels for reporting only; nothing here feeds back into training or calibration.

Patch classes (on FADeR's ``P x P`` grid): a patch is *defect* when at least :data:`DEFECT_PATCH_FRACTION` of its
pixels are defective and *normal* when none is (patches in between are left out of the patch figures); it is
*masked* when at least half of its pixels are hidden by ``M``, else *visible*. A patch is *attenuated* when its skip
weight is below 0.5.

Keys (``None`` where a figure is undefined, e.g. no anomalous test image):

* ``defect_pixels_masked``: share of defect pixels that ``M`` hides;
* ``normal_max_in_mask``: share of normal test images whose anomaly-map maximum lies inside ``M``;
* ``anomalous_max_on_defect``: share of anomalous test images whose maximum lies on the defect;
* FADeR only: ``patch_auroc`` and ``patch_auroc_visible`` (predicted error, defect vs normal patches, all and
  visible ones), ``attenuated_visible_defect``, ``attenuated_masked_defect``, ``attenuated_visible_normal``,
  ``attenuated_masked_normal`` (share of each class attenuated), ``score_change_normal`` and
  ``score_change_anomalous`` (mean image-score change from stage 1 to EAR + FADeR).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from fader_lightning.metrics.functional import image_auroc
from fader_lightning.metrics.sync import gather_on_cpu, state_batches

DEFECT_PATCH_FRACTION = 0.25
ATTENUATED_BELOW = 0.5


def _share(count: float, total: float) -> float | None:
    return count / total if total else None


def _auroc(scores: Tensor, labels: Tensor) -> float | None:
    if labels.numel() == 0 or labels.all() or not labels.any():
        return None
    value = image_auroc(scores, labels)
    return None if math.isnan(value) else value


SUMS: tuple[str, ...] = ("defect_pixels", "defect_pixels_masked", "normal", "normal_max_in_mask", "anomalous",
                         "anomalous_max_on_defect")  # fmt: skip
PATCHES: tuple[str, ...] = ("pred", "defect", "masked", "attenuated")
SCORE_CHANGES: tuple[str, ...] = ("score_change_normal", "score_change_anomalous")


class TestDiagnostics(Metric):
    """Accumulates a test pass batch by batch; :meth:`compute` returns the figures of the module docstring.

    A ``torchmetrics.Metric``: counts are summed and patch rows concatenated across DDP ranks before
    :meth:`compute`; the states stay on the CPU and are never saved in checkpoints.

    Args:
        patch_size: FADeR's patch side, for the patch figures (``None`` for stage 1).
    """

    __test__ = False  # not a pytest class
    full_state_update = False

    def __init__(self, patch_size: int | None = None) -> None:
        super().__init__(dist_sync_fn=gather_on_cpu)
        self.patch_size = patch_size
        for name in SUMS:
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        for name in (*PATCHES, *SCORE_CHANGES):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> TestDiagnostics:
        """Moving the module moves nothing: the states stay on the CPU."""
        return self

    def _add(self, name: str, value: Tensor) -> None:
        setattr(self, name, getattr(self, name) + value.double().sum())

    @torch.no_grad()
    def update(
        self,
        anomaly_map: Tensor,
        masks: Tensor,
        gt: Tensor,
        labels: Tensor,
        pred: Tensor | None = None,
        soft: Tensor | None = None,
        score_change: Tensor | None = None,
    ) -> None:
        """Adds one batch.

        Args:
            anomaly_map: Maps ``(B, 1, H, W)``.
            masks: Binary masks ``M`` ``(B, 1, H, W)``, ``1`` = hidden.
            gt: Ground-truth defect masks ``(B, 1, H, W)``.
            labels: Image labels ``(B,)``, nonzero = anomalous.
            pred: FADeR's predicted patch errors ``(B, 1, h, w)`` (FADeR only).
            soft: The skip weights applied ``(B, 1, h, w)`` (FADeR only).
            score_change: Image score of EAR + FADeR minus that of stage 1, ``(B,)`` (FADeR only).
        """
        hidden, defect = masks.float().cpu() > 0.5, gt.float().cpu() > 0.5
        anomalous = labels.cpu() != 0
        self._add("defect_pixels", defect)
        self._add("defect_pixels_masked", defect & hidden)
        flat = anomaly_map.float().cpu().flatten(1)
        argmax = flat.argmax(dim=1, keepdim=True)
        in_mask = hidden.flatten(1).gather(1, argmax).squeeze(1)
        on_defect = defect.flatten(1).gather(1, argmax).squeeze(1)
        self._add("normal", ~anomalous)
        self._add("normal_max_in_mask", in_mask & ~anomalous)
        self._add("anomalous", anomalous)
        self._add("anomalous_max_on_defect", on_defect & anomalous)
        if score_change is not None:
            for name, members in zip(SCORE_CHANGES, (~anomalous, anomalous), strict=True):
                getattr(self, name).append(score_change.float().cpu()[members])
        if pred is None or soft is None or self.patch_size is None:
            return
        defect_fraction = F.avg_pool2d(gt.float().cpu(), self.patch_size).flatten()
        masked = F.avg_pool2d(masks.float().cpu(), self.patch_size).flatten() >= 0.5
        is_defect, is_normal = defect_fraction >= DEFECT_PATCH_FRACTION, defect_fraction == 0
        keep = is_defect | is_normal
        self.pred.append(pred.float().cpu().flatten()[keep])
        self.defect.append(is_defect[keep])
        self.masked.append(masked[keep])
        self.attenuated.append(soft.float().cpu().flatten()[keep] < ATTENUATED_BELOW)

    def compute(self) -> dict[str, float | None]:
        """The figures of the module docstring (over every rank's batches, under DDP).

        Returns:
            Name → value (``None`` where undefined).
        """
        sums = {name: float(getattr(self, name)) for name in SUMS}
        out: dict[str, float | None] = {
            "defect_pixels_masked": _share(sums["defect_pixels_masked"], sums["defect_pixels"]),
            "normal_max_in_mask": _share(sums["normal_max_in_mask"], sums["normal"]),
            "anomalous_max_on_defect": _share(sums["anomalous_max_on_defect"], sums["anomalous"]),
        }
        if state_batches(self.pred):
            pred, defect, masked, attenuated = (dim_zero_cat(getattr(self, name)) for name in PATCHES)
            defect, masked, attenuated = defect.bool(), masked.bool(), attenuated.bool()
            out["patch_auroc"] = _auroc(pred, defect)
            out["patch_auroc_visible"] = _auroc(pred[~masked], defect[~masked])
            classes = {
                "visible_defect": defect & ~masked,
                "masked_defect": defect & masked,
                "visible_normal": ~defect & ~masked,
                "masked_normal": ~defect & masked,
            }
            for name, members in classes.items():
                out[f"attenuated_{name}"] = _share(float((attenuated & members).sum()), float(members.sum()))
                out[f"patches_{name}"] = float(members.sum())
        for name in SCORE_CHANGES:
            if state_batches(getattr(self, name)):
                changes = dim_zero_cat(getattr(self, name))
                out[name] = float(changes.mean()) if changes.numel() else None
        return out

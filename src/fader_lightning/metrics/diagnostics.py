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
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor

from fader_lightning.metrics.functional import image_auroc

DEFECT_PATCH_FRACTION = 0.25
ATTENUATED_BELOW = 0.5


def _share(count: float, total: float) -> float | None:
    return count / total if total else None


def _auroc(scores: Tensor, labels: Tensor) -> float | None:
    if labels.numel() == 0 or labels.all() or not labels.any():
        return None
    value = image_auroc(scores, labels)
    return None if math.isnan(value) else value


class TestDiagnostics:
    """Accumulates a test pass batch by batch; :meth:`compute` returns the figures of the module docstring.

    Args:
        patch_size: FADeR's patch side, for the patch figures (``None`` for stage 1).
    """

    __test__ = False  # not a pytest class

    def __init__(self, patch_size: int | None = None) -> None:
        self.patch_size = patch_size
        self.reset()

    def reset(self) -> None:
        """Forget every batch."""
        self._sums: dict[str, float] = defaultdict(float)
        self._patches: dict[str, list[Tensor]] = defaultdict(list)
        self._score_change: dict[bool, list[Tensor]] = {False: [], True: []}

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
        self._sums["defect_pixels"] += float(defect.sum())
        self._sums["defect_pixels_masked"] += float((defect & hidden).sum())
        flat = anomaly_map.float().cpu().flatten(1)
        argmax = flat.argmax(dim=1, keepdim=True)
        in_mask = hidden.flatten(1).gather(1, argmax).squeeze(1)
        on_defect = defect.flatten(1).gather(1, argmax).squeeze(1)
        self._sums["normal"] += float((~anomalous).sum())
        self._sums["normal_max_in_mask"] += float((in_mask & ~anomalous).sum())
        self._sums["anomalous"] += float(anomalous.sum())
        self._sums["anomalous_max_on_defect"] += float((on_defect & anomalous).sum())
        if score_change is not None:
            for is_anomalous in (False, True):
                self._score_change[is_anomalous].append(score_change.float().cpu()[anomalous == is_anomalous])
        if pred is None or soft is None or self.patch_size is None:
            return
        defect_fraction = F.avg_pool2d(gt.float().cpu(), self.patch_size).flatten()
        masked = F.avg_pool2d(masks.float().cpu(), self.patch_size).flatten() >= 0.5
        is_defect, is_normal = defect_fraction >= DEFECT_PATCH_FRACTION, defect_fraction == 0
        keep = is_defect | is_normal
        self._patches["pred"].append(pred.float().cpu().flatten()[keep])
        self._patches["defect"].append(is_defect[keep])
        self._patches["masked"].append(masked[keep])
        self._patches["attenuated"].append(soft.float().cpu().flatten()[keep] < ATTENUATED_BELOW)

    def compute(self) -> dict[str, float | None]:
        """The figures of the module docstring.

        Returns:
            Name → value (``None`` where undefined).
        """
        sums = self._sums
        out: dict[str, float | None] = {
            "defect_pixels_masked": _share(sums["defect_pixels_masked"], sums["defect_pixels"]),
            "normal_max_in_mask": _share(sums["normal_max_in_mask"], sums["normal"]),
            "anomalous_max_on_defect": _share(sums["anomalous_max_on_defect"], sums["anomalous"]),
        }
        if self._patches:
            pred, defect, masked, attenuated = (torch.cat(self._patches[k]) for k in ("pred", "defect", "masked",
                                                                                        "attenuated"))  # fmt: skip
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
        for is_anomalous, name in ((False, "score_change_normal"), (True, "score_change_anomalous")):
            changes = torch.cat(self._score_change[is_anomalous]) if self._score_change[is_anomalous] else None
            if changes is not None:
                out[name] = float(changes.mean()) if changes.numel() else None
        return out

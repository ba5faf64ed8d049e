"""Names shared by the training code, the commands and the table builder: stages and metric keys.

Torch-free, so that ``fader-aggregate`` and the callbacks, ``fader-predict`` and the results reader all import the
same spelling. A stage's name is its config group (``model`` builds ``ear``, ``fader`` builds ``fader``), its
checkpoint folder (``checkpoints/<stage>/``) and its key in ``metrics.json``.
"""

from __future__ import annotations

EAR = "ear"
"""Stage 1: the EAR masked-inpainting model."""
FADER = "fader"
"""Stage 2: FADeR on the frozen stage 1."""
STAGE_ORDER: tuple[str, ...] = (EAR, FADER)
"""The stages in the order they build on each other: a later stage's model depends on every earlier one's."""
JOB_STAGES: dict[str, tuple[str, ...]] = {EAR: (EAR,), FADER: (FADER,), "both": (EAR, FADER)}
"""The stages a job runs for each value of ``stage=``."""

IMAGE_AUROC = "image_auroc"
PIXEL_AUROC = "pixel_auroc"
AUPRO = "aupro"
IMAGE_F1MAX_ORACLE = "image_f1max_oracle"
IMAGE_THRESHOLD_ORACLE = "image_threshold_oracle"
"""Picked on the test labels: an ORACLE threshold, never a deployable one."""
PIXEL_F1MAX_ORACLE = "pixel_f1max_oracle"
PIXEL_THRESHOLD_ORACLE = "pixel_threshold_oracle"
AT_THRESHOLD = "_at_threshold"
"""Suffix of the metrics measured at the calibrated thresholds (chosen on normal images only): deployable figures."""
IMAGE_OPERATING_POINT = tuple(f"image_{name}{AT_THRESHOLD}" for name in ("fpr", "tpr", "precision", "f1",
                                                                         "balanced_accuracy"))  # fmt: skip
"""Image error rates at the calibrated image threshold (:func:`~fader_lightning.metrics.image_operating_point`)."""
PIXEL_OPERATING_POINT = tuple(f"{name}{AT_THRESHOLD}" for name in ("pixel_fpr", "pixel_tpr", "pro"))
"""Pixel error rates and the per-region overlap at the calibrated pixel threshold."""

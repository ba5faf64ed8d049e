"""Anomaly-detection metrics: functional AUROC/AUPRO/oracle F1-max and the shared score store."""

from fader_lightning.metrics.functional import aupro, f1_max, image_auroc, pixel_auroc
from fader_lightning.metrics.store import AnomalyScoreStore

__all__ = ["AnomalyScoreStore", "aupro", "f1_max", "image_auroc", "pixel_auroc"]

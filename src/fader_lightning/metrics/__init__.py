"""Anomaly-detection metrics: functional AUROC/AUPRO/oracle F1-max, operating points and the shared score store."""

from fader_lightning.metrics.functional import (
    aupro,
    f1_max,
    image_auroc,
    image_operating_point,
    pixel_auroc,
    pixel_operating_point,
)
from fader_lightning.metrics.store import AnomalyScoreStore

__all__ = [
    "AnomalyScoreStore",
    "aupro",
    "f1_max",
    "image_auroc",
    "image_operating_point",
    "pixel_auroc",
    "pixel_operating_point",
]

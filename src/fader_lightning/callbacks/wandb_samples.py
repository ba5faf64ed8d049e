"""W&B table of test samples: image with GT and predicted masks, I', Î, anomaly map, soft mask, score and labels."""

from __future__ import annotations

import logging
import math

import lightning as L
import numpy as np
import wandb
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from fader_lightning.callbacks.samples import TestSampleCollector, map_scale
from fader_lightning.visualize import SOFT_MASK_COLORMAP, colour_bar, heatmap, to_uint8_rgb

log = logging.getLogger(__name__)

COLUMNS = ["image", "masked_input", "reconstruction", "anomaly_map", "soft_mask", "score", "label", "defect_type",
           "category", "masking", "stage"]  # fmt: skip
CLASS_LABELS = {1: "defect"}


def image_with_masks(image: Tensor, gt_mask: Tensor, amap: Tensor, threshold: float) -> wandb.Image:
    """A test image with its ground-truth mask and predicted mask as W&B mask overlays.

    Args:
        image: (3, H, W) image in [0, 1].
        gt_mask: (H, W) ground-truth mask.
        amap: (H, W) anomaly map.
        threshold: Map value above which a pixel is predicted defective (NaN: no prediction mask).

    Returns:
        The W&B image.
    """
    masks = {"ground_truth": {"mask_data": (gt_mask > 0.5).numpy().astype(np.uint8), "class_labels": CLASS_LABELS}}
    if not math.isnan(threshold):
        masks["prediction"] = {"mask_data": (amap > threshold).numpy().astype(np.uint8), "class_labels": CLASS_LABELS}
    return wandb.Image(to_uint8_rgb(image), masks=masks)


def masking_name(pl_module: L.LightningModule) -> str | None:
    """Masking method of the stage-1 model behind a module (FADeR keeps the stage-1 hyper-parameters apart).

    Args:
        pl_module: An EAR or FADeR module.

    Returns:
        The method name, ``None`` when the module has none.
    """
    return (pl_module.stage1_hparams.get("masking") or {}).get("name")


class WandbSampleTable(TestSampleCollector):
    """Logs a ``wandb.Table`` of test samples under ``test/samples_<stage>``.

    The image column carries the ground-truth mask and the predicted mask: the anomaly map above the calibrated
    pixel threshold (models without one: the pixel F1-max threshold, an ORACLE picked on the test labels; left out
    when undefined). ``masked_input`` is I', what the inpainting network sees, and ``reconstruction`` is Î. The
    anomaly maps use the fixed scale of :mod:`fader_lightning.visualize`, drawn with its colour bar; the soft mask
    (FADeR only, else empty) spans [0, 1]. The callback does nothing unless a
    :class:`~lightning.pytorch.loggers.WandbLogger` is among the trainer's loggers.

    Args:
        num_samples: Number of samples in the table.
        selection: ``spread`` or ``worst`` (see :data:`~fader_lightning.callbacks.samples.SELECTIONS`).
    """

    def __init__(self, num_samples: int, selection: str) -> None:
        super().__init__(num_samples, selection)
        self._logger: WandbLogger | None = None

    def active(self, trainer: L.Trainer) -> bool:
        """Collect only when a W&B logger is attached (and the pass is to be shown)."""
        self._logger = next((logger for logger in trainer.loggers if isinstance(logger, WandbLogger)), None)
        return self._logger is not None and super().active(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the table once the module has computed its metrics (the threshold among them)."""
        if not self.picked or self._logger is None or not trainer.is_global_zero:
            return
        scale = map_scale(pl_module, [sample["amap"] for sample in self.picked])
        stage = getattr(pl_module, "stage", "test")
        masking = masking_name(pl_module)
        rows = [
            [
                image_with_masks(sample["image"], sample["mask"], sample["amap"], scale.threshold),
                *(wandb.Image(to_uint8_rgb(sample[key])) if sample[key] is not None else None
                  for key in ("masked_input", "recon")),
                wandb.Image(np.concatenate([heatmap(sample["amap"], scale.low, scale.high),
                                            colour_bar(sample["amap"].shape[0], scale)], axis=1)),
                wandb.Image(heatmap(sample["soft_mask"], 0.0, 1.0, SOFT_MASK_COLORMAP))
                if sample["soft_mask"] is not None else None,
                sample["score"],
                sample["label"],
                sample["defect_type"],
                sample["category"],
                masking,
                stage,
            ]
            for sample in self.picked
        ]  # fmt: skip
        label = getattr(pl_module, "test_label", None)
        key = f"test/{label}/samples_{stage}" if label else f"test/samples_{stage}"
        self._logger.log_table(key=key, columns=COLUMNS, data=rows)
        log.info("logged %d test samples to W&B as %s", len(rows), key)
        self.picked = []

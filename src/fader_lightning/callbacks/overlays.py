"""Overlay PNGs of test samples: image | GT mask | anomaly map | predicted mask (| extra maps)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
from torch import Tensor

from fader_lightning.callbacks.samples import TestSampleCollector
from fader_lightning.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)


def to_uint8_rgb(image: Tensor) -> np.ndarray:
    """Convert a (3, H, W) image in [0, 1] to an (H, W, 3) uint8 array.

    Args:
        image: The image.

    Returns:
        The array.
    """
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def heatmap(values: Tensor, vmin: float, vmax: float) -> np.ndarray:
    """Colour a (H, W) map with the JET colormap between fixed bounds.

    Args:
        values: The map.
        vmin: Value shown as the coldest colour.
        vmax: Value shown as the hottest colour.

    Returns:
        RGB uint8 array (H, W, 3).
    """
    scaled = ((values.detach().float().cpu().numpy() - vmin) / max(vmax - vmin, 1e-12)).clip(0, 1)
    return cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]


def outline(image: np.ndarray, mask: Tensor, colour: tuple[int, int, int]) -> np.ndarray:
    """Draw the contour of a binary mask on an RGB image.

    Args:
        image: RGB uint8 image.
        mask: Binary (H, W) mask.
        colour: RGB colour of the contour.

    Returns:
        A copy of the image with the contour.
    """
    out = np.ascontiguousarray(image.copy())
    contours, _ = cv2.findContours(mask.cpu().numpy().astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, colour, 1)
    return out


def overlay_panel(
    image: Tensor,
    gt_mask: Tensor,
    amap: Tensor,
    threshold: float,
    map_range: tuple[float, float],
    extras: dict[str, Tensor] | None = None,
    hidden: Tensor | None = None,
) -> np.ndarray:
    """Build one overlay row.

    Args:
        image: (3, H, W) image in [0, 1].
        gt_mask: (H, W) ground-truth mask.
        amap: (H, W) anomaly map.
        threshold: Map value above which a pixel is predicted defective (NaN: no prediction).
        map_range: Bounds of the heatmap colours, shared by all samples of a run.
        extras: More (H, W) maps in [0, 1] to append (for example FADeR's soft mask).
        hidden: The (H, W) binary mask M of single-mask models, outlined in blue on the ground-truth panel: the
            defect parts outside it are the ones the skips copy, which FADeR has to find.

    Returns:
        RGB uint8 array (H, W * panels, 3).
    """
    rgb = to_uint8_rgb(image)
    predicted = amap > threshold if not math.isnan(threshold) else torch.zeros_like(gt_mask, dtype=torch.bool)
    panels = [
        rgb,
        outline(outline(rgb, hidden > 0.5, (0, 0, 255)) if hidden is not None else rgb, gt_mask > 0.5, (0, 255, 0)),
        heatmap(amap, *map_range),
        outline(outline(rgb, predicted, (255, 0, 0)), gt_mask > 0.5, (0, 255, 0)),
    ]
    panels += [heatmap(extra, 0.0, 1.0) for extra in (extras or {}).values()]
    return np.concatenate(panels, axis=1)


class OverlayWriter(TestSampleCollector):
    """Writes overlay PNGs for a few test samples spread evenly over the test set.

    Each PNG shows the image, the GT contour (green; with the hidden mask M in blue for single-mask models), the
    anomaly map, and the predicted region (red,
    thresholded at the pixel F1-max threshold, an ORACLE picked on the test labels) plus any extra
    per-image maps the module returns (``soft_mask`` for FADeR).

    Args:
        output_dir: Folder of the run; PNGs go to ``output_dir/overlays/<stage>/``.
        num_samples: Number of samples to draw.
    """

    def __init__(self, output_dir: str | Path, num_samples: int = 8) -> None:
        super().__init__(num_samples)
        self.output_dir = Path(output_dir)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the PNGs once the module has computed its metrics."""
        if not self.picked or not trainer.is_global_zero:
            return
        threshold, map_range = self.threshold_and_range(pl_module)
        folder = self.output_dir / "overlays" / getattr(pl_module, "stage", "test")
        for index, sample in enumerate(self.picked):
            extras = {"soft_mask": sample["soft_mask"]} if sample["soft_mask"] is not None else {}
            panel = overlay_panel(
                sample["image"], sample["mask"], sample["amap"], threshold, map_range, extras, sample["hidden"]
            )
            ok, encoded = cv2.imencode(".png", np.ascontiguousarray(panel[..., ::-1]))
            if ok:
                name = f"{index:02d}_{Path(sample['path']).parent.name}_{Path(sample['path']).stem}.png"
                atomic_write_bytes(folder / name, encoded.tobytes())
        log.info("wrote %d overlays to %s", len(self.picked), folder)
        self.picked = []

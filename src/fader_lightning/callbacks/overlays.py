"""Overlay PNGs of test samples: image | GT mask | anomaly map | predicted mask (| extra maps)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from torch import Tensor

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
) -> np.ndarray:
    """Build one overlay row.

    Args:
        image: (3, H, W) image in [0, 1].
        gt_mask: (H, W) ground-truth mask.
        amap: (H, W) anomaly map.
        threshold: Map value above which a pixel is predicted defective (NaN: no prediction).
        map_range: Bounds of the heatmap colours, shared by all samples of a run.
        extras: More (H, W) maps in [0, 1] to append (for example FADeR's soft mask).

    Returns:
        RGB uint8 array (H, W * panels, 3).
    """
    rgb = to_uint8_rgb(image)
    predicted = amap > threshold if not math.isnan(threshold) else torch.zeros_like(gt_mask, dtype=torch.bool)
    panels = [
        rgb,
        outline(rgb, gt_mask > 0.5, (0, 255, 0)),
        heatmap(amap, *map_range),
        outline(outline(rgb, predicted, (255, 0, 0)), gt_mask > 0.5, (0, 255, 0)),
    ]
    panels += [heatmap(extra, 0.0, 1.0) for extra in (extras or {}).values()]
    return np.concatenate(panels, axis=1)


def spread_test_indices(trainer: L.Trainer, num_samples: int) -> set[int]:
    """Indices of up to ``num_samples`` samples spread evenly over the trainer's test set.

    Args:
        trainer: Trainer whose test dataloaders are set up.
        num_samples: Number of samples wanted.

    Returns:
        Indices in the order the test batches are seen.
    """
    total = sum(len(loader.dataset) for loader in _as_list(trainer.test_dataloaders))
    count = min(num_samples, total)
    return {round(i * (total - 1) / max(count - 1, 1)) for i in range(count)} if count else set()


class OverlayWriter(L.Callback):
    """Writes overlay PNGs for a few test samples spread evenly over the test set.

    Each PNG shows the image, the GT contour (green), the anomaly map, and the predicted region (red,
    thresholded at the pixel F1-max threshold, an ORACLE picked on the test labels) plus any extra
    per-image maps the module returns (``soft_mask`` for FADeR).

    Args:
        output_dir: Folder of the run; PNGs go to ``output_dir/overlays/<stage>/``.
        num_samples: Number of samples to draw.
    """

    def __init__(self, output_dir: str | Path, num_samples: int = 8) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.num_samples = num_samples
        self._picked: list[dict[str, Any]] = []
        self._wanted: set[int] = set()
        self._seen = 0

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Choose which sample indices to draw."""
        self._wanted = spread_test_indices(trainer, self.num_samples)
        self._picked, self._seen = [], 0

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the chosen samples of this batch on CPU."""
        for i in range(len(batch)):
            if self._seen + i in self._wanted:
                extras = {"soft_mask": outputs["soft_mask"][i, 0].cpu()} if "soft_mask" in outputs else {}
                self._picked.append(
                    {
                        "image": batch.image[i].cpu(),
                        "mask": batch.mask[i, 0].cpu(),
                        "amap": outputs["anomaly_map"][i, 0].float().cpu(),
                        "path": batch.path[i],
                        "extras": extras,
                    }
                )
        self._seen += len(batch)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the PNGs once the module has computed its metrics."""
        if not self._picked or not trainer.is_global_zero:
            return
        threshold = getattr(pl_module, "test_metrics", {}).get("pixel_threshold_oracle", math.nan)
        maps = torch.stack([p["amap"] for p in self._picked])
        map_range = (float(maps.min()), float(maps.max()))
        folder = self.output_dir / "overlays" / getattr(pl_module, "stage", "test")
        for index, sample in enumerate(self._picked):
            panel = overlay_panel(
                sample["image"], sample["mask"], sample["amap"], threshold, map_range, sample["extras"]
            )
            ok, encoded = cv2.imencode(".png", np.ascontiguousarray(panel[..., ::-1]))
            if ok:
                name = f"{index:02d}_{Path(sample['path']).parent.name}_{Path(sample['path']).stem}.png"
                atomic_write_bytes(folder / name, encoded.tobytes())
        log.info("wrote %d overlays to %s", len(self._picked), folder)
        self._picked = []


def _as_list(loaders: Any) -> list:
    return loaders if isinstance(loaders, list | tuple) else [loaders]

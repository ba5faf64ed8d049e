"""Overlay PNGs of test samples: image | I' | Î | GT | anomaly map | predicted region (| soft mask) | colour bar."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L

from fader_lightning.callbacks.samples import TestSampleCollector, map_scale
from fader_lightning.utils.background import submit
from fader_lightning.utils.io import atomic_write_bytes
from fader_lightning.visualize import MapScale, encode_png, overlay_panel

log = logging.getLogger(__name__)


class OverlayWriter(TestSampleCollector):
    """Writes overlay PNGs for a few test samples (see :class:`~fader_lightning.callbacks.samples.TestSampleCollector`).

    The PNGs are drawn by the job's background writer (:mod:`~fader_lightning.utils.background`), off the test pass;
    the job waits for them before it ends.

    Each PNG shows the image, I' (what the inpainting network sees), Î (its reconstruction), the GT contour (green;
    with the hidden mask M in blue for single-mask models), the anomaly map on the fixed scale of
    :mod:`fader_lightning.visualize`, the predicted region (red, above the calibrated pixel threshold; models without
    one use the pixel F1-max threshold, an ORACLE picked on the test labels), FADeR's soft mask and a colour bar,
    above a caption with the score, the image threshold and the decision.

    Args:
        output_dir: Folder of the run; PNGs go to ``output_dir/overlays/<stage>/``.
        num_samples: Number of samples to draw.
        selection: ``spread`` (evenly over the test set) or ``worst`` (the highest-scored normal and lowest-scored
            anomalous images: the false positives and false negatives to look at first).
    """

    def __init__(self, output_dir: str | Path, num_samples: int, selection: str) -> None:
        super().__init__(num_samples, selection)
        self.output_dir = Path(output_dir)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Hand the PNGs to the job's background writer once the module has computed its metrics."""
        if not self.picked or not trainer.is_global_zero:
            return
        scale = map_scale(pl_module, [sample["amap"] for sample in self.picked])
        threshold = pl_module.scorer.image_threshold
        captions = [self.captions(sample, scale, threshold) for sample in self.picked]
        folder = self.output_dir / "overlays" / getattr(pl_module, "stage", "test") / (pl_module.test_label or "")
        submit(write_overlays, folder, self.picked, captions, scale, self.selection)
        self.picked = []


def write_overlays(
    folder: Path, samples: list[dict[str, Any]], captions: list[list[str]], scale: MapScale, selection: str
) -> None:
    """Draw and write the overlay PNGs of picked test samples.

    Args:
        folder: Where the PNGs go (``<index>_<defect type>_<stem>.png``).
        samples: The samples of :class:`~fader_lightning.callbacks.samples.TestSampleCollector`.
        captions: Each sample's caption lines.
        scale: The heat-map scale.
        selection: How the samples were picked (for the log line).
    """
    for index, (sample, lines) in enumerate(zip(samples, captions, strict=True)):
        panel = overlay_panel(sample["image"], sample["mask"], sample["amap"], scale, sample["soft_mask"],
                              sample["hidden"], sample["masked_input"], sample["recon"], lines)  # fmt: skip
        name = f"{index:02d}_{Path(sample['path']).parent.name}_{Path(sample['path']).stem}.png"
        atomic_write_bytes(folder / name, encode_png(panel))
    log.info("wrote %d overlays (%s) to %s", len(samples), selection, folder)

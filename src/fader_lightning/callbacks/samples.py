"""Collect a few test samples for callbacks that show them: spread evenly, or the worst-scored ones."""

from __future__ import annotations

import heapq
import math
from typing import Any

import lightning as L
import torch

from fader_lightning.errors import ConfigError
from fader_lightning.visualize import MapScale

SELECTIONS: tuple[str, ...] = ("spread", "worst")
"""``spread``: samples spread evenly over the test set; ``worst``: the highest-scored normal images (false-positive
candidates) and the lowest-scored anomalous ones (false-negative candidates), half each."""


def spread_test_indices(trainer: L.Trainer, num_samples: int) -> set[int]:
    """Indices of up to ``num_samples`` samples spread evenly over the trainer's test set.

    Args:
        trainer: Trainer whose test dataloaders are set up.
        num_samples: Number of samples wanted.

    Returns:
        Indices in the order the test batches are seen.
    """
    loaders = trainer.test_dataloaders
    total = sum(len(loader.dataset) for loader in (loaders if isinstance(loaders, list | tuple) else [loaders]))
    count = min(num_samples, total)
    return {round(i * (total - 1) / max(count - 1, 1)) for i in range(count)} if count else set()


def map_scale(pl_module: L.LightningModule, maps: list[torch.Tensor]) -> MapScale:
    """The heat-map scale of a test pass: the model's calibrated one, else the maps' own range.

    Args:
        pl_module: The tested module (its scorer's thresholds and lows when calibrated).
        maps: The maps to be drawn, for the fallback range.

    Returns:
        The scale; the fallback marks the pixel F1-max threshold, an ORACLE picked on test labels.
    """
    scorer = pl_module.scorer
    lows = scorer.normal_lows
    scale = MapScale.calibrated(scorer.pixel_threshold, lows[1] if lows else None)
    if scale is not None:
        return scale
    stacked = torch.stack(maps)
    oracle = getattr(pl_module, "test_metrics", {}).get("pixel_threshold_oracle", math.nan)
    return MapScale(float(stacked.min()), float(stacked.max()), oracle)


class TestSampleCollector(L.Callback):
    """Keeps, on CPU, the inputs and outputs of a few test samples.

    Subclasses use :attr:`picked` in ``on_test_end`` (after the module computed its metrics) and may
    override :meth:`active` to collect nothing. Each sample holds the image, I' (the image the inpainting network
    sees, for the first mask pass) and Î (the reconstruction) besides the maps, score and labels.

    Args:
        num_samples: Number of samples to keep.
        selection: One of :data:`SELECTIONS`.

    Raises:
        ConfigError: On an unknown selection.
    """

    __test__ = False  # not a pytest class

    def __init__(self, num_samples: int, selection: str = "spread") -> None:
        super().__init__()
        if selection not in SELECTIONS:
            raise ConfigError(f"callbacks.*.selection={selection!r} is unknown; use one of {', '.join(SELECTIONS)}")
        self.num_samples = num_samples
        self.selection = selection
        self.picked: list[dict[str, Any]] = []
        self._wanted: set[int] = set()
        self._worst: dict[int, list[tuple[float, int, dict[str, Any]]]] = {0: [], 1: []}
        self._seen = 0
        self._active = False

    def active(self, trainer: L.Trainer) -> bool:
        """Whether to collect during this test pass (not where the module says the pass is not to be shown)."""
        return bool(getattr(getattr(trainer, "lightning_module", None), "collect_samples", True))

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Choose which sample indices to keep."""
        self._active = self.active(trainer)
        spread = self._active and self.selection == "spread"
        self._wanted = spread_test_indices(trainer, self.num_samples) if spread else set()
        self.picked, self._seen, self._worst = [], 0, {0: [], 1: []}

    def _sample(self, pl_module: L.LightningModule, batch: Any, outputs: Any, i: int) -> dict[str, Any]:
        soft, hidden, recon = outputs.get("soft_mask"), outputs.get("masks"), outputs.get("recon")
        image = batch.image[i : i + 1]
        masked_input = None
        if hidden is not None:
            with torch.no_grad():
                masked_input = pl_module.ear.obfuscation(image, hidden[i : i + 1, :1])[0].float().cpu()
        return {
            "image": image[0].cpu(),
            "mask": batch.mask[i, 0].cpu(),
            "amap": outputs["anomaly_map"][i, 0].float().cpu(),
            "soft_mask": soft[i, 0].float().cpu() if soft is not None else None,
            "hidden": hidden[i, 0].cpu() if hidden is not None and hidden.shape[1] == 1 else None,
            "masked_input": masked_input,
            "recon": recon[i].float().clamp(0, 1).cpu() if recon is not None else None,
            "score": float(outputs["score"][i]),
            "label": int(batch.label[i]),
            "defect_type": batch.defect_type[i],
            "category": batch.category[i],
            "path": batch.path[i],
        }

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the chosen samples of this batch (``worst``: those worse than the worst kept so far)."""
        if not self._active:
            return
        for i in range(len(batch)):
            index = self._seen + i
            if self.selection == "spread":
                if index in self._wanted:
                    self.picked.append(self._sample(pl_module, batch, outputs, i))
                continue
            label = int(batch.label[i])
            badness = float(outputs["score"][i]) * (1.0 if label == 0 else -1.0)
            kept = self._worst[label]
            limit = (self.num_samples + 1 - label) // 2  # normals get the odd one
            if len(kept) < limit:
                heapq.heappush(kept, (badness, index, self._sample(pl_module, batch, outputs, i)))
            elif limit and badness > kept[0][0]:
                heapq.heapreplace(kept, (badness, index, self._sample(pl_module, batch, outputs, i)))
        self._seen += len(batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``worst``: order the kept samples, worst normal first, then worst anomalous."""
        if self.selection == "worst":
            self.picked = [sample for label in (0, 1) for *_, sample in sorted(self._worst[label], reverse=True)]
            self._worst = {0: [], 1: []}

    def captions(self, sample: dict[str, Any], scale: MapScale, image_threshold: float | None) -> list[str]:
        """Caption lines of a sample: truth, score, decision at the image threshold, and the map scale.

        Args:
            sample: A picked sample.
            scale: The heat-map scale.
            image_threshold: The model's calibrated image threshold (``None``: not calibrated).

        Returns:
            The lines.
        """
        truth = "anomalous" if sample["label"] else "normal"
        lines = [f"{sample['category']}/{sample['defect_type']} ({truth})"]
        if image_threshold is None:
            lines.append(f"score {sample['score']:.4g} (no calibrated threshold)")
        else:
            decision = "anomalous" if sample["score"] > image_threshold else "normal"
            lines.append(f"score {sample['score']:.4g} thr {image_threshold:.4g}: {decision}")
        lines.append(f"map {scale.low:.3g}..{scale.high:.3g}, pixel thr {scale.threshold:.3g}")
        return lines

"""Collect a few test samples spread evenly over the test set, for callbacks that show them."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch


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


class TestSampleCollector(L.Callback):
    """Keeps, on CPU, the inputs and outputs of test samples spread evenly over the test set.

    Subclasses use :attr:`picked` in ``on_test_end`` (after the module computed its metrics) and may
    override :meth:`active` to collect nothing.

    Args:
        num_samples: Number of samples to keep.
    """

    def __init__(self, num_samples: int) -> None:
        super().__init__()
        self.num_samples = num_samples
        self.picked: list[dict[str, Any]] = []
        self._wanted: set[int] = set()
        self._seen = 0

    def active(self, trainer: L.Trainer) -> bool:
        """Whether to collect during this test pass."""
        return True

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Choose which sample indices to keep."""
        self._wanted = spread_test_indices(trainer, self.num_samples) if self.active(trainer) else set()
        self.picked, self._seen = [], 0

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the chosen samples of this batch."""
        for i in range(len(batch)):
            if self._seen + i in self._wanted:
                soft, hidden = outputs.get("soft_mask"), outputs.get("masks")
                single_mask = hidden is not None and hidden.shape[1] == 1
                self.picked.append(
                    {
                        "image": batch.image[i].cpu(),
                        "mask": batch.mask[i, 0].cpu(),
                        "amap": outputs["anomaly_map"][i, 0].float().cpu(),
                        "soft_mask": soft[i, 0].float().cpu() if soft is not None else None,
                        "hidden": hidden[i, 0].cpu() if single_mask else None,
                        "score": float(outputs["score"][i]),
                        "label": int(batch.label[i]),
                        "defect_type": batch.defect_type[i],
                        "category": batch.category[i],
                        "path": batch.path[i],
                    }
                )
        self._seen += len(batch)

    def threshold_and_range(self, pl_module: L.LightningModule) -> tuple[float, tuple[float, float]]:
        """The pixel threshold (an ORACLE picked on test labels; NaN when undefined) and the maps' shared range."""
        threshold = getattr(pl_module, "test_metrics", {}).get("pixel_threshold_oracle", math.nan)
        maps = torch.stack([sample["amap"] for sample in self.picked])
        return threshold, (float(maps.min()), float(maps.max()))

"""Map-style dataset over a sample table, and the typed batch it collates into."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from fader_lightning.data.image_cache import ResizedImageCache
from fader_lightning.data.image_io import read_image, read_mask
from fader_lightning.data.samples import Sample


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        image: Float images in [0, 1], shape (B, 3, H, W).
        mask: Float pixel masks in {0, 1}, shape (B, 1, H, W); zeros for normal images.
        label: Image labels (0 normal, 1 anomalous), shape (B,).
        defect_type: Defect type per image (``"good"`` for normal).
        path: Image path per image.
        category: Category per image.
    """

    image: torch.Tensor
    mask: torch.Tensor
    label: torch.Tensor
    defect_type: list[str]
    path: list[str]
    category: list[str]

    def __len__(self) -> int:
        return self.image.shape[0]

    def pin_memory(self) -> Batch:
        """The batch with its tensors in page-locked memory (what a loader with ``pin_memory=True`` calls).

        A pinned batch is copied to a CUDA device asynchronously, so the copy overlaps the compute.
        """
        return replace(self, image=self.image.pin_memory(), mask=self.mask.pin_memory(), label=self.label.pin_memory())


def collate_batch(items: Sequence[dict[str, Any]]) -> Batch:
    """Collate dataset items into a :class:`Batch`.

    Args:
        items: Items returned by :class:`AnomalyDataset`.

    Returns:
        The batch.
    """
    return Batch(
        image=torch.stack([item["image"] for item in items]),
        mask=torch.stack([item["mask"] for item in items]),
        label=torch.tensor([item["label"] for item in items], dtype=torch.long),
        defect_type=[item["defect_type"] for item in items],
        path=[item["path"] for item in items],
        category=[item["category"] for item in items],
    )


class AnomalyDataset(Dataset):
    """Reads images and masks of a sample table and transforms them jointly.

    Args:
        samples: The rows to serve.
        transform: Joint albumentations transform (see :func:`~fader_lightning.data.transforms.build_transform`).
        cache: Keep each transformed image and mask (uint8) in memory after its first read, so later epochs skip
            decoding and resizing. Only for a deterministic ``transform``.
        augment: Random joint augmentation applied after ``transform`` (and after the cache), at every read.
        disk_cache: Resized images kept on disk across processes (the jobs of a sweep); it must hold what
            ``transform`` makes. ``None``: decode every file in every process.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: A.Compose,
        cache: bool = False,
        augment: A.Compose | None = None,
        disk_cache: ResizedImageCache | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.augment = augment
        self.disk_cache = disk_cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Decoded and resized image ``(H, W, 3)`` and mask ``(H, W)`` of one sample (from the disk cache if any).

        Args:
            sample: The sample.

        Returns:
            The arrays, before any augmentation; also stored in the disk cache when they were decoded.
        """
        cached = self.disk_cache.load(sample) if self.disk_cache is not None else None
        if cached is not None:
            return cached
        image = read_image(sample.image_path)
        if sample.mask_path is not None:
            mask = read_mask(sample.mask_path)
        else:
            mask = np.zeros(image.shape[:2], dtype=np.uint8)
        out = self.transform(image=image, mask=mask)
        image, mask = np.array(out["image"]), np.array(out["mask"])
        if self.disk_cache is not None:
            self.disk_cache.store(sample, image, mask)
        return image, mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        if self._cache is not None and index in self._cache:
            image, mask = self._cache[index]
        else:
            image, mask = self.read(sample)
            if self._cache is not None:
                self._cache[index] = (image, mask)
        if self.augment is not None:
            out = self.augment(image=image, mask=mask)
            image, mask = np.ascontiguousarray(out["image"]), np.ascontiguousarray(out["mask"])
        image_t = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        mask_t = torch.from_numpy(mask).unsqueeze(0).float()
        return {
            "image": image_t,
            "mask": mask_t,
            "label": sample.label,
            "defect_type": sample.defect_type,
            "path": str(sample.image_path),
            "category": sample.category,
        }

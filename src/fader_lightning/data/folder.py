"""A user's own data: a folder of normal images, optionally abnormal images and their masks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fader_lightning.data.datamodule import AnomalyDataModule
from fader_lightning.data.samples import ANOMALOUS, GOOD, NORMAL, Sample, find_mask, list_images
from fader_lightning.errors import ConfigError, DataError


class FolderDataModule(AnomalyDataModule):
    """Folders of images with no fixed layout.

    Normal images are split into train and test with a seeded ``normal_test_ratio``; every abnormal
    image is a test image. Masks are matched to abnormal images by stem (plus ``mask_suffix``).

    Args:
        normal_dir: Folder of normal images.
        abnormal_dir: Folder of abnormal images, or ``None`` (then the test split has normals only).
        mask_dir: Folder of masks for the abnormal images, or ``None`` (then pixel metrics are skipped
            and abnormal images get empty masks).
        category: Name used in logs and tables.
        normal_test_ratio: Fraction of normal images moved to the test split.
        mask_suffix: Text between image stem and mask extension.
        split_seed: Seed of the train/test split, kept apart from the training seed so that a seed
            sweep keeps one test set.
        **kwargs: Passed to :class:`~fader_lightning.data.datamodule.AnomalyDataModule`.
    """

    def __init__(
        self,
        normal_dir: str | Path,
        abnormal_dir: str | Path | None = None,
        mask_dir: str | Path | None = None,
        *,
        category: str,
        normal_test_ratio: float,
        mask_suffix: str,
        split_seed: int,
        **kwargs: Any,
    ) -> None:
        if not isinstance(category, str):
            raise ConfigError(
                f"data.category={list(category)}: data=folder reads one folder of normal images, one category; "
                "give it a name (data.category=NAME), or unify categories of a dataset with a root (data=mvtec ...)"
            )
        super().__init__(category=category, **kwargs)
        if not 0.0 <= normal_test_ratio < 1.0:
            raise ConfigError(f"data.normal_test_ratio={normal_test_ratio} must lie in [0, 1)")
        self.normal_dir = Path(normal_dir)
        self.abnormal_dir = Path(abnormal_dir) if abnormal_dir else None
        self.mask_dir = Path(mask_dir) if mask_dir else None
        self.normal_test_ratio = normal_test_ratio
        self.mask_suffix = mask_suffix
        self.split_seed = split_seed
        self.requires_masks = self.mask_dir is not None

    config_name = "folder"

    def category_samples(self, category: str) -> list[Sample]:
        """Build the sample table from the folders (``category`` is the name the run gives them)."""
        for key, directory in (("normal_dir", self.normal_dir), ("abnormal_dir", self.abnormal_dir)):
            if directory is not None and not directory.is_dir():
                raise DataError(f"data.{key}={directory} does not exist; point it at a folder of images")
        normals = list_images(self.normal_dir)
        if not normals:
            raise DataError(f"data.normal_dir={self.normal_dir} holds no images (png, jpg, bmp, tif)")
        order = torch.randperm(len(normals), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        n_test = round(len(normals) * self.normal_test_ratio)
        test_idx = set(order[:n_test])
        samples = [
            Sample(p, "test" if i in test_idx else "train", NORMAL, GOOD, None, category) for i, p in enumerate(normals)
        ]
        samples.sort(key=lambda s: s.split != "train")
        for path in list_images(self.abnormal_dir) if self.abnormal_dir else []:
            mask = find_mask(self.mask_dir, path.stem, self.mask_suffix) if self.mask_dir else None
            if self.mask_dir is not None and mask is None:
                raise DataError(
                    f"abnormal image {path} has no mask in {self.mask_dir} "
                    f"(looked for {path.stem}{self.mask_suffix}.*); "
                    "add it, fix data.mask_suffix, or drop data.mask_dir to skip pixel metrics"
                )
            samples.append(Sample(path, "test", ANOMALOUS, "abnormal", mask, category))
        return samples

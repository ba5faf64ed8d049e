"""Base LightningDataModule: sample table, validation policy and seeded loaders.

Validation policy (``val_policy``):

* ``none`` (default): no validation loop. Nothing is selected on test labels; the final epoch is used.
* ``from_train``: hold out ``val_ratio`` of the normal training images (seeded). Validation then
  measures reconstruction loss on unseen normals only; it never sees a defect or a test file.
* ``official``: the normal images the dataset itself holds out (MVTec AD 2's and MVTec 3D-AD's
  ``validation/good``), for datasets that have them; they play the part of ``from_train``'s held-out normals.
* ``auto`` (the recipe's): ``official`` where the dataset holds normals out itself, else ``from_train``; resolved at
  setup, when :attr:`AnomalyDataModule.val_policy` takes the policy it resolved to.
* ``same_as_test``: validate on the test split. This leaks test labels into anything selected on
  validation, so it logs a warning; use it only to watch curves, as anomalib does by default.
"""

from __future__ import annotations

import copy
import logging
import time
from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import albumentations as A
import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Sampler

from fader_lightning.data.categories import display_name, parse_categories
from fader_lightning.data.dataset import AnomalyDataset, collate_batch
from fader_lightning.data.image_cache import ResizedImageCache
from fader_lightning.data.samples import Sample, split_counts, validate_samples
from fader_lightning.data.transforms import as_hw, build_transform
from fader_lightning.errors import ConfigError

log = logging.getLogger(__name__)

VAL_POLICIES = ("none", "from_train", "official", "auto", "same_as_test")
HELD_OUT_POLICIES = ("from_train", "official")
"""The policies whose validation images are normal images never trained on: they calibrate the thresholds."""


def split_train_val(train: Sequence[Sample], val_ratio: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out a seeded fraction of the training images for validation.

    Args:
        train: Normal training samples.
        val_ratio: Fraction to hold out, in (0, 1).
        seed: Seed of the permutation.

    Returns:
        The remaining training samples and the validation samples, both in their original order.

    Raises:
        ConfigError: When the ratio would leave either part empty.
    """
    if not 0.0 < val_ratio < 1.0:
        raise ConfigError(f"data.val_ratio={val_ratio} must lie in (0, 1) for data.val_policy=from_train")
    n_val = round(len(train) * val_ratio)
    if n_val == 0 or n_val == len(train):
        raise ConfigError(
            f"data.val_ratio={val_ratio} of {len(train)} training images leaves an empty split; pick a ratio that "
            "holds out at least one image and keeps at least one"
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx = set(order[:n_val])
    return [s for i, s in enumerate(train) if i not in val_idx], [s for i, s in enumerate(train) if i in val_idx]


class EpochSeededSampler(Sampler[int]):
    """Random order that depends only on (seed, epoch), with every sample in every epoch and only full batches.

    Lightning calls :meth:`set_epoch` at the start of every epoch, so a run resumed from a checkpoint
    sees exactly the orders the uninterrupted run would have seen. The permutation is extended with its own first
    samples up to a multiple of ``batch_size``: no sample is dropped (``drop_last`` would discard 12 of
    MVTec bottle's 60 images at batch 16) and no batch is smaller than the others (a batch of one breaks
    BatchNorm in training).

    Args:
        length: Dataset length.
        seed: Base seed.
        batch_size: Batch size the order is padded to a multiple of (1: no padding).
    """

    def __init__(self, length: int, seed: int, batch_size: int = 1) -> None:
        self.length = length
        self.seed = seed
        self.batch_size = max(1, batch_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of an epoch.

        Args:
            epoch: Epoch index.
        """
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        while len(order) % self.batch_size:
            order += order[: self.batch_size - len(order) % self.batch_size]
        return iter(order)

    def __len__(self) -> int:
        return -(-self.length // self.batch_size) * self.batch_size if self.length else 0


class AnomalyDataModule(L.LightningDataModule):
    """Shared logic of every dataset: subclasses only build the sample table of one category.

    One category trains a one-class model. Several (``data.category=[a,b,c]``, or ``all`` of the dataset's official
    ones) train one *unified* model on the union of their normal images: the training images are shuffled together,
    each category holds out its own share of normals (``from_train``), and :meth:`category_view` gives the data of one
    category, so that the job tests (and calibrates) the unified model per category.

    Args:
        category: Category name, a list of them (unified training) or ``all`` (used in logs, tables and W&B tags).
        image_size: Model input size, an int or (height, width).
        train_batch_size: Batch size of the training loader.
        eval_batch_size: Batch size of validation, test and predict loaders.
        num_workers: Loader worker processes.
        val_policy: One of ``none``, ``from_train``, ``same_as_test`` (see the module docstring).
        val_ratio: Fraction of training normals held out with ``from_train``.
        seed: Seed of the train/val split and of the training shuffle.
        train_augmentations: Albumentations transforms for training images only.
        check_mask_sizes: Compare every mask's size with its image's at setup.
        interpolation: Image resize method: ``area`` (default, no aliasing when downscaling), ``linear``, ``cubic``.
        check_cache: JSON file remembering which files setup has decoded and checked (by a digest of their
            bytes), so the jobs of a sweep check each file once; ``None`` remembers them in this process only.
        image_cache: Folder of resized images and masks shared by the jobs of a sweep (see
            :mod:`~fader_lightning.data.image_cache`); ``None`` decodes every file in every job.
    """

    requires_masks: bool = True
    known_categories: tuple[str, ...] = ()
    """The dataset's official categories: what ``data.category=all`` means (empty: no official list)."""
    config_name: str = "?"
    """The ``conf/data`` config of this datamodule, for messages."""

    def __init__(
        self,
        category: str | Sequence[str],
        *,
        image_size: int | Sequence[int],
        interpolation: str,
        train_batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        val_policy: str,
        val_ratio: float,
        seed: int,
        train_augmentations: Sequence[A.BasicTransform] = (),
        check_mask_sizes: bool = True,
        check_cache: str | None = None,
        image_cache: str | None = None,
    ) -> None:
        super().__init__()
        if val_policy not in VAL_POLICIES:
            raise ConfigError(f"data.val_policy={val_policy!r} is unknown; use one of {', '.join(VAL_POLICIES)}")
        self.categories = parse_categories(category, self.known_categories, self.config_name)
        self.category = display_name(self.categories)
        self.image_size = as_hw(image_size)
        self.train_batch_size = train_batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.val_policy = val_policy
        self.val_ratio = val_ratio
        self.seed = seed
        self.train_augmentations = list(train_augmentations)
        self._datasets: dict[str, AnomalyDataset] = {}
        self.check_mask_sizes = check_mask_sizes
        self.check_cache = check_cache
        self.disk_cache = ResizedImageCache(image_cache, self.image_size, interpolation) if image_cache else None
        build_transform(image_size, interpolation=interpolation)  # an unknown method fails here, not at the first batch
        self.interpolation = interpolation
        self.train_samples: list[Sample] = []
        self.val_samples: list[Sample] = []
        self.test_samples: list[Sample] = []

    @property
    def unified(self) -> bool:
        """Whether this data trains one model on several categories."""
        return len(self.categories) > 1

    @abstractmethod
    def category_samples(self, category: str) -> list[Sample]:
        """Build the sample table of one category of this dataset.

        Args:
            category: One of :attr:`categories`.

        Returns:
            Every train and test sample of the category.
        """

    def check_categories(self) -> None:
        """Refuse, before any file is read, categories this data cannot serve (datasets with a root check it)."""

    def make_samples(self) -> list[Sample]:
        """The sample table of every category of :attr:`categories`, one category after the other.

        Returns:
            Every train and test sample.
        """
        if self.unified:
            self.check_categories()
        return [sample for category in self.categories for sample in self.category_samples(category)]

    def setup(self, stage: str | None = None) -> None:
        """Build the sample table, decode and check every file of it, then apply the validation policy.

        Args:
            stage: Lightning stage (unused: all splits are built at once, cheaply).
        """
        if self.train_samples or self.test_samples:
            return
        samples = self.make_samples()
        for category in self.categories:  # each category complete on its own: a unified run tests every one
            validate_samples(
                [s for s in samples if s.category == category],
                check_mask_sizes=self.check_mask_sizes,
                require_masks=self.requires_masks,
                cache_file=self.check_cache,
            )
        train = [s for s in samples if s.split == "train"]
        official = [s for s in samples if s.split == "val"]  # normals the dataset itself holds out
        self.test_samples = [s for s in samples if s.split == "test"]
        if self.val_policy == "auto":
            self.val_policy = "official" if official else "from_train"
        if self.val_policy == "official":
            if not official:
                raise ConfigError(
                    f"data.val_policy=official takes the normal images a dataset holds out itself, and data="
                    f"{self.config_name} has none; use data.val_policy=from_train"
                )
            self.train_samples, self.val_samples = train, official
        elif self.val_policy == "from_train":  # per category: each calibrates its own thresholds in a unified run
            for category in self.categories:
                kept, held = split_train_val([s for s in train if s.category == category], self.val_ratio, self.seed)
                self.train_samples += kept
                self.val_samples += held
        else:
            self.train_samples = train
            if self.val_policy == "same_as_test":
                log.warning("data.val_policy=same_as_test validates on the test split: never select on it")
                self.val_samples = list(self.test_samples)
        log.info("%s splits: %s", self.category, split_counts(samples))
        if self.disk_cache is not None:
            self.fill_image_cache(self.disk_cache, samples)

    def category_view(self, category: str) -> AnomalyDataModule:
        """The data of one category of a set-up unified datamodule: its training, held-out and test images only.

        The view shares the settings and caches of this datamodule; the job tests and calibrates a unified model on
        each category's view.

        Args:
            category: One of :attr:`categories`.

        Returns:
            A datamodule serving that category.

        Raises:
            ConfigError: For a category this data does not hold.
        """
        if category not in self.categories:
            raise ConfigError(f"category {category!r} is not one of this run's: {', '.join(self.categories)}")
        view = copy.copy(self)
        view.categories, view.category = [category], category
        view._datasets = {}
        for split in ("train_samples", "val_samples", "test_samples"):
            setattr(view, split, [s for s in getattr(self, split) if s.category == category])
        return view

    def fill_image_cache(self, cache: ResizedImageCache, samples: Sequence[Sample]) -> None:
        """Decode and resize, on the job's threads, every file the image cache lacks.

        Pillow and OpenCV release the GIL, so this uses every core the job has, while a loader without workers
        decodes on one; the loaders then only read the cache.

        Args:
            cache: The cache.
            samples: The samples to cache.
        """
        missing = [sample for sample in samples if not cache.entry(sample).is_file()]
        if not missing:
            return
        reader = AnomalyDataset(missing, build_transform(self.image_size, self.interpolation), disk_cache=cache)

        def store(sample: Sample) -> None:  # the arrays go to disk only: a large split never sits in memory
            reader.read(sample)

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
            list(pool.map(store, missing))
        log.info("cached %d resized images in %s (%.1f s)", len(missing), cache.folder, time.perf_counter() - start)

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        augmentations = self.train_augmentations if train else ()
        if split not in self._datasets:  # one dataset per split, so its decoded-image cache outlives each loader
            transform = build_transform(self.image_size, interpolation=self.interpolation)
            samples = {"normal": self.normal_samples, "fit": self.train_samples}.get(split)
            samples = getattr(self, f"{split}_samples") if samples is None else samples
            augment = A.Compose(augmentations) if augmentations else None  # after the cached resize, every read
            self._datasets[split] = AnomalyDataset(
                samples, transform, cache=True, augment=augment, disk_cache=self.disk_cache
            )
        dataset = self._datasets[split]
        batch_size = self.train_batch_size if train else self.eval_batch_size
        sampler = EpochSeededSampler(len(dataset), self.seed, batch_size) if train else None
        if split == "test" and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # every test image exactly once over the ranks (Lightning's own sampler would repeat some to even them)
            sampler = UnrepeatedDistributedSampler(dataset, dist.get_world_size(), dist.get_rank(), shuffle=False)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_batch,
            pin_memory=self.feeds_cuda,
        )

    @property
    def feeds_cuda(self) -> bool:
        """Whether the trainer runs on CUDA GPUs: batches are then pinned, and copied while the GPU computes."""
        return self.trainer is not None and isinstance(self.trainer.accelerator, CUDAAccelerator)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, seeded loader over the normal training images."""
        return self._loader("train")

    def val_dataloader(self) -> DataLoader | list:
        """Validation loader per ``val_policy`` (an empty list when the policy is ``none``)."""
        return self._loader("val") if self.val_samples else []

    @property
    def holds_out_normals(self) -> bool:
        """Whether normal images were held out of training (``from_train``, ``official``): they calibrate thresholds."""
        return self.val_policy in HELD_OUT_POLICIES and bool(self.val_samples)

    @property
    def normal_samples(self) -> list[Sample]:
        """Every normal image of the training split: the training images and the held-out normals."""
        return self.train_samples + (self.val_samples if self.val_policy in HELD_OUT_POLICIES else [])

    def normal_dataloader(self) -> DataLoader:
        """Loader over :attr:`normal_samples`, unaugmented and in order, to calibrate scores on (never test images)."""
        return self._loader("normal")

    def fit_dataloader(self) -> DataLoader:
        """Loader over the training images only (no held-out normals), unaugmented and in order.

        What the normal-map statistics are fitted on: the held-out normals must stay unseen by them, or the thresholds
        calibrated on those normals come out too low for normals the model has never met.
        """
        return self._loader("fit")

    def test_dataloader(self) -> DataLoader:
        """Loader over the test split, in table order."""
        return self._loader("test")

"""MVTec AD in its official layout, and MVTec-like sets with other mask names."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fader_lightning.data.categories import check_present
from fader_lightning.data.datamodule import AnomalyDataModule
from fader_lightning.data.samples import ANOMALOUS, GOOD, NORMAL, Sample, find_mask, list_images
from fader_lightning.errors import DataError

log = logging.getLogger(__name__)

MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)

MVTEC_DOWNLOAD_STEPS = """\
MVTec AD cannot be downloaded automatically. To install it:
  1. Download the per-category archives (or mvtec_anomaly_detection.tar.xz) from
     https://www.mvtec.com/company/research/datasets/mvtec-ad (free, non-commercial licence).
  2. Extract them so that the layout is ROOT/<category>/train/good/*.png,
     ROOT/<category>/test/<defect>/*.png and ROOT/<category>/ground_truth/<defect>/<stem>_mask.png.
  3. Point the project at ROOT: data.root=ROOT on the command line, or put ROOT at
     $FADER_DATA_DIR/mvtec_ad (FADER_DATA_DIR is the folder holding mvtec_ad/ and visa/).
  4. Check it: fader-check-data --dataset mvtec --root ROOT --category bottle"""


def resolve_category_dir(root: Path, category: str, known: tuple[str, ...], steps: str) -> Path:
    """Find a category folder under a dataset root, with actionable errors.

    Args:
        root: Dataset root.
        category: Requested category.
        known: The dataset's official category names, used for suggestions.
        steps: Manual install steps to print when the root is missing.

    Returns:
        ``root / category``.

    Raises:
        DataError: When the root or the category folder is missing.
    """
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist.\n{steps}")
    if not category or category in (".", "..") or Path(category).name != category:
        raise DataError(
            f"data.category={category!r} must name one folder under data.root={root} (no path separators, not "
            f"'.' or '..'); official names: {', '.join(known)}"
        )
    category_dir = root / category
    if category_dir.is_dir():
        if category not in known:
            log.info("category '%s' is not an official name; loading it as an MVTec-style folder", category)
        return category_dir
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    candidates = sorted(set(present) | set(known))
    close = difflib.get_close_matches(category, candidates, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise DataError(
        f"data.category={category!r} not found under data.root={root}.{hint} Present there: "
        f"{', '.join(present) or 'nothing'}; "
        f"official names: {', '.join(known)}."
    )


def normal_splits(
    category: str, folders: dict[str, Path], read: Callable[[Path], list[Path]], dataset: str, steps: str
) -> list[Sample]:
    """The normal images of the folders a dataset keeps its training and validation normals in, each required.

    Args:
        category: The category.
        folders: ``{split: folder}``, e.g. ``{"train": <c>/train/good, "val": <c>/validation/good}``.
        read: Lists the images of a folder (e.g. its ``rgb/`` sub-folder).
        dataset: The dataset's name, for the message.
        steps: Its manual install steps.

    Returns:
        The samples, split by split.

    Raises:
        DataError: When a folder holds no images.
    """
    samples = []
    for split, folder in folders.items():
        images = read(folder)
        if not images:
            raise DataError(
                f"{folder} holds no images; {dataset} categories have {folder.relative_to(folder.parents[1])} (the "
                f"validation normals calibrate the thresholds): re-extract the category's archive.\n{steps}"
            )
        samples += [Sample(path, split, NORMAL, GOOD, None, category) for path in images]
    return samples


def make_mvtec_samples(root: Path, category: str, mask_suffix: str = "_mask") -> list[Sample]:
    """Build the sample table of one MVTec AD (or MVTec-like) category.

    Args:
        root: Dataset root holding one folder per category.
        category: Category folder name.
        mask_suffix: Text between an image stem and the mask extension (``_mask`` for MVTec AD,
            ``""`` for sets whose masks are named like their images).

    Returns:
        Train samples (``train/good``) then test samples (``test/<defect>``), each sorted by path.

    Raises:
        DataError: When the root or category is missing or the category has no training images.
    """
    category_dir = resolve_category_dir(Path(root), category, MVTEC_CATEGORIES, MVTEC_DOWNLOAD_STEPS)
    train_images = list_images(category_dir / "train" / GOOD)
    if not train_images:
        raise DataError(
            f"category '{category}' has no training images in {category_dir / 'train' / GOOD}; "
            "MVTec-style sets need normal images there"
        )
    samples = [Sample(p, "train", NORMAL, GOOD, None, category) for p in train_images]
    test_dir = category_dir / "test"
    if not test_dir.is_dir():
        raise DataError(
            f"{test_dir} does not exist; MVTec-style categories need test/good and test/<defect> folders (re-extract "
            "the category's archive)"
        )
    for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        defect = defect_dir.name
        for image_path in list_images(defect_dir):
            if defect == GOOD:
                samples.append(Sample(image_path, "test", NORMAL, GOOD, None, category))
                continue
            mask = find_mask(category_dir / "ground_truth" / defect, image_path.stem, mask_suffix)
            samples.append(Sample(image_path, "test", ANOMALOUS, defect, mask, category))
    return samples


class RootedDataModule(AnomalyDataModule):
    """A dataset read from a root folder that holds one folder per category.

    Args:
        root: Dataset root.
        category: Category name, a list of them, or ``all``.
        **kwargs: Passed to :class:`~fader_lightning.data.datamodule.AnomalyDataModule`.
    """

    def __init__(self, root: str | Path, category: str | Sequence[str], **kwargs: Any) -> None:
        super().__init__(category=category, **kwargs)
        self.root = Path(root)

    def check_categories(self) -> None:
        """Refuse the listed categories that have no folder under the root, all of them in one message."""
        check_present(self.categories, self.root, self.known_categories)


class MVTecADDataModule(RootedDataModule):
    """MVTec AD, official layout.

    Args:
        root: Dataset root holding one folder per category.
        category: Category folder name (one of :data:`MVTEC_CATEGORIES`, or any MVTec-style folder), a list of them
            (one unified model) or ``all``.
        mask_suffix: Mask name suffix; ``""`` for masks named ``<stem>.png``.
        **kwargs: Passed to :class:`~fader_lightning.data.datamodule.AnomalyDataModule`.
    """

    known_categories = MVTEC_CATEGORIES
    config_name = "mvtec"

    def __init__(self, root: str | Path, category: str | Sequence[str], *, mask_suffix: str, **kwargs: Any) -> None:
        super().__init__(root, category, **kwargs)
        self.mask_suffix = mask_suffix

    def category_samples(self, category: str) -> list[Sample]:
        """Build one category's sample table from the folder layout."""
        return make_mvtec_samples(self.root, category, self.mask_suffix)

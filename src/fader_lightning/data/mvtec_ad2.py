"""MVTec AD 2 in its official layout: train, validation, the public test set with masks, and the private test sets.

Layout of a category (``ROOT/<category>/``; a per-category archive extracted into a folder of its own name, i.e.
``ROOT/<category>/<category>/``, is found too)::

    train/good/000_regular.png          normal training images (the suffix names the lighting)
    validation/good/000_regular.png     normal images held out by the dataset: they calibrate the thresholds
    test_public/good/*.png              normal test images
    test_public/bad/*.png               anomalous test images
    test_public/ground_truth/bad/<stem>_mask.png    their masks (0 / 255)
    test_private/*.png, test_private_mixed/*.png    test images whose labels MVTec withholds (their evaluation
                                                    server scores them): predict-only

Images are large, not square, and some categories are grayscale: every source is read as RGB (``image_io``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fader_lightning.data.mvtec import RootedDataModule, normal_splits, resolve_category_dir
from fader_lightning.data.samples import ANOMALOUS, GOOD, NORMAL, Sample, find_mask, list_images
from fader_lightning.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MVTEC_AD2_CATEGORIES: tuple[str, ...] = (
    "can",
    "fabric",
    "fruit_jelly",
    "rice",
    "sheet_metal",
    "vial",
    "wallplugs",
    "walnuts",
)
PUBLIC_TEST = "test_public"
"""The test split with labels and masks: the one metrics are computed on."""
PRIVATE_TESTS: tuple[str, ...] = ("test_private", "test_private_mixed")
"""The test splits whose labels are withheld: scored with ``fader-predict``, never with metrics."""
DEFECT = "bad"
MASK_SUFFIX = "_mask"

MVTEC_AD2_DOWNLOAD_STEPS = """\
MVTec AD 2 cannot be downloaded automatically. To install it:
  1. Download the category archives (or mvtec_ad_2.tar.gz) from https://www.mvtec.com/company/research/datasets/mvtec-ad-2
     (free, non-commercial licence).
  2. Extract them so that ROOT/<category>/train/good, ROOT/<category>/validation/good,
     ROOT/<category>/test_public/{good,bad,ground_truth/bad} and ROOT/<category>/test_private exist.
  3. Point the project at ROOT: data=mvtec_ad2 data.root=ROOT, or put ROOT at $FADER_DATA_DIR/mvtec_ad2.
  4. Check it: fader-check-data --dataset mvtec_ad2 --root ROOT --category can"""


def category_folder(root: Path, category: str) -> Path:
    """The folder of a category, also where its archive was extracted into a folder of the same name."""
    folder = resolve_category_dir(Path(root), category, MVTEC_AD2_CATEGORIES, MVTEC_AD2_DOWNLOAD_STEPS)
    nested = folder / category
    return nested if not (folder / "train").is_dir() and (nested / "train").is_dir() else folder


def check_test_split(test_split: str) -> None:
    """Refuse a test split that cannot give metrics: the private ones, whose labels are withheld.

    Args:
        test_split: ``data.test_split``.

    Raises:
        ConfigError: For a private split (the message says how to score it) or an unknown name.
    """
    if test_split in PRIVATE_TESTS:
        raise ConfigError(
            f"data.test_split={test_split}: MVTec withholds the labels of {test_split} (its evaluation server scores "
            f"them), so no metric can be computed on it; keep data.test_split={PUBLIC_TEST} for metrics, and score the "
            f"private images with fader-predict ckpt_path=<run>/checkpoints/<stage>/last.ckpt "
            f"input=ROOT/<category>/{test_split} output=<folder>"
        )
    if test_split != PUBLIC_TEST:
        raise ConfigError(f"data.test_split={test_split!r} is not a split of MVTec AD 2; use {PUBLIC_TEST}")


def make_mvtec_ad2_samples(root: Path, category: str) -> list[Sample]:
    """Build the sample table of one MVTec AD 2 category: train, the official validation normals, public test.

    Args:
        root: Dataset root holding one folder per category.
        category: Category name.

    Returns:
        Train samples, validation samples (split ``val``), then public test samples, each sorted by path.

    Raises:
        DataError: When a split folder is missing or empty, or an anomalous image has no mask.
    """
    folder = category_folder(root, category)
    folders = {"train": folder / "train" / GOOD, "val": folder / "validation" / GOOD}
    samples = normal_splits(category, folders, list_images, "MVTec AD 2", MVTEC_AD2_DOWNLOAD_STEPS)
    test = folder / PUBLIC_TEST
    if not test.is_dir():
        raise DataError(f"{test} does not exist; re-extract the category's archive.\n{MVTEC_AD2_DOWNLOAD_STEPS}")
    samples += [Sample(path, "test", NORMAL, GOOD, None, category) for path in list_images(test / GOOD)]
    for path in list_images(test / DEFECT):
        mask = find_mask(test / "ground_truth" / DEFECT, path.stem, MASK_SUFFIX)
        if mask is None:
            raise DataError(
                f"anomalous test image {path} has no mask {test / 'ground_truth' / DEFECT / (path.stem + MASK_SUFFIX)}"
                ".png; re-extract the category's archive"
            )
        samples.append(Sample(path, "test", ANOMALOUS, DEFECT, mask, category))
    private = [name for name in PRIVATE_TESTS if (folder / name).is_dir()]
    if private:
        log.info("%s: %s hold(s) images without labels (MVTec withholds them): not tested here; score them with "
                 "fader-predict input=%s", category, ", ".join(private), folder / private[0])  # fmt: skip
    return samples


class MVTecAD2DataModule(RootedDataModule):
    """MVTec AD 2, official layout: its validation normals calibrate the thresholds, its public test gives metrics.

    Args:
        root: Dataset root holding one folder per category.
        category: Category name, a list of them (one unified model) or ``all``.
        test_split: The split metrics are computed on: ``test_public`` (the private ones are refused, their labels
            are withheld).
        **kwargs: Passed to :class:`~fader_lightning.data.datamodule.AnomalyDataModule` (``val_policy=official``
            holds out the dataset's ``validation/good``).
    """

    known_categories = MVTEC_AD2_CATEGORIES
    config_name = "mvtec_ad2"

    def __init__(self, root: str | Path, category: str | Sequence[str], *, test_split: str, **kwargs: Any) -> None:
        check_test_split(test_split)
        super().__init__(root, category, **kwargs)
        self.test_split = test_split

    def category_samples(self, category: str) -> list[Sample]:
        """Build one category's sample table from the official layout."""
        return make_mvtec_ad2_samples(self.root, category)

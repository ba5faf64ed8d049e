"""MVTec 3D-AD read as RGB: its ``rgb/`` images and ``gt/`` masks; the ``xyz/`` point clouds are not read.

Layout of a category (``ROOT/<category>/``)::

    train/good/{rgb/000.png, xyz/000.tiff}
    validation/good/{rgb,xyz}/...        normal images held out by the dataset: they calibrate the thresholds
    test/<defect or good>/{rgb/000.png, xyz/000.tiff, gt/000.png}

The masks hold the defect's class id (253, 254, 255, ... as ``class_ids.json`` says), not 0/255: any non-zero pixel
is anomalous. ``test/good/gt`` holds empty masks. ``calibration/``, ``class_ids.json`` and the text files beside the
splits are not data.
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

MVTEC3D_CATEGORIES: tuple[str, ...] = (
    "bagel",
    "cable_gland",
    "carrot",
    "cookie",
    "dowel",
    "foam",
    "peach",
    "potato",
    "rope",
    "tire",
)
RGB, XYZ, GT = "rgb", "xyz", "gt"

MVTEC3D_DOWNLOAD_STEPS = """\
MVTec 3D-AD cannot be downloaded automatically. To install it:
  1. Download mvtec_3d_anomaly_detection.tar.xz from https://www.mvtec.com/company/research/datasets/mvtec-3d-ad
     (free, non-commercial licence).
  2. Extract it so that ROOT/<category>/train/good/rgb/*.png, ROOT/<category>/validation/good/rgb/*.png and
     ROOT/<category>/test/<defect>/{rgb,gt}/*.png exist.
  3. Point the project at ROOT: data=mvtec3d data.root=ROOT, or put ROOT at $FADER_DATA_DIR/mvtec3d.
  4. Check it: fader-check-data --dataset mvtec3d --root ROOT --category bagel"""


def check_modality(modality: str) -> None:
    """Refuse a modality other than RGB: the point clouds are not images.

    Args:
        modality: ``data.modality``.

    Raises:
        ConfigError: For ``xyz`` (or ``depth``) and any unknown name.
    """
    if modality in (XYZ, "depth"):
        raise ConfigError(
            f"data.modality={modality}: MVTec 3D-AD's xyz/*.tiff files are organised point clouds (x, y, z per pixel), "
            "not images, and the masked-inpainting model reads images; use data.modality=rgb (the RGB setting of the "
            "benchmark)"
        )
    if modality != RGB:
        raise ConfigError(f"data.modality={modality!r} is unknown; MVTec 3D-AD is read as rgb")


def _images(folder: Path) -> list[Path]:
    """The RGB images of one ``<split>/<defect>`` folder, refusing one that has point clouds only."""
    images = list_images(folder / RGB)
    if not images and (folder / XYZ).is_dir():
        raise DataError(
            f"{folder} has xyz/ but no rgb/ images; this project reads MVTec 3D-AD's RGB images: extract the full "
            f"archive (rgb/, xyz/ and gt/ per folder).\n{MVTEC3D_DOWNLOAD_STEPS}"
        )
    return images


def make_mvtec3d_samples(root: Path, category: str) -> list[Sample]:
    """Build the sample table of one MVTec 3D-AD category from its RGB images and masks.

    Args:
        root: Dataset root holding one folder per category.
        category: Category name.

    Returns:
        Train samples, the official validation normals (split ``val``), then test samples, each sorted by path.

    Raises:
        DataError: When a split is missing or an anomalous image has no mask.
    """
    folder = resolve_category_dir(Path(root), category, MVTEC3D_CATEGORIES, MVTEC3D_DOWNLOAD_STEPS)
    folders = {"train": folder / "train" / GOOD, "val": folder / "validation" / GOOD}
    samples = normal_splits(category, folders, _images, "MVTec 3D-AD", MVTEC3D_DOWNLOAD_STEPS)
    test = folder / "test"
    if not test.is_dir():
        raise DataError(f"{test} does not exist; re-extract the category.\n{MVTEC3D_DOWNLOAD_STEPS}")
    for defect_dir in sorted(p for p in test.iterdir() if p.is_dir()):
        for path in _images(defect_dir):
            if defect_dir.name == GOOD:  # its gt/ masks are empty
                samples.append(Sample(path, "test", NORMAL, GOOD, None, category))
                continue
            mask = find_mask(defect_dir / GT, path.stem, "")
            if mask is None:
                raise DataError(f"anomalous test image {path} has no mask {defect_dir / GT / path.name}; re-extract it")
            samples.append(Sample(path, "test", ANOMALOUS, defect_dir.name, mask, category))
    return samples


class MVTec3DDataModule(RootedDataModule):
    """MVTec 3D-AD as RGB: the ``rgb/`` images and ``gt/`` masks (the ``xyz/`` point clouds are not read).

    Args:
        root: Dataset root holding one folder per category.
        category: Category name, a list of them (one unified model) or ``all``.
        modality: ``rgb`` (``xyz`` is refused: point clouds are not images).
        **kwargs: Passed to :class:`~fader_lightning.data.datamodule.AnomalyDataModule` (``val_policy=official``
            holds out the dataset's ``validation/good``).
    """

    known_categories = MVTEC3D_CATEGORIES
    config_name = "mvtec3d"

    def __init__(self, root: str | Path, category: str | Sequence[str], *, modality: str, **kwargs: Any) -> None:
        check_modality(modality)
        super().__init__(root, category, **kwargs)
        self.modality = modality
        log.info("MVTec 3D-AD: reading the rgb/ images and gt/ masks; the xyz/ point clouds are not used")

    def category_samples(self, category: str) -> list[Sample]:
        """Build one category's sample table from the official layout."""
        return make_mvtec3d_samples(self.root, category)

"""VisA in its raw layout, read through the official ``split_csv/1cls.csv``."""

from __future__ import annotations

import csv
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fader_lightning.data.image_io import read_mask
from fader_lightning.data.mvtec import RootedDataModule, resolve_category_dir
from fader_lightning.data.samples import ANOMALOUS, GOOD, NORMAL, Sample
from fader_lightning.errors import DataError

log = logging.getLogger(__name__)

VISA_CATEGORIES: tuple[str, ...] = (
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)
VISA_CSV_COLUMNS: tuple[str, ...] = ("object", "split", "label", "image", "mask")
VISA_DEFECT = "bad"

VISA_DOWNLOAD_STEPS = """\
VisA cannot be downloaded automatically. To install it:
  1. Download VisA_20220922.tar from https://github.com/amazon-science/spot-diff (CC BY 4.0).
  2. Extract it to ROOT, so that ROOT/<object>/Data/Images/{Normal,Anomaly}/*.JPG and
     ROOT/<object>/Data/Masks/Anomaly/*.png exist.
  3. Put the official split file at ROOT/split_csv/1cls.csv (it is in the spot-diff repository).
  4. Point the project at ROOT: data=visa data.root=ROOT, or put ROOT at $FADER_DATA_DIR/visa
     (FADER_DATA_DIR is the folder holding mvtec_ad/ and visa/).
  5. Check it: fader-check-data --dataset visa --root ROOT --category candle"""


def read_visa_split(csv_path: Path) -> list[dict[str, str]]:
    """Read and check a VisA split file.

    Args:
        csv_path: Path of ``1cls.csv`` (columns ``object,split,label,image,mask``).

    Returns:
        The rows as dicts, in file order.

    Raises:
        DataError: When the file is missing or lacks a column.
    """
    if not csv_path.is_file():
        raise DataError(
            f"VisA split file {csv_path} does not exist; copy split_csv/1cls.csv from the spot-diff repository there "
            "or set data.split_csv to its path.\n" + VISA_DOWNLOAD_STEPS
        )
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in VISA_CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"VisA split file {csv_path} lacks column(s) {', '.join(missing)}; expected header "
                f"{','.join(VISA_CSV_COLUMNS)} as in the official 1cls.csv"
            )
        return list(reader)


def visa_samples_from_rows(rows: list[dict[str, str]], root: Path, category: str, csv_path: Path) -> list[Sample]:
    """Turn the split rows of one object into samples, checking that their files exist.

    Args:
        rows: Rows of :func:`read_visa_split`.
        root: VisA root the csv paths are relative to.
        category: Object name.
        csv_path: The csv path, for error messages.

    Returns:
        Train samples then test samples, in file order.

    Raises:
        DataError: When a row names a missing file or has an unknown split or label.
    """
    samples: list[Sample] = []
    for line, row in enumerate(rows, start=2):
        if row["object"] != category:
            continue
        if row["split"] not in ("train", "test") or row["label"] not in ("normal", "anomaly"):
            raise DataError(
                f"{csv_path} line {line}: split={row['split']!r}, label={row['label']!r}; expected split train/test "
                "and label normal/anomaly"
            )
        image = root / row["image"]
        anomalous = row["label"] == "anomaly"
        mask = root / row["mask"] if anomalous and row["mask"] else None
        for path in (image, mask):
            if path is not None and not path.is_file():
                raise DataError(
                    f"{csv_path} line {line} points to {path}, which does not exist; extract the full VisA archive "
                    f"under {root} (or remove the row)"
                )
        label, defect = (ANOMALOUS, VISA_DEFECT) if anomalous else (NORMAL, GOOD)
        samples.append(Sample(image, row["split"], label, defect, mask, category))
    samples.sort(key=lambda s: s.split != "train")
    return samples


def make_visa_samples(root: Path, category: str, split_csv: Path | None = None) -> list[Sample]:
    """Build the sample table of one VisA object.

    Args:
        root: VisA root (raw layout).
        category: Object name, one of :data:`VISA_CATEGORIES`.
        split_csv: Split file; defaults to ``root/split_csv/1cls.csv``.

    Returns:
        The object's samples.

    Raises:
        DataError: When the root, object, csv or a named file is missing.
    """
    root = Path(root)
    resolve_category_dir(root, category, VISA_CATEGORIES, VISA_DOWNLOAD_STEPS)
    csv_path = Path(split_csv) if split_csv else root / "split_csv" / "1cls.csv"
    samples = visa_samples_from_rows(read_visa_split(csv_path), root, category, csv_path)
    if not samples:
        raise DataError(f"{csv_path} has no rows for object '{category}'; check data.category and the split file")
    return samples


def materialise_mvtec_layout(samples: list[Sample], out_root: Path) -> Path:
    """Write an MVTec-style copy of a VisA object, with masks re-encoded as 0/255 PNG.

    Images are copied byte for byte; masks are binarised with ``> 0``. Files are written to a
    temporary folder and moved into place at the end, so a crash leaves no half-written category.

    Args:
        samples: Samples of one object (from :func:`make_visa_samples`).
        out_root: Root of the MVTec-style copy.

    Returns:
        The category folder written, ``out_root/<category>``.
    """
    category = samples[0].category
    final = Path(out_root) / category
    staging = Path(out_root) / f".{category}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    counters: dict[tuple[str, str], int] = {}
    for sample in samples:
        key = (sample.split, sample.defect_type)
        index = counters.get(key, 0)
        counters[key] = index + 1
        image_dir = staging / sample.split / sample.defect_type
        image_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{index:04d}"
        shutil.copyfile(sample.image_path, image_dir / f"{stem}{sample.image_path.suffix.lower()}")
        if sample.mask_path is not None:
            mask_dir = staging / "ground_truth" / sample.defect_type
            mask_dir.mkdir(parents=True, exist_ok=True)
            mask = read_mask(sample.mask_path) * np.uint8(255)
            Image.fromarray(mask).save(mask_dir / f"{stem}_mask.png")
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    log.info("wrote MVTec-style copy of %s to %s", category, final)
    return final


class VisADataModule(RootedDataModule):
    """VisA, raw layout, official one-class split.

    Args:
        root: VisA root (raw layout).
        category: Object name, a list of them (one unified model) or ``all``.
        split_csv: Split file; defaults to ``root/split_csv/1cls.csv``.
        **kwargs: Passed to :class:`~fader_lightning.data.datamodule.AnomalyDataModule`.
    """

    known_categories = VISA_CATEGORIES
    config_name = "visa"

    def __init__(
        self, root: str | Path, category: str | Sequence[str], split_csv: str | Path | None = None, **kwargs: Any
    ) -> None:
        super().__init__(root, category, **kwargs)
        self.split_csv = Path(split_csv) if split_csv else None

    def category_samples(self, category: str) -> list[Sample]:
        """Build one object's sample table from the split file."""
        return make_visa_samples(self.root, category, self.split_csv)

"""The sample table: one row per image, shared by every dataset format."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fader_lightning.data.image_io import image_size
from fader_lightning.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NORMAL = 0
ANOMALOUS = 1
GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    Attributes:
        image_path: Path of the image file.
        split: ``"train"`` or ``"test"``.
        label: 0 for normal, 1 for anomalous.
        defect_type: ``"good"`` for normal images, else the defect folder name.
        mask_path: Path of the pixel mask, or ``None`` for normal images.
        category: The dataset category (MVTec class, VisA object, folder name).
    """

    image_path: Path
    split: str
    label: int
    defect_type: str
    mask_path: Path | None
    category: str


def list_images(directory: Path) -> list[Path]:
    """List the image files of a directory, sorted by name.

    Args:
        directory: Folder to list (not recursive).

    Returns:
        The sorted image paths; empty when the folder does not exist.
    """
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def find_mask(mask_dir: Path, stem: str, suffix: str) -> Path | None:
    """Find the mask of an image by stem, whatever its image extension.

    Args:
        mask_dir: Folder holding the masks of one defect type.
        stem: Stem of the image file (``000`` for ``000.png``).
        suffix: Text between stem and extension (``_mask`` for MVTec AD, empty for plain names).

    Returns:
        The mask path, or ``None`` when there is none.
    """
    for ext in IMAGE_EXTENSIONS:
        for candidate in (mask_dir / f"{stem}{suffix}{ext}", mask_dir / f"{stem}{suffix}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def validate_samples(samples: Sequence[Sample], *, check_mask_sizes: bool = True, require_masks: bool = True) -> None:
    """Check a sample table before any training starts.

    Args:
        samples: The table to check.
        check_mask_sizes: Also read mask headers and compare their sizes with their images'.
        require_masks: Fail when an anomalous image has no mask (off for mask-less folders).

    Every image header is read, so unreadable files fail here rather than mid-epoch.

    Raises:
        DataError: When a category has no training image, an anomalous image has no mask, a file is
            missing, empty or not an image, or a mask's size differs from its image's.
    """
    if not any(s.split == "train" for s in samples):
        category = samples[0].category if samples else "?"
        raise DataError(f"category '{category}' has no training images; put normal images under its train split")
    for sample in samples:
        if require_masks and sample.label == ANOMALOUS and sample.mask_path is None:
            raise DataError(
                f"anomalous test image {sample.image_path} has no mask; add its mask "
                f"(for MVTec AD: ground_truth/{sample.defect_type}/{sample.image_path.stem}_mask.png) "
                "or set the data module's mask_suffix to match your file names"
            )
        for path in (sample.image_path, sample.mask_path):
            if path is None:
                continue
            if not path.is_file():
                raise DataError(f"file {path} does not exist; restore it or remove it from the split")
            if path.stat().st_size == 0:
                raise DataError(f"file {path} is empty (0 bytes); re-copy it from the original archive")
        img_size = image_size(sample.image_path)
        if check_mask_sizes and sample.mask_path is not None:
            mask_size = image_size(sample.mask_path)
            if img_size != mask_size:
                raise DataError(
                    f"mask {sample.mask_path} is {mask_size[0]}x{mask_size[1]} but its image {sample.image_path} is "
                    f"{img_size[0]}x{img_size[1]}; masks must have the size of their image (re-export the mask)"
                )


def split_counts(samples: Iterable[Sample]) -> dict[str, dict[str, int]]:
    """Count images per split and defect type.

    Args:
        samples: The table to count.

    Returns:
        ``{split: {defect_type: count}}`` with sorted keys.
    """
    counter = Counter((s.split, s.defect_type) for s in samples)
    out: dict[str, dict[str, int]] = {}
    for (split, defect), count in sorted(counter.items()):
        out.setdefault(split, {})[defect] = count
    return out

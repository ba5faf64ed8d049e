"""The sample table: one row per image, shared by every dataset format."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fader_lightning.data.image_io import FileInfo
from fader_lightning.data.verify import decode_all
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

    Raises:
        DataError: For an entry named like an image that is not a readable file (a link to nothing, a link loop, a
            folder): leaving it out would silently change the data.
    """
    if not directory.is_dir():
        return []
    named = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    broken = [p for p in named if not p.is_file()]
    if broken:
        what = "a symbolic link that leads to no file" if broken[0].is_symlink() else "not a file"
        raise DataError(
            f"{broken[0]} is {what}{f' (and {len(broken) - 1} more in {directory})' if len(broken) > 1 else ''}; "
            "point it at its image, or remove it"
        )
    return named


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


def validate_samples(
    samples: Sequence[Sample],
    *,
    check_mask_sizes: bool = True,
    require_masks: bool = True,
    cache_file: str | Path | None = None,
) -> None:
    """Check a sample table before any training starts, decoding every image and mask.

    Every file is decoded completely (in parallel, remembered by a digest of their bytes; see
    :func:`~fader_lightning.data.verify.decode_all`), so a truncated file fails here rather than mid-run. What is
    suspicious but usable is reported once per split: mixed image sizes or aspect ratios, JPEG masks (thresholded
    at mid-grey), and a test split whose metrics will be undefined (no anomalous or no normal image).

    Args:
        samples: The table to check.
        check_mask_sizes: Compare each mask's size with its image's.
        require_masks: Fail when an anomalous image has no mask (off for mask-less folders).
        cache_file: JSON file remembering checked files across processes (``None``: this process only).

    Raises:
        DataError: When a category has no training or no test image, an anomalous image has no mask, a file is
            missing, empty, corrupt, truncated or too large, or a mask's size differs from its image's.
    """
    category = samples[0].category if samples else "?"
    for split in ("train", "test"):
        if not any(s.split == split for s in samples):
            raise DataError(f"category '{category}' has no {split} images; put {_SPLIT_FIX[split]}")
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
    files = [path for s in samples for path in (s.image_path, s.mask_path) if path is not None]
    info = decode_all(files, cache_file)
    for sample in samples:
        if check_mask_sizes and sample.mask_path is not None:
            image, mask = info[sample.image_path], info[sample.mask_path]
            if (image.width, image.height) != (mask.width, mask.height):
                raise DataError(
                    f"mask {sample.mask_path} is {mask.width}x{mask.height} but its image {sample.image_path} is "
                    f"{image.width}x{image.height}; masks must have the size of their image (re-export the mask)"
                )
    _report(samples, info)


_SPLIT_FIX = {
    "train": "normal images under its train split",
    "test": "its test images (test/good and test/<defect> for MVTec-style sets) in place",
}


def _report(samples: Sequence[Sample], info: dict[Path, FileInfo]) -> None:
    """Log, once per split, what is usable but not what a user may expect."""
    category = samples[0].category
    for split in ("train", "test"):
        sizes = Counter(f"{info[s.image_path].width}x{info[s.image_path].height}" for s in samples if s.split == split)
        if len(sizes) > 1:
            ratios = sorted({round(int(w) / int(h), 2) for w, h in (size.split("x") for size in sizes)})
            log.warning(
                "%s %s split mixes %d image sizes (%s; aspect ratios %s): every image is resized to data.image_size, "
                "so those of another aspect ratio are stretched",
                category, split, len(sizes), ", ".join(f"{k}: {v}" for k, v in sizes.most_common()),
                ", ".join(f"{r:g}" for r in ratios),
            )  # fmt: skip
    jpeg = [s.mask_path for s in samples if s.mask_path is not None and info[s.mask_path].lossy]
    if jpeg:
        log.warning(
            "%d masks of %s are JPEG (e.g. %s): thresholded at mid-grey (>= 128) because compression smears their "
            "edges; store masks as PNG for exact pixel metrics", len(jpeg), category, jpeg[0],
        )  # fmt: skip
    labels = {s.label for s in samples if s.split == "test"}
    if labels != {NORMAL, ANOMALOUS}:
        missing = "anomalous" if ANOMALOUS not in labels else "normal"
        log.warning(
            "the %s test split has no %s image: AUROC, AUPRO and F1 are undefined and are written as null",
            category, missing,
        )  # fmt: skip


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

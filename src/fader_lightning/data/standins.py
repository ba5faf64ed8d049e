"""Generated stand-ins of the newer datasets' layouts, with their quirks, to test their readers end to end.

* MVTec AD 2: images wider than high with a lighting suffix (``000_regular.png``, ``001_overexposed.png``), the
  official ``validation/good``, ``test_public`` with 0/255 masks ``<stem>_mask.png``, and the unlabelled
  ``test_private`` and ``test_private_mixed``; optionally grayscale or 16-bit sources.
* MVTec 3D-AD: ``rgb/``, ``xyz/`` (float TIFF) and ``gt/`` per folder, masks valued by the defect's class id
  (255, 254, ...), empty masks under ``test/good/gt``, ``class_ids.json`` and ``calibration/`` beside the splits.
* Real-IAD: ``realiad_<resolution>/<category>/{OK,NG/<defect>}/S<NNNN>/`` with one JPEG per camera view and masks
  beside the anomalous ones, and the split file ``realiad_jsons/<category>.json`` (flat, or nested one level).

The same seed always writes the same files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fader_lightning.data.drawing import DEFECT_TYPES, category_kind, normal_image, paint_defect, save_image, seeded_rng

LIGHTINGS: tuple[str, ...] = ("regular", "overexposed", "underexposed", "shift_1")
"""MVTec AD 2's lighting suffixes, the first four of them."""
BRIGHTNESS = {"regular": 1.0, "overexposed": 1.35, "underexposed": 0.6, "shift_1": 0.9}
DEFECT_CODES: tuple[str, ...] = ("AK", "HS")
"""Two of Real-IAD's defect codes (pit, scratch)."""


def _draw(category: str, size: int, seed: int, *keys: str | int, defect: str | None = None) -> tuple[np.ndarray, ...]:
    """One image of a category (with a painted defect and its mask when ``defect`` is given)."""
    rng = seeded_rng(seed, category, *keys)
    image = normal_image(category_kind(category), size, rng)
    if defect is None:
        return image, np.zeros(image.shape[:2], dtype=bool)
    return paint_defect(image, defect, rng)


def _wide(array: np.ndarray) -> np.ndarray:
    """The image padded on the right to 5:4, like MVTec AD 2's wider-than-high images."""
    height, width = array.shape[:2]
    pad = [(0, 0), (0, width // 4)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, mode="edge") if height == width else array


LUMA = np.array([0.299, 0.587, 0.114])
"""The weights of Pillow's RGB to grayscale conversion (ITU-R 601-2): 16-bit and 8-bit grayscale sources agree."""


def _save_16bit(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    gray = (np.clip(array, 0, 1) @ LUMA * 65535).round().astype(np.uint16)
    Image.fromarray(gray).save(path)


def make_mvtec_ad2_tree(
    root: str | Path,
    categories: Sequence[str],
    *,
    n_train: int = 16,
    n_validation: int = 4,
    n_test_good: int = 4,
    n_test_bad: int = 4,
    n_private: int = 3,
    size: int = 64,
    seed: int = 0,
    grayscale: bool = False,
    bit16: bool = False,
) -> Path:
    """Write an MVTec AD 2-layout tree.

    Args:
        root: Output root (created).
        categories: Category names (``*texture*`` draws a texture, else an object).
        n_train: Normal training images per category.
        n_validation: Images of ``validation/good``.
        n_test_good: Normal images of ``test_public/good``.
        n_test_bad: Anomalous images of ``test_public/bad``.
        n_private: Images of each private test split.
        size: Height; images are 5/4 as wide.
        seed: Seed.
        grayscale: Save every image as single-channel 8-bit.
        bit16: Save every image as single-channel 16-bit.

    Returns:
        The root.
    """
    root = Path(root)

    def write(array: np.ndarray, path: Path, brightness: float) -> None:
        array = _wide(np.clip(array * brightness, 0, 1))
        _save_16bit(array, path) if bit16 else save_image(array, path, grayscale)

    for category in categories:
        folder = root / category
        for split, count in (("train", n_train), ("validation", n_validation), ("test_public", n_test_good)):
            for i in range(count):
                lighting = LIGHTINGS[i % len(LIGHTINGS)] if split == "test_public" else "regular"
                image, _ = _draw(category, size, seed, split, i)
                write(image, folder / split / "good" / f"{i:03d}_{lighting}.png", BRIGHTNESS[lighting])
        for i in range(n_test_bad):
            lighting = LIGHTINGS[i % len(LIGHTINGS)]
            image, mask = _draw(category, size, seed, "bad", i, defect=DEFECT_TYPES[i % 2])
            write(image, folder / "test_public" / "bad" / f"{i:03d}_{lighting}.png", BRIGHTNESS[lighting])
            save_image(_wide(mask.astype(np.float64)), folder / "test_public" / "ground_truth" / "bad" /
                       f"{i:03d}_{lighting}_mask.png")  # fmt: skip
        for split, lighting in (("test_private", "regular"), ("test_private_mixed", "mixed")):
            for i in range(n_private):
                image, _ = _draw(category, size, seed, split, i, defect=DEFECT_TYPES[i % 2] if i % 2 else None)
                write(image, folder / split / f"{i:03d}_{lighting}.png", 1.0)
    return root


def make_mvtec3d_tree(
    root: str | Path,
    categories: Sequence[str],
    *,
    n_train: int = 16,
    n_validation: int = 4,
    n_test_good: int = 4,
    n_test_defect: int = 3,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write an MVTec 3D-AD-layout tree (RGB PNG, float TIFF point clouds, class-id masks).

    Args:
        root: Output root (created).
        categories: Category names.
        n_train: Normal training images per category.
        n_validation: Images of ``validation/good``.
        n_test_good: Normal test images.
        n_test_defect: Test images per defect type.
        size: Image side.
        seed: Seed.

    Returns:
        The root.
    """
    root = Path(root)
    class_ids = {str(255 - index): defect for index, defect in enumerate(DEFECT_TYPES)} | {"0": "good"}
    for category in categories:
        folder = root / category
        counts = [("train", "good", n_train), ("validation", "good", n_validation), ("test", "good", n_test_good)]
        counts += [("test", defect, n_test_defect) for defect in DEFECT_TYPES]
        for split, defect, count in counts:
            for i in range(count):
                image, mask = _draw(category, size, seed, split, defect, i, defect=None if defect == "good" else defect)
                save_image(image, folder / split / defect / "rgb" / f"{i:03d}.png")
                depth = np.dstack(np.mgrid[0:size, 0:size]).sum(-1).astype(np.float32) / size  # a tilted plane
                (folder / split / defect / "xyz").mkdir(parents=True, exist_ok=True)
                Image.fromarray(depth, mode="F").save(folder / split / defect / "xyz" / f"{i:03d}.tiff")
                if split == "test":
                    value = 0 if defect == "good" else 255 - DEFECT_TYPES.index(defect)
                    (folder / split / defect / "gt").mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask.astype(np.uint8) * np.uint8(value)).save(folder / split / defect / "gt" /
                                                                                  f"{i:03d}.png")  # fmt: skip
        (folder / "class_ids.json").write_text(json.dumps(class_ids))
        (folder / "calibration").mkdir(exist_ok=True)
        (folder / "calibration" / "camera_parameters.json").write_text(json.dumps({"image_width": size,
                                                                                   "image_height": size}))  # fmt: skip
    return root


def make_realiad_tree(
    root: str | Path,
    categories: Sequence[str],
    *,
    n_train: int = 6,
    n_test_good: int = 2,
    n_test_bad: int = 2,
    views: int = 5,
    size: int = 64,
    seed: int = 0,
    resolution: str = "256",
    nested: bool = False,
) -> Path:
    """Write a Real-IAD-layout tree: one JPEG per camera view and sample, masks beside them, and the split file.

    Args:
        root: Output root (created).
        categories: Category names.
        n_train: Normal training samples (each ``views`` images).
        n_test_good: Normal test samples.
        n_test_bad: Anomalous test samples.
        views: Camera views per sample (1-5).
        size: Image side.
        seed: Seed.
        resolution: The release folder written, ``realiad_<resolution>``.
        nested: Write the split file at ``realiad_jsons/realiad_jsons/<category>.json`` (as some releases nest it).

    Returns:
        The root.
    """
    root = Path(root)
    for category in categories:
        entries: dict[str, list[dict[str, str | None]]] = {"train": [], "test": []}
        plan = [("train", None, i) for i in range(n_train)] + [("test", None, n_train + i) for i in range(n_test_good)]
        plan += [("test", DEFECT_CODES[i % 2], n_train + n_test_good + i) for i in range(n_test_bad)]
        for split, code, number in plan:
            sample = f"S{number:04d}"
            folder = Path("OK", sample) if code is None else Path("NG", code, sample)
            for view in range(1, views + 1):
                status = "OK" if code is None else f"NG_{code}"
                stem = f"{category}_{number:04d}_{status}_C{view}_20231004133152"
                defect = None if code is None else DEFECT_TYPES[DEFECT_CODES.index(code)]
                image, mask = _draw(category, size, seed, sample, view, defect=defect)
                base = root / f"realiad_{resolution}" / category
                save_image(image, base / folder / f"{stem}.jpg")
                mask_path = None
                if code is not None:
                    mask_path = str(folder / f"{stem}.png")
                    save_image(mask.astype(np.float64), base / mask_path)
                entries[split].append({"category": category, "anomaly_class": code or "OK",
                                       "image_path": str(folder / f"{stem}.jpg"), "mask_path": mask_path})  # fmt: skip
        split_dir = root / "realiad_jsons" / ("realiad_jsons" if nested else "")
        split_dir.mkdir(parents=True, exist_ok=True)
        content = {"meta": {"prefix": category, "normal_class": "OK"}, **entries}
        (split_dir / f"{category}.json").write_text(json.dumps(content, indent=1))
    return root

"""Deterministic generators of small, learnable anomaly-detection datasets.

Two kinds of category are generated:

* ``texture``: a regular woven pattern with a little jitter and sensor noise.
* ``object``: a shaded disc on a flat background, with a little jitter in position and size.

Defects (``spot``, ``scratch``) are painted on top with exact masks. Trees come in the MVTec AD
layout (masks 0/255, ``<stem>_mask.png``) or the raw VisA layout (masks with small label values,
not 0/255, plus ``split_csv/1cls.csv``). The same seed always writes the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fader_lightning.data.mvtec import MVTecADDataModule
from fader_lightning.data.samples import Sample

log = logging.getLogger(__name__)

DEFAULT_CATEGORIES: tuple[str, ...] = ("synth_texture", "synth_object")
MASK_SUFFIX = "_mask"
"""The generated MVTec-layout trees name a mask ``<stem>_mask.png``."""
DEFECT_TYPES: tuple[str, ...] = ("spot", "scratch")


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


def normal_image(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one normal image.

    Args:
        kind: ``texture`` or ``object``.
        size: Side length in pixels.
        rng: Random generator.

    Returns:
        RGB float image in [0, 1], shape (size, size, 3).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    if kind == "texture":
        period = 8.0 + rng.uniform(-0.3, 0.3)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        weave = 0.5 + 0.25 * np.sin(2 * np.pi * period * xx + phase[0]) * np.sin(2 * np.pi * period * yy + phase[1])
        base = np.stack([weave * 0.9 + 0.05, weave * 0.75 + 0.1, weave * 0.5 + 0.2], axis=-1)
    else:
        cy, cx = 0.5 + rng.uniform(-0.03, 0.03, size=2)
        radius = 0.32 + rng.uniform(-0.01, 0.01)
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        inside = np.clip((radius - dist) * size / 2.0, 0.0, 1.0)
        shade = 0.55 + 0.35 * (1.0 - dist / radius).clip(0, 1)
        disc = np.stack([shade * 0.85, shade * 0.6, shade * 0.3], axis=-1)
        background = np.array([0.15, 0.18, 0.22])
        base = inside[..., None] * disc + (1.0 - inside[..., None]) * background
    return np.clip(base + rng.normal(0.0, 0.015, size=base.shape), 0.0, 1.0)


def paint_defect(image: np.ndarray, defect: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint one defect onto a copy of an image.

    Args:
        image: RGB float image in [0, 1].
        defect: ``spot`` (a coloured ellipse) or ``scratch`` (a thick bright line).
        rng: Random generator.

    Returns:
        The defective image and its boolean mask.
    """
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(0.3, 0.7, size=2) * size
    if defect == "spot":
        ry, rx = rng.uniform(0.05, 0.1, size=2) * size
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        colour = rng.uniform(0.0, 1.0, size=3)
    else:
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.2, 0.35) * size
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        mask = (np.abs(along) <= length / 2) & (np.abs(across) <= max(1.5, size / 64))
        colour = np.array([0.95, 0.95, 0.9])
    out = image.copy()
    out[mask] = colour
    return out, mask


def _save(array: np.ndarray, path: Path, grayscale: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels)
    if grayscale:
        image = image.convert("L")
    image.save(path, quality=95) if path.suffix.upper() == ".JPG" else image.save(path)


def _kind(category: str) -> str:
    return "texture" if "texture" in category else "object"


def make_mvtec_tree(
    root: str | Path,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    *,
    n_train: int = 40,
    n_test_good: int = 10,
    n_test_defect: int = 8,
    size: int = 128,
    seed: int = 0,
    grayscale: bool = False,
) -> Path:
    """Write an MVTec AD-layout tree of synthetic categories.

    Args:
        root: Output root (created).
        categories: Category names; a name containing ``texture`` gets the texture kind, else object.
        n_train: Normal training images per category.
        n_test_good: Normal test images per category.
        n_test_defect: Test images per defect type and category.
        size: Image side length.
        seed: Seed; the same seed writes the same files.
        grayscale: Save images as single-channel PNG (to exercise grayscale sources).

    Returns:
        The root.
    """
    root = Path(root)
    for category in categories:
        kind, cat_dir = _kind(category), root / category
        for i in range(n_train):
            _save(
                normal_image(kind, size, _rng(seed, category, "train", i)),
                cat_dir / "train/good" / f"{i:03d}.png",
                grayscale,
            )
        for i in range(n_test_good):
            _save(
                normal_image(kind, size, _rng(seed, category, "good", i)),
                cat_dir / "test/good" / f"{i:03d}.png",
                grayscale,
            )
        for defect in DEFECT_TYPES:
            for i in range(n_test_defect):
                rng = _rng(seed, category, defect, i)
                image, mask = paint_defect(normal_image(kind, size, rng), defect, rng)
                _save(image, cat_dir / "test" / defect / f"{i:03d}.png", grayscale)
                _save(mask.astype(np.float64), cat_dir / "ground_truth" / defect / f"{i:03d}{MASK_SUFFIX}.png")
    log.info("wrote synthetic MVTec-style tree with %s to %s", ", ".join(categories), root)
    return root


def ensure_mvtec_tree(root: str | Path, categories: Sequence[str] = DEFAULT_CATEGORIES, **params: int | bool) -> Path:
    """Generate an MVTec-layout tree unless an identical one is already complete at ``root``.

    The tree is built in a temporary sibling folder and renamed into place with a manifest of its
    settings, so an interrupted run never leaves a half-written tree that looks complete.

    Args:
        root: Output root.
        categories: Category names.
        **params: Keyword settings of :func:`make_mvtec_tree`.

    Returns:
        The root.
    """
    root = Path(root)
    manifest = {"categories": list(categories), **params}

    def complete() -> bool:
        path = root / "MANIFEST.json"
        return path.is_file() and json.loads(path.read_text()) == manifest

    if complete():
        return root
    staging = root.with_name(f".{root.name}.tmp-{os.getpid()}")  # parallel jobs never share a staging folder
    shutil.rmtree(staging, ignore_errors=True)
    make_mvtec_tree(staging, categories, **params)
    (staging / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
    if complete():  # another job finished the same tree meanwhile: keep theirs
        shutil.rmtree(staging)
        return root
    shutil.rmtree(root, ignore_errors=True)
    try:
        staging.rename(root)
    except OSError:  # another job renamed its copy into place first
        shutil.rmtree(staging, ignore_errors=True)
        if not complete():
            raise
    return root


def make_visa_tree(
    root: str | Path,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    *,
    n_normal: int = 40,
    n_anomaly: int = 10,
    n_test_normal: int = 8,
    size: int = 96,
    seed: int = 0,
) -> Path:
    """Write a raw VisA-layout tree (JPEG images, label-valued masks) with its ``split_csv/1cls.csv``.

    Args:
        root: Output root (created).
        categories: Object names.
        n_normal: Normal images per object (the last ``n_test_normal`` go to the test split).
        n_anomaly: Anomalous images per object (all in the test split).
        n_test_normal: Normal images in the test split.
        size: Image side length.
        seed: Seed; the same seed writes the same files.

    Returns:
        The root.
    """
    root = Path(root)
    rows = []
    for category in categories:
        kind = _kind(category)
        for i in range(n_normal):
            rel = f"{category}/Data/Images/Normal/{i:04d}.JPG"
            _save(normal_image(kind, size, _rng(seed, category, "normal", i)), root / rel)
            rows.append([category, "train" if i < n_normal - n_test_normal else "test", "normal", rel, ""])
        for i in range(n_anomaly):
            rng = _rng(seed, category, "anomaly", i)
            image, mask = paint_defect(normal_image(kind, size, rng), DEFECT_TYPES[i % 2], rng)
            rel, rel_mask = f"{category}/Data/Images/Anomaly/{i:03d}.JPG", f"{category}/Data/Masks/Anomaly/{i:03d}.png"
            _save(image, root / rel)
            label_value = 1 + i % 3  # raw VisA masks hold small label values, not 255
            (root / rel_mask).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * np.uint8(label_value)).save(root / rel_mask)
            rows.append([category, "test", "anomaly", rel, rel_mask])
    csv_path = root / "split_csv" / "1cls.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m fader_lightning.data.synthetic OUT [--layout mvtec|visa]``.

    Args:
        argv: Arguments (defaults to ``sys.argv``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", choices=("mvtec", "visa"), default="mvtec")
    parser.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    maker = make_mvtec_tree if args.layout == "mvtec" else make_visa_tree
    maker(args.root, args.categories, size=args.size, seed=args.seed)


class SyntheticDataModule(MVTecADDataModule):
    """MVTec-layout data module over a generated tree, created on first use.

    Args:
        root: Where the tree lives (generated there when absent or incomplete).
        category: One of ``categories``.
        categories: Categories to generate.
        size: Side length of the generated images.
        n_train: Normal training images per category.
        n_test_good: Normal test images per category.
        n_test_defect: Test images per defect type and category.
        data_seed: Seed of the generator (kept apart from the training seed).
        **kwargs: Passed to :class:`~fader_lightning.data.mvtec.MVTecADDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        category: str,
        *,
        categories: Sequence[str],
        size: int,
        n_train: int,
        n_test_good: int,
        n_test_defect: int,
        data_seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, category=category, mask_suffix=MASK_SUFFIX, **kwargs)
        self.generator_settings = {
            "size": size,
            "n_train": n_train,
            "n_test_good": n_test_good,
            "n_test_defect": n_test_defect,
            "seed": data_seed,
        }
        self.categories = list(categories)

    def prepare_data(self) -> None:
        """Generate the tree unless an identical one is complete."""
        ensure_mvtec_tree(self.root, self.categories, **self.generator_settings)

    def make_samples(self) -> list[Sample]:
        """Generate the tree if needed, then read it like MVTec AD."""
        self.prepare_data()
        return super().make_samples()


if __name__ == "__main__":
    main()

"""Deterministic generators of small, learnable anomaly-detection datasets.

Two kinds of category are generated:

* ``texture``: a regular woven pattern with a little jitter and sensor noise.
* ``object``: a shaded disc on a flat background, with a little jitter in position and size.

Defects (``spot``, ``scratch``) are painted on top with exact masks. Trees come in the MVTec AD
layout (masks 0/255, ``<stem>_mask.png``), the raw VisA layout (masks with small label values,
not 0/255, plus ``split_csv/1cls.csv``), or the layouts of MVTec AD 2, MVTec 3D-AD and Real-IAD
(:mod:`~fader_lightning.data.standins`). The same seed always writes the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fader_lightning.data.drawing import DEFECT_TYPES, category_kind, normal_image, paint_defect, save_image, seeded_rng
from fader_lightning.data.mvtec import RootedDataModule, make_mvtec_samples
from fader_lightning.data.mvtec3d import make_mvtec3d_samples
from fader_lightning.data.mvtec_ad2 import make_mvtec_ad2_samples
from fader_lightning.data.realiad import SPLIT_PREFIX, VIEWS, make_realiad_samples
from fader_lightning.data.samples import Sample
from fader_lightning.data.standins import make_mvtec3d_tree, make_mvtec_ad2_tree, make_realiad_tree
from fader_lightning.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DEFAULT_CATEGORIES: tuple[str, ...] = ("synth_texture", "synth_object")
MASK_SUFFIX = "_mask"
"""The generated MVTec-layout trees name a mask ``<stem>_mask.png``."""


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
        kind, cat_dir = category_kind(category), root / category
        for i in range(n_train):
            save_image(
                normal_image(kind, size, seeded_rng(seed, category, "train", i)),
                cat_dir / "train/good" / f"{i:03d}.png",
                grayscale,
            )
        for i in range(n_test_good):
            save_image(
                normal_image(kind, size, seeded_rng(seed, category, "good", i)),
                cat_dir / "test/good" / f"{i:03d}.png",
                grayscale,
            )
        for defect in DEFECT_TYPES:
            for i in range(n_test_defect):
                rng = seeded_rng(seed, category, defect, i)
                image, mask = paint_defect(normal_image(kind, size, rng), defect, rng)
                save_image(image, cat_dir / "test" / defect / f"{i:03d}.png", grayscale)
                save_image(mask.astype(np.float64), cat_dir / "ground_truth" / defect / f"{i:03d}{MASK_SUFFIX}.png")
    log.info("wrote synthetic MVTec-style tree with %s to %s", ", ".join(categories), root)
    return root


def ensure_tree(
    root: str | Path, categories: Sequence[str] = DEFAULT_CATEGORIES, layout: str = "mvtec", **params: int | bool
) -> Path:
    """Generate a tree in one of :data:`LAYOUTS` unless an identical one is already complete at ``root``.

    The tree is built in a temporary sibling folder and renamed into place with a manifest of its
    settings, so an interrupted run never leaves a half-written tree that looks complete. Only a generated tree (one
    with a manifest) or an empty folder is ever replaced.

    Args:
        root: Output root.
        categories: Category names.
        layout: One of :data:`LAYOUTS`.
        **params: ``size``, ``n_train``, ``n_test_good``, ``n_test_defect`` and ``seed`` (see :func:`write_layout`).

    Returns:
        The root.

    Raises:
        DataError: When ``root`` holds files of its own (not a generated tree).
    """
    root = Path(root)
    manifest = {"categories": list(categories), **params}
    if layout != "mvtec":
        manifest["layout"] = layout

    def complete() -> bool:
        path = root / "MANIFEST.json"
        return path.is_file() and json.loads(path.read_text()) == manifest

    if complete():
        return root
    if root.exists() and not (root / "MANIFEST.json").is_file() and any(root.iterdir()):
        raise DataError(
            f"data.root={root} holds files that this project did not generate (no MANIFEST.json), and data=synthetic "
            "replaces its root with a generated tree; point data.root of data=synthetic at a new folder (or leave it "
            "at its default), or choose the dataset of that folder: data=mvtec|visa|folder"
        )
    staging = root.with_name(f".{root.name}.tmp-{os.getpid()}")  # parallel jobs never share a staging folder
    shutil.rmtree(staging, ignore_errors=True)
    write_layout(layout, staging, categories, **params)
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
        kind = category_kind(category)
        for i in range(n_normal):
            rel = f"{category}/Data/Images/Normal/{i:04d}.JPG"
            save_image(normal_image(kind, size, seeded_rng(seed, category, "normal", i)), root / rel)
            rows.append([category, "train" if i < n_normal - n_test_normal else "test", "normal", rel, ""])
        for i in range(n_anomaly):
            rng = seeded_rng(seed, category, "anomaly", i)
            image, mask = paint_defect(normal_image(kind, size, rng), DEFECT_TYPES[i % 2], rng)
            rel, rel_mask = f"{category}/Data/Images/Anomaly/{i:03d}.JPG", f"{category}/Data/Masks/Anomaly/{i:03d}.png"
            save_image(image, root / rel)
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


def write_layout(
    layout: str,
    root: Path,
    categories: Sequence[str],
    *,
    size: int = 128,
    n_train: int = 40,
    n_test_good: int = 10,
    n_test_defect: int = 8,
    seed: int = 0,
) -> Path:
    """Write a generated tree in one of :data:`LAYOUTS` from the settings every layout shares.

    ``n_test_defect`` is per defect type (two of them); Real-IAD's counts are of samples of five views each.
    """
    if layout == "mvtec":
        return make_mvtec_tree(root, categories, size=size, n_train=n_train, n_test_good=n_test_good,
                               n_test_defect=n_test_defect, seed=seed)  # fmt: skip
    if layout == "mvtec_ad2":
        return make_mvtec_ad2_tree(root, categories, size=size, n_train=n_train, n_validation=max(2, n_train // 8),
                                   n_test_good=n_test_good, n_test_bad=2 * n_test_defect, seed=seed)  # fmt: skip
    if layout == "mvtec3d":
        return make_mvtec3d_tree(root, categories, size=size, n_train=n_train, n_validation=max(2, n_train // 8),
                                 n_test_good=n_test_good, n_test_defect=n_test_defect, seed=seed)  # fmt: skip
    views = len(VIEWS)
    return make_realiad_tree(root, categories, size=size, n_train=max(1, n_train // views),
                             n_test_good=max(1, n_test_good // views), n_test_bad=max(1, 2 * n_test_defect // views),
                             views=views, seed=seed, resolution=STANDIN_RESOLUTION)  # fmt: skip


STANDIN_RESOLUTION = "256"
"""The release folder of the generated Real-IAD stand-in (``realiad_256``)."""
LAYOUTS: dict[str, Callable[[Path, str], list[Sample]]] = {
    "mvtec": lambda root, category: make_mvtec_samples(root, category, MASK_SUFFIX),
    "mvtec_ad2": make_mvtec_ad2_samples,
    "mvtec3d": make_mvtec3d_samples,
    "realiad": lambda root, category: make_realiad_samples(root, category, STANDIN_RESOLUTION, SPLIT_PREFIX),
}
"""The layouts ``data=synthetic`` generates (``data.layout``), each with the reader of the real dataset's layout."""


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m fader_lightning.data.synthetic OUT [--layout mvtec|visa|mvtec_ad2|mvtec3d|realiad]``.

    Args:
        argv: Arguments (defaults to ``sys.argv``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--layout", choices=(*LAYOUTS, "visa"), default="mvtec")
    parser.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.layout == "visa":
        make_visa_tree(args.root, args.categories, size=args.size, seed=args.seed)
    else:
        write_layout(args.layout, args.root, args.categories, size=args.size, seed=args.seed)


class SyntheticDataModule(RootedDataModule):
    """A generated tree in one of :data:`LAYOUTS`, created on first use and read by that dataset's own reader.

    Args:
        root: Where the tree lives (generated there when absent or incomplete).
        category: One of ``categories``, a list of them (one unified model) or ``all``.
        categories: Categories to generate.
        layout: The dataset layout written and read: ``mvtec`` (default), ``mvtec_ad2``, ``mvtec3d`` or ``realiad``.
        size: Side length of the generated images.
        n_train: Normal training images per category.
        n_test_good: Normal test images per category.
        n_test_defect: Test images per defect type and category.
        data_seed: Seed of the generator (kept apart from the training seed).
        **kwargs: Passed to :class:`~fader_lightning.data.datamodule.AnomalyDataModule`.

    Raises:
        ConfigError: For an unknown layout.
    """

    config_name = "synthetic"

    def __init__(
        self,
        root: str | Path,
        category: str | Sequence[str],
        *,
        categories: Sequence[str],
        layout: str = "mvtec",
        size: int,
        n_train: int,
        n_test_good: int,
        n_test_defect: int,
        data_seed: int,
        **kwargs: Any,
    ) -> None:
        if layout not in LAYOUTS:
            raise ConfigError(f"data.layout={layout!r} is not a generated layout; use one of {', '.join(LAYOUTS)}")
        self.known_categories = tuple(categories)  # data.category=all: every generated one
        super().__init__(root, category, **kwargs)
        self.layout = layout
        self.generator_settings = {
            "size": size,
            "n_train": n_train,
            "n_test_good": n_test_good,
            "n_test_defect": n_test_defect,
            "seed": data_seed,
        }

    def prepare_data(self) -> None:
        """Generate the tree unless an identical one is complete."""
        ensure_tree(self.root, self.known_categories, self.layout, **self.generator_settings)

    def make_samples(self) -> list[Sample]:
        """Generate the tree if needed, then read it as the real dataset is read."""
        self.prepare_data()
        return super().make_samples()

    def category_samples(self, category: str) -> list[Sample]:
        """Read one generated category with its layout's reader."""
        return LAYOUTS[self.layout](self.root, category)


if __name__ == "__main__":
    main()

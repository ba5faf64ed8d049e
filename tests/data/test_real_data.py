"""Tests on the real images in ../shared/data (skipped with a reason when it is absent)."""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import datamodule, shared_path
from fader_lightning.data import read_visa_split
from fader_lightning.data.drawing import normal_image, paint_defect, save_image, seeded_rng

pytestmark = pytest.mark.real_data

# Official VisA totals per object (normal, anomalous): 9,621 normal + 1,200 anomalous = 10,821 images
# (Zou et al., ECCV 2022).
VISA_TOTALS = {
    "candle": (1000, 100), "capsules": (602, 100), "cashew": (500, 100), "chewinggum": (503, 100),
    "fryum": (500, 100), "macaroni1": (1000, 100), "macaroni2": (1000, 100), "pcb1": (1004, 100),
    "pcb2": (1001, 100), "pcb3": (1006, 100), "pcb4": (1005, 100), "pipe_fryum": (500, 100),
}  # fmt: skip


def test_bottle_counts_and_pairs() -> None:
    dm = datamodule("mvtec", shared_path("mvtec_ad"), "bottle", image_size=64)
    dm.setup()
    assert len(dm.train_samples) == 60
    assert len(dm.test_samples) == 83
    assert sum(s.label == 0 for s in dm.test_samples) == 20
    for s in dm.test_samples:
        if s.label == 1:
            assert s.mask_path is not None and s.mask_path.stem == f"{s.image_path.stem}_mask"
            assert s.mask_path.parent.name == s.defect_type
            assert Image.open(s.mask_path).size == Image.open(s.image_path).size


def test_grid_grayscale_becomes_rgb() -> None:
    root = shared_path("mvtec_ad")
    assert Image.open(root / "grid/train/good/000.png").mode == "L"
    dm = datamodule("mvtec", root, "grid", image_size=64, eval_batch_size=32)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert batch.image.shape == (14, 3, 64, 64)
    assert batch.label.sum().item() == 11
    assert (batch.mask.flatten(1).sum(1)[batch.label == 1] > 0).all()


def test_hazelnut_toy_plain_mask_names() -> None:
    dm = datamodule("mvtec", shared_path(), "hazelnut_toy", mask_suffix="", image_size=64)
    dm.setup()
    anomalous = [s for s in dm.test_samples if s.label == 1]
    assert len(dm.train_samples) == 28 and len(anomalous) == 17
    assert all(s.mask_path.name == f"{s.image_path.stem}.png" for s in anomalous)


def test_visa_csv_gives_official_counts() -> None:
    rows = read_visa_split(shared_path("visa", "split_csv", "1cls.csv"))
    assert len(rows) == 10821
    per_object: dict[str, Counter] = {}
    for row in rows:
        per_object.setdefault(row["object"], Counter())[row["label"]] += 1
    assert {k: (v["normal"], v["anomaly"]) for k, v in per_object.items()} == VISA_TOTALS
    assert all(row["split"] == "test" for row in rows if row["label"] == "anomaly")


def test_visa_loads_generated_images_at_official_paths(tmp_path: Path) -> None:
    csv_path = shared_path("visa", "split_csv", "1cls.csv")
    written = populate_from_visa_csv(csv_path, tmp_path, "cashew", size=16)
    assert written == 600
    dm = datamodule("visa", tmp_path, "cashew", split_csv=csv_path, image_size=16, eval_batch_size=512)
    dm.setup()
    official = [r for r in read_visa_split(csv_path) if r["object"] == "cashew"]
    assert len(dm.train_samples) == sum(r["split"] == "train" for r in official)
    assert len(dm.test_samples) == sum(r["split"] == "test" for r in official)
    batch = next(iter(dm.test_dataloader()))
    assert set(batch.mask.unique().tolist()) == {0.0, 1.0}
    assert batch.label.sum().item() == 100


def populate_from_visa_csv(
    csv_path: str | Path, root: str | Path, category: str, *, size: int = 32, seed: int = 0
) -> int:
    """Write generated images and masks at the paths a VisA split file names, for one object.

    Args:
        csv_path: A split file such as the official ``1cls.csv``.
        root: Root the csv paths are relative to.
        category: Object whose rows to populate.
        size: Image side length.
        seed: Seed.

    Returns:
        The number of images written.
    """
    root, written = Path(root), 0
    with Path(csv_path).open(newline="") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            if row["object"] != category:
                continue
            rng = seeded_rng(seed, category, i)
            image = normal_image("object", size, rng)
            if row["label"] == "anomaly":
                image, mask = paint_defect(image, "spot", rng)
                (root / row["mask"]).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * np.uint8(3)).save(root / row["mask"])
            save_image(image, root / row["image"])
            written += 1
    return written

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import datamodule
from fader_lightning.data import make_visa_samples, read_visa_split
from fader_lightning.data.visa import materialise_mvtec_layout
from fader_lightning.errors import DataError


def test_raw_masks_are_not_255_but_load_binary(synthetic_visa: Path) -> None:
    raw = np.asarray(Image.open(synthetic_visa / "synth_object/Data/Masks/Anomaly/001.png"))
    assert raw.max() not in (0, 255)  # the generator mimics VisA's label-valued masks
    dm = datamodule("visa", synthetic_visa, "synth_object", image_size=48, eval_batch_size=64)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert set(batch.mask.unique().tolist()) == {0.0, 1.0}
    expected = (np.asarray(Image.open(synthetic_visa / "synth_object/Data/Masks/Anomaly/001.png")) > 0).sum()
    index = batch.path.index(str(synthetic_visa / "synth_object/Data/Images/Anomaly/001.JPG"))
    assert batch.mask[index].sum().item() == expected
    assert batch.label.sum().item() == 4 and len(batch) == 7
    assert len(dm.train_samples) == 9


def test_materialised_copy_is_mvtec_layout(synthetic_visa: Path, tmp_path: Path) -> None:
    samples = make_visa_samples(synthetic_visa, "synth_texture")
    out = materialise_mvtec_layout(samples, tmp_path / "mvtec_style")
    masks = sorted((out / "ground_truth/bad").glob("*_mask.png"))
    assert len(masks) == 4
    assert set(np.unique(np.asarray(Image.open(masks[0]))).tolist()) == {0, 255}
    dm = datamodule("mvtec", tmp_path / "mvtec_style", "synth_texture", image_size=256)
    dm.setup()
    assert len(dm.train_samples) == 9 and len(dm.test_samples) == 7
    assert not list(tmp_path.glob("mvtec_style/.*"))  # no staging left behind


def test_missing_csv(synthetic_visa: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"1cls\.csv") as err:
        make_visa_samples(synthetic_visa, "synth_object", split_csv=tmp_path / "1cls.csv")
    assert str(tmp_path / "1cls.csv") in str(err.value)


def test_csv_lacking_columns(synthetic_visa: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("object,split,image\ncandle,train,a.JPG\n")
    with pytest.raises(DataError, match="lacks column\\(s\\) label, mask") as err:
        read_visa_split(bad)
    assert str(bad) in str(err.value)


def test_row_pointing_to_missing_file(synthetic_visa: Path, tmp_path: Path) -> None:
    root = tmp_path / "visa"
    shutil.copytree(synthetic_visa, root)
    missing = root / "synth_object/Data/Images/Normal/0002.JPG"
    missing.unlink()
    with pytest.raises(DataError, match=r"line \d+ points to .*0002.JPG"):
        make_visa_samples(root, "synth_object")


def test_unknown_object_suggests_name(synthetic_visa: Path) -> None:
    with pytest.raises(DataError, match="Did you mean 'synth_object'"):
        make_visa_samples(synthetic_visa, "synth_objet")


def test_split_is_read_from_csv_not_folders(synthetic_visa: Path, tmp_path: Path) -> None:
    root = tmp_path / "visa"
    shutil.copytree(synthetic_visa, root)
    csv_path = root / "split_csv/1cls.csv"
    rows = list(csv.reader(csv_path.open()))
    header, body = rows[0], [r for r in rows[1:] if r[0] == "synth_object"]
    body[0][1] = "test"  # move one normal image to the test split
    with csv_path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *body])
    samples = make_visa_samples(root, "synth_object")
    assert sum(s.split == "train" for s in samples) == 8

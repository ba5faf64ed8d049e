import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import datamodule
from fader_lightning.data import make_mvtec_samples, split_counts
from fader_lightning.data.image_io import read_image
from fader_lightning.data.synthetic import make_mvtec_tree
from fader_lightning.errors import DataError


def test_synthetic_tree_counts_and_pairs(synthetic_mvtec: Path) -> None:
    samples = make_mvtec_samples(synthetic_mvtec, "synth_object")
    counts = split_counts(samples)
    assert counts == {"test": {"good": 4, "scratch": 3, "spot": 3}, "train": {"good": 12}}
    for s in samples:
        assert (s.mask_path is not None) == (s.label == 1)
        if s.mask_path is not None:
            assert s.mask_path.name == f"{s.image_path.stem}_mask.png"


def test_batches_are_typed_and_masks_binary(synthetic_mvtec: Path) -> None:
    dm = datamodule("mvtec", synthetic_mvtec, "synth_texture", image_size=(32, 48), eval_batch_size=32)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert batch.image.shape == (10, 3, 32, 48)
    assert batch.mask.shape == (10, 1, 32, 48)
    assert set(batch.mask.unique().tolist()) == {0.0, 1.0}
    assert batch.image.min() >= 0.0 and batch.image.max() <= 1.0
    assert batch.label.tolist() == [0] * 4 + [1] * 6
    assert batch.defect_type[:4] == ["good"] * 4
    assert all(c == "synth_texture" for c in batch.category)
    # anomalous images have non-empty masks, normal ones empty
    per_image = batch.mask.flatten(1).sum(1)
    assert (per_image[batch.label == 1] > 0).all() and (per_image[batch.label == 0] == 0).all()


def test_grayscale_source_becomes_rgb(tmp_path: Path) -> None:
    root = make_mvtec_tree(
        tmp_path, ["gray_texture"], n_train=2, n_test_good=1, n_test_defect=1, size=32, grayscale=True
    )
    assert Image.open(root / "gray_texture/train/good/000.png").mode == "L"
    dm = datamodule("mvtec", root, "gray_texture", image_size=32)
    dm.setup()
    image = next(iter(dm.train_dataloader())).image
    assert image.shape[1] == 3
    assert np.allclose(image[:, 0].numpy(), image[:, 1].numpy())


def test_mask_suffix_configurable(synthetic_mvtec: Path, tmp_path: Path) -> None:
    root = tmp_path / "plain"
    shutil.copytree(synthetic_mvtec / "synth_object", root / "obj")
    for mask in (root / "obj/ground_truth").rglob("*_mask.png"):
        mask.rename(mask.with_name(mask.name.replace("_mask", "")))
    with pytest.raises(DataError, match="has no mask"):
        datamodule("mvtec", root, "obj", image_size=256).setup()
    samples = make_mvtec_samples(root, "obj", mask_suffix="")
    assert all(s.mask_path is not None for s in samples if s.label == 1)


def _copy_category(src: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(src / "synth_object", root / "synth_object")
    return root


def test_missing_root_prints_manual_steps(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        make_mvtec_samples(tmp_path / "nope", "bottle")
    assert str(tmp_path / "nope") in str(err.value) and "mvtec.com" in str(err.value)


def test_unknown_category_suggests_closest(synthetic_mvtec: Path) -> None:
    with pytest.raises(DataError, match="Did you mean 'synth_object'"):
        make_mvtec_samples(synthetic_mvtec, "synth_objekt")
    with pytest.raises(DataError, match="Did you mean 'bottle'"):
        make_mvtec_samples(synthetic_mvtec, "botle")


def test_category_without_train_images(synthetic_mvtec: Path, tmp_path: Path) -> None:
    root = _copy_category(synthetic_mvtec, tmp_path)
    shutil.rmtree(root / "synth_object/train/good")
    with pytest.raises(DataError, match="no training images") as err:
        make_mvtec_samples(root, "synth_object")
    assert "train/good" in str(err.value)


def test_anomalous_image_without_mask(synthetic_mvtec: Path, tmp_path: Path) -> None:
    root = _copy_category(synthetic_mvtec, tmp_path)
    (root / "synth_object/ground_truth/spot/001_mask.png").unlink()
    with pytest.raises(DataError, match=r"spot/001.png has no mask"):
        datamodule("mvtec", root, "synth_object", image_size=256).setup()


def test_mask_size_mismatch(synthetic_mvtec: Path, tmp_path: Path) -> None:
    root = _copy_category(synthetic_mvtec, tmp_path)
    mask_path = root / "synth_object/ground_truth/spot/000_mask.png"
    Image.new("L", (10, 10)).save(mask_path)
    with pytest.raises(DataError, match="10x10") as err:
        datamodule("mvtec", root, "synth_object", image_size=256).setup()
    assert str(mask_path) in str(err.value)


@pytest.mark.parametrize(
    ("relative", "content", "message"),
    [
        ("train/good/003.png", b"", "empty"),
        ("test/good/000.png", b"not an image at all", "not a readable image"),
    ],
)
def test_empty_or_garbage_image_file(
    synthetic_mvtec: Path, tmp_path: Path, relative: str, content: bytes, message: str
) -> None:
    root = _copy_category(synthetic_mvtec, tmp_path)
    path = root / "synth_object" / relative
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        datamodule("mvtec", root, "synth_object", image_size=256).setup()
    assert str(path) in str(err.value)


def test_truncated_image_file(synthetic_mvtec: Path, tmp_path: Path) -> None:
    root = _copy_category(synthetic_mvtec, tmp_path)
    path = root / "synth_object/train/good/004.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    dm = datamodule("mvtec", root, "synth_object", image_size=32, train_batch_size=64)
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        dm.setup()  # every file is decoded at setup, before any training
    assert str(path) in str(err.value)
    with pytest.raises(DataError, match="corrupt or truncated"):  # and a file that breaks later still names itself
        read_image(path)

"""The readers of MVTec AD 2, MVTec 3D-AD (RGB) and Real-IAD on hand-made trees that reproduce each set's quirks."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import datamodule
from fader_lightning.cli.check_data import main as check_data
from fader_lightning.data import make_mvtec3d_samples, make_mvtec_ad2_samples, make_realiad_samples, split_counts
from fader_lightning.data.dataset import AnomalyDataset
from fader_lightning.data.image_io import read_image, read_mask
from fader_lightning.data.realiad import view_of
from fader_lightning.data.standins import make_mvtec3d_tree, make_mvtec_ad2_tree, make_realiad_tree
from fader_lightning.data.synthetic import ensure_tree
from fader_lightning.data.transforms import build_transform
from fader_lightning.errors import ConfigError, DataError

CATEGORY = "synth_object"


@pytest.fixture(scope="module")
def ad2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mvtec_ad2_tree(tmp_path_factory.mktemp("ad2"), [CATEGORY], size=32)


@pytest.fixture(scope="module")
def mvtec3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mvtec3d_tree(tmp_path_factory.mktemp("m3d"), [CATEGORY], size=32)


@pytest.fixture(scope="module")
def realiad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_realiad_tree(tmp_path_factory.mktemp("riad"), [CATEGORY], size=32)


# MVTec AD 2


def test_ad2_reads_train_validation_and_the_public_test_only(ad2: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        samples = make_mvtec_ad2_samples(ad2, CATEGORY)
    assert split_counts(samples) == {"test": {"bad": 4, "good": 4}, "train": {"good": 16}, "val": {"good": 4}}
    assert not any("test_private" in str(s.image_path) for s in samples)
    assert "withholds" in caplog.text and "fader-predict" in caplog.text  # the private splits are pointed at
    bad = [s for s in samples if s.label == 1]
    assert all(s.mask_path.name == f"{s.image_path.stem}_mask.png" for s in bad)
    assert {s.image_path.stem.split("_", 1)[1] for s in bad} == {"regular", "overexposed", "underexposed", "shift_1"}
    image = Image.open(bad[0].image_path)
    assert image.width == 40 and image.height == 32  # not square, as the real images


def test_ad2_validation_normals_calibrate_and_auto_picks_them(ad2: Path) -> None:
    for policy in ("official", "auto"):
        dm = datamodule("mvtec_ad2", ad2, CATEGORY, image_size=32, val_policy=policy)
        dm.setup()
        assert dm.val_policy == "official" and dm.holds_out_normals
        assert [s.image_path.parent.parent.name for s in dm.val_samples] == ["validation"] * 4
        assert len(dm.train_samples) == 16 and len(dm.normal_samples) == 20
    held = datamodule("mvtec_ad2", ad2, CATEGORY, image_size=32, val_policy="from_train", val_ratio=0.25)
    held.setup()
    assert all(s.image_path.parent.parent.name == "train" for s in held.val_samples) and len(held.val_samples) == 4


def test_ad2_official_policy_is_refused_where_a_dataset_has_no_validation(synthetic_mvtec: Path) -> None:
    dm = datamodule("mvtec", synthetic_mvtec, CATEGORY, image_size=32, val_policy="official")
    with pytest.raises(ConfigError, match=r"data=mvtec has none; use data\.val_policy=from_train"):
        dm.setup()


def test_ad2_grayscale_and_16_bit_sources_become_rgb(tmp_path: Path) -> None:
    gray = make_mvtec_ad2_tree(tmp_path / "gray", [CATEGORY], size=32, grayscale=True)
    deep = make_mvtec_ad2_tree(tmp_path / "deep", [CATEGORY], size=32, bit16=True)
    for root, mode in ((gray, "L"), (deep, "I;16")):
        sample = make_mvtec_ad2_samples(root, CATEGORY)[0]
        assert Image.open(sample.image_path).mode == mode
        image = read_image(sample.image_path)
        assert image.shape == (32, 40, 3) and image.dtype == np.uint8
        assert np.array_equal(image[..., 0], image[..., 2])  # one channel repeated
    eight, sixteen = (read_image(make_mvtec_ad2_samples(r, CATEGORY)[0].image_path).astype(int) for r in (gray, deep))
    assert np.abs(eight - sixteen).max() <= 1  # scaled by the bit depth, not stretched per image


def test_ad2_archive_extracted_into_a_folder_of_its_name_is_found(ad2: Path, tmp_path: Path) -> None:
    shutil.copytree(ad2 / CATEGORY, tmp_path / CATEGORY / CATEGORY)
    samples = make_mvtec_ad2_samples(tmp_path, CATEGORY)
    assert len(samples) == 28 and all(f"{CATEGORY}/{CATEGORY}/" in str(s.image_path) for s in samples)


def test_ad2_without_validation_or_a_mask_is_refused_by_name(ad2: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(ad2, tmp_path / "copy"))
    mask = next((root / CATEGORY / "test_public" / "ground_truth" / "bad").iterdir())
    mask.unlink()
    with pytest.raises(DataError, match=f"has no mask .*{mask.name}"):
        make_mvtec_ad2_samples(root, CATEGORY)
    shutil.rmtree(root / CATEGORY / "validation")
    message = r"(?s)validation/good holds no images.*re-extract.*MVTec AD 2 cannot be downloaded"
    with pytest.raises(DataError, match=message):
        make_mvtec_ad2_samples(root, CATEGORY)


@pytest.mark.parametrize("split", ["test_private", "test_private_mixed"])
def test_ad2_private_split_for_metrics_says_labels_are_withheld(ad2: Path, split: str) -> None:
    message = rf"withholds the labels of {split}.*fader-predict .*input=ROOT/<category>/{split}"
    with pytest.raises(ConfigError, match=message):
        datamodule("mvtec_ad2", ad2, CATEGORY, image_size=32, test_split=split)


# MVTec 3D-AD


def test_3d_reads_rgb_and_class_id_masks(mvtec3d: Path) -> None:
    samples = make_mvtec3d_samples(mvtec3d, CATEGORY)
    assert split_counts(samples) == {"test": {"good": 4, "scratch": 3, "spot": 3}, "train": {"good": 16},
                                     "val": {"good": 4}}  # fmt: skip
    assert all(s.image_path.parent.name == "rgb" and s.image_path.suffix == ".png" for s in samples)
    for sample in samples:
        if sample.label == 0:
            assert sample.mask_path is None  # test/good/gt holds empty masks: a normal image
            continue
        raw = np.asarray(Image.open(sample.mask_path))
        assert set(np.unique(raw)) <= {0, 254, 255} and raw.max() >= 254  # class ids, not 0/255 or 0/1
        assert np.array_equal(read_mask(sample.mask_path), (raw > 0).astype(np.uint8))


def test_3d_good_test_images_are_normal_with_empty_masks_in_batches(mvtec3d: Path) -> None:
    dm = datamodule("mvtec3d", mvtec3d, CATEGORY, image_size=32, eval_batch_size=64)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    good = batch.label == 0
    assert int(good.sum()) == 4 and float(batch.mask[good].sum()) == 0.0 and float(batch.mask[~good].sum()) > 0


def test_3d_xyz_is_refused_and_xyz_only_folders_named(mvtec3d: Path, tmp_path: Path) -> None:
    for modality in ("xyz", "depth"):
        with pytest.raises(ConfigError, match=r"point clouds.*data\.modality=rgb"):
            datamodule("mvtec3d", mvtec3d, CATEGORY, image_size=32, modality=modality)
    root = Path(shutil.copytree(mvtec3d, tmp_path / "copy"))
    shutil.rmtree(root / CATEGORY / "test" / "spot" / "rgb")
    with pytest.raises(DataError, match=r"test/spot has xyz/ but no rgb/ images"):
        make_mvtec3d_samples(root, CATEGORY)


# Real-IAD


def test_realiad_reads_every_view_from_the_split_file(realiad: Path) -> None:
    samples = make_realiad_samples(realiad, CATEGORY, "256")
    assert split_counts(samples) == {"test": {"AK": 5, "HS": 5, "good": 10}, "train": {"good": 30}}
    assert sorted({view_of(str(s.image_path)) for s in samples}) == [1, 2, 3, 4, 5]
    for sample in samples:
        assert (sample.mask_path is not None) == (sample.label == 1)
        if sample.mask_path is not None:
            assert sample.mask_path.with_suffix(".jpg") == sample.image_path  # the mask sits beside its image
    one_view = make_realiad_samples(realiad, CATEGORY, "256", views=[1])
    assert len(one_view) == len(samples) // 5 and {view_of(str(s.image_path)) for s in one_view} == {1}


def test_realiad_nested_split_folder_and_prefix_are_followed(tmp_path: Path) -> None:
    root = make_realiad_tree(tmp_path, [CATEGORY], size=32, n_train=2, n_test_good=1, n_test_bad=1, nested=True,
                             resolution="512")  # fmt: skip
    assert (root / "realiad_jsons" / "realiad_jsons" / f"{CATEGORY}.json").is_file()
    assert len(make_realiad_samples(root, CATEGORY, "512")) == 20


def _rewrite(root: Path, change) -> Path:
    path = root / "realiad_jsons" / f"{CATEGORY}.json"
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))
    return path


def test_realiad_untrusted_split_files_are_refused_by_name(realiad: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(realiad, tmp_path / "copy"))
    path = _rewrite(root, lambda c: c["test"][3].pop("image_path"))
    with pytest.raises(DataError, match=rf"{path}: test\[3\] is not an entry with string anomaly_class and image_path"):
        make_realiad_samples(root, CATEGORY, "256")
    _rewrite(root, lambda c: c.pop("meta"))
    with pytest.raises(DataError, match='has no "meta" object'):
        make_realiad_samples(root, CATEGORY, "256")
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="is not a Real-IAD split file"):
        make_realiad_samples(root, CATEGORY, "256")


def test_realiad_missing_files_name_the_place_and_the_fix(realiad: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"realiad_1024 does not exist \(present: realiad_256\); set data.resolution"):
        make_realiad_samples(realiad, CATEGORY, "1024")
    with pytest.raises(DataError, match=r"'audiojak' \(did you mean 'audiojack'\?\) not found at .*realiad_jsons/"):
        make_realiad_samples(realiad, "audiojak", "256")
    root = Path(shutil.copytree(realiad, tmp_path / "copy"))
    image = next((root / "realiad_256" / CATEGORY / "OK").rglob("*.jpg"))
    image.unlink()
    with pytest.raises(DataError, match=rf"train\[\d+\] names {image}, which does not exist"):
        make_realiad_samples(root, CATEGORY, "256")
    with pytest.raises(ConfigError, match=r"data\.views lists 6"):
        make_realiad_samples(realiad, CATEGORY, "256", views=[6])


def test_realiad_noisy_training_sets_and_maskless_defects_follow_the_official_rules(
    realiad: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = Path(shutil.copytree(realiad, tmp_path / "copy"))

    def change(content: dict) -> None:
        content["train"].append(dict(content["test"][-1]))  # a fuiad-style anomaly among the training images
        for entry in content["test"]:
            if entry["anomaly_class"] == "AK":
                entry["mask_path"] = None

    _rewrite(root, change)
    with caplog.at_level(logging.WARNING):
        samples = make_realiad_samples(root, CATEGORY, "256")
    assert split_counts(samples) == {"test": {"HS": 5, "good": 15}, "train": {"good": 31}}
    assert "1 training images" in caplog.text and "5 test images of class other than OK have no mask" in caplog.text


# fader-check-data and data=synthetic


@pytest.mark.parametrize(
    ("dataset", "fixture", "extra"),
    [("mvtec_ad2", "ad2", []), ("mvtec3d", "mvtec3d", []), ("realiad", "realiad", ["--resolution", "256"])],
)
def test_check_data_reads_each_layout(dataset: str, fixture: str, extra: list, request, capsys) -> None:
    root = request.getfixturevalue(fixture)
    assert check_data(["--dataset", dataset, "--root", str(root), "--category", CATEGORY, *extra]) == 0
    assert f"OK: {dataset} '{CATEGORY}'" in capsys.readouterr().out
    assert check_data(["--dataset", dataset, "--root", str(root / "absent"), "--category", CATEGORY, *extra]) == 1
    assert "cannot be downloaded automatically" in capsys.readouterr().err


def test_synthetic_never_replaces_a_folder_it_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "keep").mkdir(parents=True)
    (mine / "keep" / "photo.png").write_bytes(b"mine")
    with pytest.raises(DataError, match=r"did not generate .*point data\.root of data=synthetic at a new folder"):
        ensure_tree(mine, [CATEGORY], n_train=2, n_test_good=1, n_test_defect=1, size=32)
    assert (mine / "keep" / "photo.png").read_bytes() == b"mine"


def test_generated_layouts_read_like_the_real_sets(tmp_path: Path) -> None:
    transform = build_transform(32, "area")
    for layout, counts in (("mvtec_ad2", {"train": 16, "val": 2, "test": 8}),
                           ("mvtec3d", {"train": 16, "val": 2, "test": 8}),
                           ("realiad", {"train": 15, "test": 10})):  # fmt: skip
        dm = datamodule("synthetic", tmp_path / layout, CATEGORY, layout=layout, image_size=32, n_train=16,
                        n_test_good=4, n_test_defect=2, size=32, val_policy="auto", val_ratio=0.2)  # fmt: skip
        samples = dm.make_samples()
        assert {split: sum(c.values()) for split, c in split_counts(samples).items()} == counts
        item = AnomalyDataset([s for s in samples if s.label == 1][:1], transform)[0]
        assert item["image"].shape == (3, 32, 32) and float(item["mask"].sum()) > 0
    with pytest.raises(ConfigError, match=r"data\.layout='visa' is not a generated layout"):
        datamodule("synthetic", tmp_path / "x", CATEGORY, layout="visa", image_size=32)


def test_realiad_views_filter_refuses_a_name_without_a_view(realiad: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(realiad, tmp_path / "copy"))

    def rename(content: dict) -> None:  # a test image whose name carries no camera view
        entry = content["test"][0]
        old = root / "realiad_256" / CATEGORY / entry["image_path"]
        new = old.with_name(old.name.replace("_C1_", "_"))
        old.rename(new)
        entry["image_path"] = str(Path(entry["image_path"]).with_name(new.name))

    _rewrite(root, rename)
    assert len(make_realiad_samples(root, CATEGORY, "256")) == 50  # without a filter it is read like any other
    with pytest.raises(DataError, match=r"test\[0\] names .*carries no camera view .*set data\.views=null"):
        make_realiad_samples(root, CATEGORY, "256", views=[1])

"""``data.category`` as a list or ``all``: one datamodule over several categories, and a view of each."""

from pathlib import Path

import pytest

from conftest import datamodule
from fader_lightning.data.categories import parse_categories
from fader_lightning.data.mvtec import MVTEC_CATEGORIES
from fader_lightning.data.source import describe
from fader_lightning.errors import ConfigError

CATEGORIES = ["synth_texture", "synth_object"]


def test_category_values_a_name_a_list_or_all() -> None:
    assert parse_categories("bottle", MVTEC_CATEGORIES, "mvtec") == ["bottle"]
    assert parse_categories(["grid", "bottle"], MVTEC_CATEGORIES, "mvtec") == ["grid", "bottle"]
    assert parse_categories("all", MVTEC_CATEGORIES, "mvtec") == list(MVTEC_CATEGORIES)
    refused = (
        ([], r"names no category"),
        (["grid", "grid"], "names 'grid' twice"),
        (["grid", "all"], "'all' stands alone"),
        (["grid", 3], "holds 3, which is not a category name"),
    )
    for value, message in refused:
        with pytest.raises(ConfigError, match=message):
            parse_categories(value, MVTEC_CATEGORIES, "mvtec")
    with pytest.raises(ConfigError, match="data=folder has no official list"):
        parse_categories("all", (), "folder")


def test_a_list_with_typos_names_every_one_before_reading(synthetic_mvtec: Path) -> None:
    dm = datamodule("mvtec", synthetic_mvtec, ["synth_textur", "synth_object", "bottel"], image_size=32)
    with pytest.raises(ConfigError, match=r"'synth_textur' \(did you mean 'synth_texture'\?\), 'bottel' \(did you mean "
                                          r"'bottle'\?\), not found under data.root"):  # fmt: skip
        dm.setup()


def test_folder_data_is_one_category(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data=folder reads one folder of normal images, one category"):
        datamodule("folder", category=["a", "b"], normal_dir=tmp_path, image_size=32)


def test_unified_data_is_the_union_with_per_category_held_out_normals(synthetic_mvtec: Path) -> None:
    dm = datamodule("mvtec", synthetic_mvtec, CATEGORIES, image_size=32, val_policy="from_train", val_ratio=0.25)
    dm.setup()
    assert dm.unified and dm.category == "synth_texture+synth_object"
    for category in CATEGORIES:
        alone = datamodule("mvtec", synthetic_mvtec, category, image_size=32, val_policy="from_train", val_ratio=0.25)
        alone.setup()
        view = dm.category_view(category)
        assert not view.unified and view.category == category
        for split in ("train_samples", "val_samples", "test_samples"):  # each category split as if alone
            assert getattr(view, split) == getattr(alone, split)
            assert [s for s in getattr(dm, split) if s.category == category] == getattr(alone, split)
    batches = {category for batch in dm.train_dataloader() for category in batch.category}
    assert batches == set(CATEGORIES)  # one model sees both
    with pytest.raises(ConfigError, match="'bottle' is not one of this run's"):
        dm.category_view("bottle")


def test_all_means_every_generated_category(tmp_path: Path) -> None:
    dm = datamodule("synthetic", tmp_path / "synthetic", "all", image_size=32, n_train=4, n_test_good=2,
                    n_test_defect=1, size=32)  # fmt: skip
    dm.setup()
    assert dm.categories == CATEGORIES and {s.category for s in dm.test_samples} == set(CATEGORIES)


def test_visa_objects_unify_through_the_split_file(synthetic_visa: Path) -> None:
    dm = datamodule("visa", synthetic_visa, CATEGORIES, image_size=32, val_policy="from_train", val_ratio=0.25)
    dm.setup()
    for category in CATEGORIES:
        alone = datamodule("visa", synthetic_visa, category, image_size=32, val_policy="from_train", val_ratio=0.25)
        alone.setup()
        assert dm.category_view(category).test_samples == alone.test_samples
        assert dm.category_view(category).val_samples == alone.val_samples
    bad = datamodule("visa", synthetic_visa, ["synth_object", "capsule"], image_size=32)
    with pytest.raises(ConfigError, match=r"'capsule' \(did you mean 'capsules'\?\)"):
        bad.setup()


def test_a_unified_record_reads_back_as_the_override_that_chose_it() -> None:
    shown = describe("mvtec", {"root": "/data/mvtec_ad", "category": ["bottle", "grid"]})
    assert shown == "data=mvtec data.root=/data/mvtec_ad data.category='[bottle,grid]'"

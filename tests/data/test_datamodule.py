import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

from conftest import datamodule
from fader_lightning.data.dataset import collate_batch
from fader_lightning.errors import ConfigError, DataError


def _paths(samples):
    return {s.image_path for s in samples}


@pytest.mark.parametrize("policy", ["none", "from_train", "same_as_test"])
def test_splits_never_share_a_file(synthetic_mvtec: Path, policy: str) -> None:
    dm = datamodule("mvtec", synthetic_mvtec, "synth_object", image_size=256, val_policy=policy, val_ratio=0.25)
    dm.setup()
    train, val, test = _paths(dm.train_samples), _paths(dm.val_samples), _paths(dm.test_samples)
    assert train and test
    assert not train & val and not train & test
    if policy == "from_train":
        assert len(val) == 3 and not val & test and all(s.label == 0 for s in dm.val_samples)
    if policy == "same_as_test":
        assert val == test
    if policy == "none":
        assert dm.val_dataloader() == []


def test_from_train_split_is_seeded(synthetic_mvtec: Path) -> None:
    def val_of(seed: int) -> set:
        dm = datamodule(
            "mvtec", synthetic_mvtec, "synth_object", image_size=256, val_policy="from_train", val_ratio=0.25, seed=seed
        )
        dm.setup()
        return _paths(dm.val_samples)

    assert val_of(1) == val_of(1)
    assert val_of(1) != val_of(2)


def test_train_shuffle_is_seeded(synthetic_mvtec: Path) -> None:
    def order(seed: int) -> list[str]:
        dm = datamodule("mvtec", synthetic_mvtec, "synth_object", image_size=16, train_batch_size=4, seed=seed)
        dm.setup()
        return [p for batch in dm.train_dataloader() for p in batch.path]

    assert order(3) == order(3)
    assert order(3) != order(4)


def test_bad_policy_and_ratio(synthetic_mvtec: Path) -> None:
    with pytest.raises(ConfigError, match="val_policy='test'"):
        datamodule("mvtec", synthetic_mvtec, "synth_object", image_size=256, val_policy="test")
    with pytest.raises(ConfigError, match="val_ratio"):
        datamodule(
            "mvtec", synthetic_mvtec, "synth_object", image_size=256, val_policy="from_train", val_ratio=0.01
        ).setup()
    with pytest.raises(ConfigError, match="image_size"):
        datamodule("mvtec", synthetic_mvtec, "synth_object", image_size=(0, 4))


def test_folder_datamodule(synthetic_mvtec: Path) -> None:
    cat = synthetic_mvtec / "synth_texture"
    dm = datamodule(
        "folder",
        cat / "train/good",
        cat / "test/spot",
        cat / "ground_truth/spot",
        mask_suffix="_mask",
        normal_test_ratio=0.25,
        image_size=32,
    )
    dm.setup()
    assert len(dm.train_samples) == 9 and len(dm.test_samples) == 3 + 3
    assert not _paths(dm.train_samples) & _paths(dm.test_samples)
    batch = next(iter(dm.test_dataloader()))
    assert (batch.mask.flatten(1).sum(1)[batch.label == 1] > 0).all()


def test_folder_without_masks_and_bad_dirs(synthetic_mvtec: Path, tmp_path: Path) -> None:
    cat = synthetic_mvtec / "synth_texture"
    dm = datamodule("folder", cat / "train/good", cat / "test/spot", image_size=32)
    dm.setup()
    assert sum(s.label for s in dm.test_samples) == 3
    with pytest.raises(DataError, match="normal_dir"):
        datamodule("folder", tmp_path / "missing", image_size=256).setup()
    with pytest.raises(DataError, match="has no mask"):
        datamodule("folder", cat / "train/good", cat / "test/spot", cat / "ground_truth/spot", image_size=256).setup()


def test_generated_tree_is_built_once_and_rebuilt_on_new_settings(tmp_path: Path) -> None:
    from fader_lightning.data.synthetic import ensure_tree

    root = tmp_path / "synthetic"
    settings = {"n_train": 2, "n_test_good": 1, "n_test_defect": 1, "size": 32}
    ensure_tree(root, ["synth_object"], **settings)
    stamp = (root / "synth_object/train/good/000.png").stat().st_mtime_ns
    ensure_tree(root, ["synth_object"], **settings)
    assert (root / "synth_object/train/good/000.png").stat().st_mtime_ns == stamp  # reused, not rewritten
    ensure_tree(root, ["synth_object"], **{**settings, "n_train": 3})
    assert len(list((root / "synth_object/train/good").iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]  # no staging folder left behind


def test_decoded_images_are_cached_per_split(synthetic_mvtec: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(synthetic_mvtec, tmp_path / "copy"))
    dm = datamodule("mvtec", root, "synth_object", image_size=32, train_batch_size=4)
    dm.setup()
    first = next(iter(dm.test_dataloader()))
    for sample in dm.test_samples[: len(first)]:
        sample.image_path.rename(sample.image_path.with_suffix(".moved"))  # a second read would now fail
    again = next(iter(dm.test_dataloader()))
    assert torch.equal(first.image, again.image) and torch.equal(first.mask, again.mask)


def test_augmentation_moves_image_and_mask_together_on_training_images_only(synthetic_mvtec: Path) -> None:
    import albumentations as A

    flip = A.HorizontalFlip(p=1.0)
    plain = datamodule("mvtec", synthetic_mvtec, "synth_object", image_size=32, val_policy="from_train", val_ratio=0.25)
    flipped = datamodule("mvtec", synthetic_mvtec, "synth_object", image_size=32, val_policy="from_train",
                                val_ratio=0.25, train_augmentations=[flip])  # fmt: skip
    for dm in (plain, flipped):
        dm.setup()
    train, train_flipped = plain._loader("train").dataset, flipped._loader("train").dataset
    for index in range(len(train)):
        assert torch.equal(train_flipped[index]["image"], train[index]["image"].flip(-1))
        assert torch.equal(train_flipped[index]["mask"], train[index]["mask"].flip(-1))
    for split in ("val_dataloader", "test_dataloader", "normal_dataloader"):  # never augmented
        first, second = next(iter(getattr(plain, split)())), next(iter(getattr(flipped, split)()))
        assert torch.equal(first.image, second.image) and torch.equal(first.mask, second.mask)
    assert _paths(plain.normal_samples) == _paths(plain.train_samples) | _paths(plain.val_samples)


def test_under_ddp_each_test_image_is_served_once_over_the_ranks(
    synthetic_mvtec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.distributed as dist

    dm = datamodule("mvtec", root=synthetic_mvtec, category="synth_object", image_size=32, eval_batch_size=2)
    dm.setup("test")
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 3)
    served = []
    for rank in range(3):
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        served += [path for batch in dm.test_dataloader() for path in batch.path]
    assert sorted(served) == sorted(str(sample.image_path) for sample in dm.test_samples)  # none repeated or lost
    assert len(dm.test_samples) % 3 != 0  # an uneven split, which a padding sampler would fill with repeats


def test_batches_are_pinned_for_a_cuda_trainer_only(synthetic_mvtec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dm = datamodule("mvtec", synthetic_mvtec, "synth_object", image_size=16, eval_batch_size=4)
    dm.setup()
    assert not dm.test_dataloader().pin_memory  # no trainer, or a CPU one: nothing to pin for
    dm.trainer = SimpleNamespace(accelerator=CPUAccelerator())
    assert not dm.test_dataloader().pin_memory
    dm.trainer = SimpleNamespace(accelerator=CUDAAccelerator())
    assert dm.test_dataloader().pin_memory and dm.train_dataloader().pin_memory

    batch = collate_batch([dm.test_dataloader().dataset[i] for i in range(4)])
    pinned: list[torch.Tensor] = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor: pinned.append(tensor) or tensor.clone())
    copy = batch.pin_memory()  # what the loader's pinning thread calls on a batch
    assert [id(t) for t in pinned] == [id(batch.image), id(batch.mask), id(batch.label)]
    assert torch.equal(copy.image, batch.image) and copy.image is not batch.image
    assert (copy.path, copy.defect_type, copy.category) == (batch.path, batch.defect_type, batch.category)


def test_from_config_gives_a_python_user_the_values_of_a_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One line builds a datamodule with every value fader-train would give it; keys and names are checked."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from fader_lightning.configs import CONFIG_DIR
    from fader_lightning.data import MVTecADDataModule, from_config

    monkeypatch.chdir(tmp_path)
    datamodule = from_config("mvtec", root=str(tmp_path / "mvtec_ad"), category="grid")
    assert isinstance(datamodule, MVTecADDataModule)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        job = OmegaConf.to_container(compose(config_name="train", overrides=["data=mvtec"]).data, resolve=True)
    assert datamodule.category == "grid" and datamodule.root == tmp_path / "mvtec_ad"
    assert datamodule.image_size == (job["image_size"],) * 2 and datamodule.mask_suffix == job["mask_suffix"]
    assert datamodule.val_policy == job["val_policy"] and datamodule.train_batch_size == job["train_batch_size"]
    with pytest.raises(ConfigError, match=r"^catgory is not a key of conf/data/mvtec.yaml; use one of: .*category"):
        from_config("mvtec", catgory="grid")
    with pytest.raises(ConfigError, match=r"data=base holds the settings every data config shares, not a dataset"):
        from_config("base")
    with pytest.raises(ConfigError, match=r"data=mvtek is not a config of conf/data/"):
        from_config("mvtek")

"""Checkpoints state their stage, leave the frozen mask generator out, and older files are still told apart."""

import functools
from pathlib import Path

import pytest
import torch

from conftest import EAR_SETTINGS, fader_module
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.models import EARModule
from fader_lightning.models.checkpoint_file import (
    DIGEST_KEY,
    STAGE_KEY,
    read_checkpoint,
    weights_digest,
    write_checkpoint,
)
from fader_lightning.models.loading import checkpoint_stage, load_module
from fader_lightning.results import run_entry
from fader_lightning.run_layout import stage_checkpoint


def saved(module: EARModule) -> dict:
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                  "pytorch-lightning_version": "2.6.0"}  # fmt: skip
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def test_a_checkpoint_states_its_stage_and_older_ones_are_recognised(tmp_path: Path) -> None:
    attention = {"name": "attention", "model_name": "vit_tiny_patch16_224", "pretrained": False}
    module = EARModule(**EAR_SETTINGS, unet={"widths": [8, 16]}, masking=attention, image_size=32)
    checkpoint = saved(module)
    assert checkpoint[STAGE_KEY] == "ear"
    assert not any(key.startswith("ear.masker.") for key in checkpoint["state_dict"])  # the ViT stays out
    assert any(key.startswith("ear.masker.") for key in module.state_dict())
    older = {key: value for key, value in checkpoint.items() if key != STAGE_KEY}
    assert checkpoint_stage(older, "older.ckpt") == "ear"
    with pytest.raises(CheckpointError, match="neither a stage-1"):
        checkpoint_stage({"stage": "other", "hyper_parameters": {"lr": 1}}, "x.ckpt")
    path = stage_checkpoint(tmp_path / "run", "ear")
    assert path == tmp_path / "run" / "checkpoints" / "ear" / "last.ckpt"
    path.parent.mkdir(parents=True)
    plain = EARModule(**EAR_SETTINGS, unet={"widths": [8, 16]}, masking={"name": "checkerboard"}, image_size=32)
    torch.save(saved(plain), path)
    assert run_entry(path, "ear") == {}  # no metrics.json in that run folder
    loaded = load_module(path)
    assert loaded.stage == "ear" and loaded.trained_size == (32, 32)
    for key, value in plain.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_module_built_without_an_optimizer_refuses_to_train(tmp_path: Path) -> None:
    module = EARModule(**EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "checkerboard"})
    with pytest.raises(ConfigError, match=r"EARModule has no optimizer to train with.*model\.optimizer"):
        module.configure_optimizers()  # learning rates live in the optimizer nodes of conf/, nowhere else
    module.optimizer_factory = functools.partial(torch.optim.SGD, lr=0.5)
    assert module.configure_optimizers().param_groups[0]["lr"] == 0.5
    torch.save(saved(module), tmp_path / "ear.ckpt")
    stage2 = fader_module(str(tmp_path / "ear.ckpt"))
    with pytest.raises(ConfigError, match=r"FADeRModule has no optimizer to train with.*fader\.optimizer"):
        stage2.configure_optimizers()
    assert (stage2.fpr_limit, stage2.hparams.fpr_limit) == (EAR_SETTINGS["fpr_limit"], None)  # None: stage 1's


def test_the_writer_outside_a_trainer_writes_what_both_stages_load(tmp_path: Path) -> None:
    module = EARModule(
        **EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "checkerboard"}, image_size=32
    )
    path = write_checkpoint(module.eval(), tmp_path / "s1.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1.ckpt"]  # no temporary file left behind
    checkpoint = read_checkpoint(path, "a test file")  # the digest it states matches what it holds
    assert checkpoint[STAGE_KEY] == "ear" and checkpoint[DIGEST_KEY] == weights_digest(checkpoint)
    reloaded = load_module(path)
    for a, b in zip(module.state_dict().values(), reloaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)  # uncalibrated thresholds are NaN
    fader = fader_module(path)
    assert fader.hparams.stage1_settings["unet"] == {"widths": [8, 16, 32, 64]} and fader.fader.patch_size == 8
    for name, value in module.ear.state_dict().items():
        torch.testing.assert_close(fader.ear.state_dict()[name], value, rtol=0, atol=0, equal_nan=True)


def test_a_stage1_checkpoint_from_before_the_ear_attribute_still_loads(tmp_path: Path) -> None:
    """Stage-1 files from when EARModule called its EAR model ``model`` (keys ``model.*``) load as ``ear.*``."""
    module = EARModule(
        **EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "checkerboard"}, image_size=32
    )
    checkpoint = read_checkpoint(write_checkpoint(module, tmp_path / "new.ckpt"), "a test file")
    checkpoint["state_dict"] = {
        ("model." + key.removeprefix("ear.") if key.startswith("ear.") else key): value
        for key, value in checkpoint["state_dict"].items()
    }
    checkpoint[DIGEST_KEY] = weights_digest(checkpoint)  # as such a file states it
    assert any(key.startswith("model.unet.") for key in checkpoint["state_dict"])
    torch.save(checkpoint, tmp_path / "older.ckpt")
    reloaded = load_module(tmp_path / "older.ckpt")
    for name, value in module.ear.state_dict().items():
        torch.testing.assert_close(reloaded.ear.state_dict()[name], value, rtol=0, atol=0, equal_nan=True)


def test_a_fader_checkpoint_with_flat_settings_still_loads(tmp_path: Path) -> None:
    """FADeR files from before the settings were grouped (and before use/attenuate_masked existed) load as such."""
    ear = EARModule(**EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "checkerboard"}, image_size=32)
    fader = fader_module(write_checkpoint(ear, tmp_path / "ear.ckpt"), patch_size=4, target="mse")
    checkpoint = read_checkpoint(write_checkpoint(fader, tmp_path / "fader.ckpt"), "a test file")
    hparams = checkpoint["hyper_parameters"]
    flat = {**hparams.pop("network"), **hparams.pop("ranking"), **hparams.pop("inputs")}
    for key in ("use", "attenuate_masked", "residual_region", "synthetic", "force_image_size", "max_cached_images"):
        del flat[key]  # settings added later: such a file lacks them
    hparams.update(flat, ckpt_path="gone/ear.ckpt")
    checkpoint[DIGEST_KEY] = weights_digest(checkpoint)
    torch.save(checkpoint, tmp_path / "older.ckpt")
    loaded = load_module(tmp_path / "older.ckpt")
    assert loaded.network.patch_size == 4 and loaded.ranking.target == "mse" and loaded.network.use == "attenuate"
    assert loaded.inputs == fader.inputs and loaded.trained_size == (32, 32)  # the stage-1 model's size
    assert loaded.hparams.network == loaded.network.as_dict()
    for key, value in fader.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, equal_nan=True)


def test_stage2_settings_are_grouped_and_a_stray_key_is_named(tmp_path: Path) -> None:
    ear = EARModule(**EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "checkerboard"})
    path = write_checkpoint(ear, tmp_path / "ear.ckpt")
    fader = fader_module(path)
    assert set(fader.hparams) >= {"network", "ranking", "inputs", "calibration", "stage1_settings"}
    assert "patch_size" not in fader.hparams and fader.hparams.network["patch_size"] == fader.fader.patch_size
    with pytest.raises(ConfigError, match=r"^fader\.patch_sizee is not a setting of stage 2"):
        fader_module(path, patch_sizee=4)

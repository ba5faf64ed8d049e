"""Checkpoints state their stage, leave the frozen mask generator out, and older files are still told apart."""

from pathlib import Path

import pytest
import torch

from fader_lightning.errors import CheckpointError
from fader_lightning.models import EARModule
from fader_lightning.models.checkpoints import (
    STAGE_KEY,
    checkpoint_stage,
    load_module,
    run_entry,
    stage_checkpoint,
)


def saved(module: EARModule) -> dict:
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                  "pytorch-lightning_version": "2.6.0"}  # fmt: skip
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def test_a_checkpoint_states_its_stage_and_older_ones_are_recognised(tmp_path: Path) -> None:
    module = EARModule(unet={"widths": [8, 16]}, masking={"name": "attention", "pretrained": False},
                              image_size=32)  # fmt: skip
    checkpoint = saved(module)
    assert checkpoint[STAGE_KEY] == "ear"
    assert not any(key.startswith("model.masker.") for key in checkpoint["state_dict"])  # the ViT stays out
    assert any(key.startswith("model.masker.") for key in module.state_dict())
    older = {key: value for key, value in checkpoint.items() if key != STAGE_KEY}
    assert checkpoint_stage(older, "older.ckpt") == "ear"
    with pytest.raises(CheckpointError, match="neither a stage-1"):
        checkpoint_stage({"stage": "other", "hyper_parameters": {"lr": 1}}, "x.ckpt")
    path = stage_checkpoint(tmp_path / "run", "ear")
    assert path == tmp_path / "run" / "checkpoints" / "ear" / "last.ckpt"
    path.parent.mkdir(parents=True)
    plain = EARModule(unet={"widths": [8, 16]}, masking={"name": "checkerboard"}, image_size=32)
    torch.save(saved(plain), path)
    assert run_entry(path, "ear") == {}  # no metrics.json in that run folder
    loaded = load_module(path)
    assert loaded.stage == "ear" and loaded.trained_size == (32, 32)
    for key, value in plain.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

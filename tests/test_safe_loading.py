"""A checkpoint that carries code is refused on every load path, and the code never runs."""

import os
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.errors import CheckpointError
from fader_lightning.inference import load_module
from fader_lightning.models import FADeRModule
from fader_lightning.stage1_store import stage1_key
from fader_lightning.train import train
from fader_lightning.utils.checkpoints import TRUST_ENV, read_checkpoint

SMALL = ["data.image_size=32", "data.n_train=8", "data.n_test_good=4", "data.n_test_defect=2", "data.size=64",
         TINY_UNET, "logger=none", "trainer.max_epochs=1", "callbacks.overlays.num_samples=0"]  # fmt: skip


class Payload:
    """Unpickling this object creates a marker file: proof that code in a checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def malicious(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.ckpt"
    hparams = {"unet": {"widths": [8, 16, 32, 64]}, "masking": {"name": "none"}, "payload": Payload(marker)}
    torch.save({"state_dict": {}, "hyper_parameters": hparams, "epoch": 0}, path)
    return path, marker


def test_stage2_stage1_checkpoint(malicious: tuple[Path, Path]) -> None:
    path, marker = malicious
    with pytest.raises(CheckpointError, match=rf"{path.name} is not a readable checkpoint.*{TRUST_ENV}=1"):
        FADeRModule(str(path))
    assert not marker.exists()


def test_predict_and_export_load(malicious: tuple[Path, Path]) -> None:
    path, marker = malicious
    with pytest.raises(CheckpointError, match="weights-only"):
        load_module(path)
    assert not marker.exists()


def test_resume(malicious: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = malicious
    with pytest.raises(CheckpointError, match=r"point ckpt_path at"):
        train(compose_train_cfg(tmp_path / "run", [*SMALL, f"ckpt_path={path}"]))
    assert not marker.exists()


def test_stage1_store(malicious: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = malicious
    cfg = compose_train_cfg(tmp_path / "run", [*SMALL, "reuse_stage1=true"])
    store = Path(cfg.paths.stage1_store)
    store.mkdir(parents=True)
    os.replace(path, store / f"{stage1_key(cfg)}.ckpt")  # a poisoned store entry
    with pytest.raises(CheckpointError, match="stage-1 store"):
        train(cfg)
    assert not marker.exists()


def test_trusted_opt_in_loads_it(malicious: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path, marker = malicious
    monkeypatch.setenv(TRUST_ENV, "1")
    assert read_checkpoint(path, "")["epoch"] == 0
    assert marker.exists()  # the user said the file is trusted, so its objects were unpickled

"""A checkpoint that carries code is refused on every load path, and the code never runs."""

import os
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import TINY_UNET, compose_train_cfg, edit_checkpoint, fader_module
from fader_lightning.errors import CheckpointError
from fader_lightning.jobs.stage1_store import stage1_key
from fader_lightning.jobs.train import train
from fader_lightning.models.checkpoint_file import TRUST_ENV, read_checkpoint
from fader_lightning.models.loading import load_module

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
        fader_module(str(path))
    assert not marker.exists()


def test_predict_and_export_load(malicious: tuple[Path, Path]) -> None:
    path, marker = malicious
    with pytest.raises(CheckpointError, match="weights-only"):
        load_module(path)
    assert not marker.exists()


def test_resume(malicious: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = malicious
    resumed = tmp_path / "run/out/checkpoints/ear/last.ckpt"  # a resume reads only its own folder's checkpoints
    resumed.parent.mkdir(parents=True)
    os.replace(path, resumed)
    with pytest.raises(CheckpointError, match=r"point ckpt_path at"):
        train(compose_train_cfg(tmp_path / "run", [*SMALL, f"ckpt_path={resumed}"]))
    assert not marker.exists()


def test_stage1_store(malicious: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = malicious
    cfg = compose_train_cfg(tmp_path / "run", [*SMALL, "reuse_stage1=true"])
    store = Path(cfg.paths.stage1_store)
    store.mkdir(parents=True)
    os.replace(path, store / f"{stage1_key(cfg, instantiate(cfg.data))}.ckpt")  # a poisoned store entry
    with pytest.raises(CheckpointError, match="stage-1 store"):
        train(cfg)
    assert not marker.exists()


def test_trusted_opt_in_loads_it(malicious: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path, marker = malicious
    monkeypatch.setenv(TRUST_ENV, "1")
    assert read_checkpoint(path, "")["epoch"] == 0
    assert marker.exists()  # the user said the file is trusted, so its objects were unpickled


def test_checkpoint_hparams_never_decide_where_masks_are_written(tmp_path: Path) -> None:
    theirs, mine = tmp_path / "their_cache", tmp_path / "my_cache"
    cfg = compose_train_cfg(tmp_path / "run", [*SMALL, "masking=saliency", f"model.mask_cache_dir={theirs}"])
    ckpt = train(cfg)["ear"]["checkpoint"]
    assert read_checkpoint(ckpt, "")["hyper_parameters"]["mask_cache_dir"] == str(theirs)
    stage2 = fader_module(ckpt, mask_cache_dir=str(mine))
    assert stage2.ear.masker.cache_dir == mine
    stage2.ear.masks(torch.rand(2, 3, 32, 32))
    assert any(mine.rglob("*.pt"))
    assert load_module(ckpt).ear.masker.cache_dir is None  # inference keeps masks in memory


@pytest.fixture
def attention_ckpt(tmp_path: Path) -> tuple[Path, Path]:
    """A stage-1 checkpoint with attention masking, and the ViT state dict it was trained with."""
    import timm

    weights = tmp_path / "vit.pth"
    torch.save(timm.create_model("vit_small_patch8_224.dino", pretrained=False).state_dict(), weights)
    cfg = compose_train_cfg(tmp_path / "run", [*SMALL, "masking=attention", f"masking.weights_path={weights}",
                                               "debug=fdr"])  # fmt: skip
    return Path(train(cfg)["ear"]["checkpoint"]), weights


def _rewrite_masking(path: Path, **masking: object) -> Path:
    return edit_checkpoint(path, lambda checkpoint: checkpoint["hyper_parameters"]["masking"].update(masking))


def test_loading_a_checkpoint_never_downloads(
    attention_ckpt: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm

    ckpt, weights = attention_ckpt
    downloads: list[str] = []
    create = timm.create_model

    def recording(name: str, pretrained: bool = False, **kwargs: object) -> torch.nn.Module:
        if pretrained:
            downloads.append(name)
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", recording)
    _rewrite_masking(ckpt, weights_path=None, pretrained=True)  # as trained with a hub download
    for load in (load_module, fader_module):
        with pytest.raises(CheckpointError, match=r"loading a checkpoint never downloads; pass (fader.)?vit_weights"):
            load(str(ckpt))
    assert load_module(ckpt, vit_weights=str(weights)).ear.masker.generator.weights_path == weights
    _rewrite_masking(ckpt, weights_path=str(weights.with_name("moved.pth")))
    with pytest.raises(CheckpointError, match=r"moved.pth, which do not exist here"):
        load_module(ckpt)
    assert downloads == []

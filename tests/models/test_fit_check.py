"""Image sizes that cannot work are refused before training, naming the key and, for memory, the estimate."""

from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.errors import ConfigError
from fader_lightning.jobs.train import train
from fader_lightning.models import fit_check
from fader_lightning.models.losses import InpaintingLoss
from fader_lightning.models.unet import UNet

SMALL_DATA = ["data.n_train=8", "data.n_test_good=4", "data.n_test_defect=2", "data.size=64"]


@pytest.mark.parametrize(("stride", "scales", "expected"), [(8, 4, 24), (16, 4, 32), (8, 1, 8), (4, 5, 48)])
def test_minimum_side(stride: int, scales: int, expected: int) -> None:
    side = fit_check.minimum_side(stride, scales)
    assert side == expected
    assert side % stride == 0 and side / 2 ** (scales - 1) >= 3  # coarsest MSGMS scale holds a 3x3 filter
    assert side - stride < 3 * 2 ** (scales - 1) or side == stride  # and it is the smallest such multiple


def test_too_small_image_size_is_refused(tmp_path: Path) -> None:
    cfg = compose_train_cfg(tmp_path, [*SMALL_DATA, TINY_UNET, "data.image_size=16", "debug=fdr"])
    with pytest.raises(ConfigError, match=r"data.image_size=16x16 is too small.*use data.image_size=24 or more"):
        train(cfg)


def test_activation_estimate_matches_a_measurement_at_full_size() -> None:
    unet, loss = UNet(widths=(8, 16, 32, 64)), InpaintingLoss()
    estimate = fit_check.training_step_bytes(unet, loss, 96, 128, 3)
    weights = {p.untyped_storage().data_ptr() for p in unet.parameters()}
    storages: dict[int, int] = {}

    def count(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.untyped_storage().data_ptr() not in weights:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    image = torch.rand(3, 3, 96, 128)
    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        loss(unet(image), image)["loss"]
    measured = sum(storages.values()) + 4 * sum(p.numel() * 4 for p in unet.parameters())
    assert 0.8 < estimate / measured < 1.25
    assert fit_check.training_step_bytes(unet, loss, 192, 256, 3) > 3.5 * estimate  # grows with the pixels


def test_image_size_beyond_memory_is_refused_with_the_estimate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fader_lightning.models.ear.module.available_bytes", lambda device: 2**20)
    cfg = compose_train_cfg(tmp_path, [*SMALL_DATA, TINY_UNET, "data.image_size=64", "debug=fdr"])
    with pytest.raises(ConfigError, match=r"data.image_size=64x64 with data.train_batch_size=8 needs about") as err:
        train(cfg)
    assert "0.0 GiB available" in str(err.value) and "lower data.image_size" in str(err.value)


def test_stage2_checks_its_data_size_too(tmp_path: Path) -> None:
    ckpt = train(compose_train_cfg(tmp_path / "a", [*SMALL_DATA, TINY_UNET, "data.image_size=32", "debug=fdr"]))
    stage2 = [
        "stage=fader",
        f"fader.ckpt_path={ckpt['ear']['checkpoint']}",
        "fader.trainer.max_epochs=1",
        "force=true",
    ]  # past the size check: the minimum still holds
    cfg = compose_train_cfg(tmp_path / "b", [*SMALL_DATA, TINY_UNET, "data.image_size=16", "debug=fdr", *stage2])
    with pytest.raises(ConfigError, match=r"data.image_size=16x16 is too small"):
        train(cfg)

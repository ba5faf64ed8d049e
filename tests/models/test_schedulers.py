"""Learning-rate schedules: the warm-up + cosine curve, and the presets reaching both stages' optimizers."""

import math
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.errors import ConfigError
from fader_lightning.jobs.train import train
from fader_lightning.models import FADeRModule
from fader_lightning.models.schedulers import warmup_cosine


def _rates(max_epochs: int, warmup: int, ratio: float) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = warmup_cosine(optimizer, max_epochs, warmup, ratio)
    rates = []
    for _ in range(max_epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_then_cosine_to_the_floor() -> None:
    rates = _rates(max_epochs=6, warmup=1, ratio=0.1)
    decay = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]  # epochs 1..5 of 6
    assert rates == pytest.approx([0.5 * 0.5, *(0.5 * d for d in decay)])
    assert rates[1] == pytest.approx(0.5) and rates[-1] == pytest.approx(0.05)
    assert _rates(3, 0, 0.0) == pytest.approx([0.5, 0.25, 0.0])


def test_bad_schedule_names_its_settings() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match=r"warmup_cosine\(max_epochs=2, warmup_epochs=2"):
        warmup_cosine(optimizer, 2, 2, 0.01)


def test_presets_schedule_both_stages(tmp_path: Path) -> None:
    overrides = ["data.image_size=32", "data.n_train=8", "data.n_test_good=2", "data.n_test_defect=2",
                 "data.size=64", TINY_UNET, "logger=none", "callbacks.overlays.num_samples=0", "stage=both",
                 "trainer.max_epochs=3", "fader.trainer.max_epochs=2", "model/scheduler=cosine",
                 "fader/scheduler=cosine",
                 "model.scheduler.min_lr_ratio=0.1", "fader.scheduler.min_lr_ratio=0.2"]  # fmt: skip
    cfg = compose_train_cfg(tmp_path, overrides)
    assert cfg.model.scheduler.max_epochs == 3 and cfg.fader.scheduler.max_epochs == 2
    results = train(cfg)
    for stage, lr, floor in (("ear", cfg.model.optimizer.lr, 0.1), ("fader", cfg.fader.optimizer.lr, 0.2)):
        checkpoint = torch.load(results[stage]["checkpoint"], weights_only=True)
        (state,) = checkpoint["lr_schedulers"]
        # after the last epoch the schedule sits at its floor
        assert state["_last_lr"][0] == pytest.approx(lr * floor)
    assert FADeRModule.load_from_checkpoint(results["fader"]["checkpoint"]).scheduler_factory is None  # not stored

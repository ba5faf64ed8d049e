"""The benchmark's helpers (the benchmark itself runs with `make bench`, not in the test suite)."""

from pathlib import Path

import torch

from conftest import fader_module
from fader_lightning.cli.bench import markdown, median_ms, save_stage1, stage1
from fader_lightning.models import EARModule


def test_median_ms_measures_a_sleep() -> None:
    import time

    assert 4.0 <= median_ms(lambda: time.sleep(0.005), repeats=3, warmup=1) < 50.0


def test_saved_untrained_stage1_loads_in_both_stages(tmp_path: Path, monkeypatch) -> None:
    import fader_lightning.cli.bench as bench

    monkeypatch.setattr(bench, "UNET", {"widths": [8, 16, 32, 64]})
    module = stage1({"name": "checkerboard"})
    path = save_stage1(module, tmp_path / "s1.ckpt")
    reloaded = EARModule.load_from_checkpoint(path)
    for a, b in zip(module.state_dict().values(), reloaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)  # uncalibrated thresholds are NaN
    assert fader_module(str(path)).fader.patch_size == 8


def test_markdown_lists_every_measurement() -> None:
    report = {
        "machine": "test",
        "costs": {"unet": {"params": 9.1e6, "gmacs": 45.6}},
        "latency_ms": {"torch_unet": 12.5},
        "ratios": {"fader_overhead": {"value": 1.02, "target": "<= 1.05"}},
        "other": {"matmul_gflops": 100.0},
    }
    text = markdown(report)
    assert "| unet | 9.100 | 45.600 |" in text and "| torch_unet | 12.5 |" in text
    assert "| fader_overhead | 1.020 | <= 1.05 |" in text and "matmul_gflops" in text

"""``make bench-speed`` on a small generated set with a tiny U-Net: its parts add up and its plot is drawn."""

from __future__ import annotations

from pathlib import Path

import bench_speed
import pytest
from PIL import Image

from fader_lightning.data.synthetic import make_mvtec_tree


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, str]:
    monkeypatch.setattr(bench_speed, "UNET", {"widths": [8, 16, 32, 64]})
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = make_mvtec_tree(tmp_path / "data", ["obj"], n_train=4, n_test_good=3, n_test_defect=2, size=96)
    return root, "obj"


def test_breakdown_parts_and_the_end_to_end_ratio(tiny: tuple[Path, str], tmp_path: Path) -> None:
    root, category = tiny
    out = bench_speed.breakdown(root, category, 64, tmp_path / "scratch")
    n = out["images"]
    assert n == len(list((root / category / "test").rglob("*.png")))
    for part in ("decode", "resize", "cache_read", "masks", "unet", "scoring", "metrics"):
        assert out[f"{part}_ms"] > 0, part
    for key in ("before", "cold_cache", "cached", "workers1"):
        assert out[f"test_{key}_over_forward"] == pytest.approx(out[f"test_{key}_img_per_s"] / out["forward_img_per_s"])
        assert 0 < out[f"test_{key}_forward_share"] < 1  # the pass's own forwards, a part of it
    train = len(list((root / category / "train").rglob("*.png")))
    assert len(list((tmp_path / "scratch" / "images64").rglob("*.npy"))) == n + train  # setup filled it, train too
    for name in ("sync", "cold", "warm", "workers"):  # each pass drew its overlays, the background ones too
        assert len(list((tmp_path / "scratch" / f"overlays64_{name}" / "overlays" / "ear").glob("*.png"))) == min(8, n)
    assert list((tmp_path / "scratch" / "wandb64" / "wandb").glob("offline-run-*"))  # the W&B pass really logged
    table = bench_speed.markdown_breakdown({"64": out})
    assert all(f"| {part} |" in table for part in ("decode", "cache_read", "unet", "overlays", "wandb"))


def test_cost_grows_with_size_and_memory_with_the_maps(
    tiny: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_speed, "SIZES", (32, 128))
    monkeypatch.setattr(bench_speed, "MEMORY_IMAGES", (4,))
    scaling = bench_speed.scaling()
    assert scaling["128"]["test_ms_per_image"] > scaling["32"]["test_ms_per_image"]  # 16 times the pixels
    assert scaling["128"]["train_img_per_s"] < scaling["32"]["train_img_per_s"]
    memory = bench_speed.test_memory(*tiny, size=32)
    assert memory["4"]["peak_mb"] >= memory["4"]["rss_before_mb"] > 0
    assert memory["4"]["maps_mb"] == pytest.approx(2 * 4 * 32 * 32 / 2**20)
    path = bench_speed.plot({"scaling": scaling, "memory": memory}, tmp_path / "scaling.png")
    assert Image.open(path).size == (1440, 432)  # three panels, 12 x 3.6 inches at 120 dpi
    reread = {"scaling": dict(sorted(scaling.items())), "memory": memory}  # as speed.json keeps it: "128" < "32"
    assert list(reread["scaling"]) == ["128", "32"]
    assert [size for size, _ in bench_speed.by_number(reread["scaling"])] == [32, 128]


def test_switch_ratios_are_medians_of_interleaved_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_speed, "UNET", {"widths": [8, 16, 32, 64]})
    monkeypatch.setattr(bench_speed, "ROUNDS", 3)
    monkeypatch.setattr(bench_speed.torch, "compile", lambda model: model)  # compiling is timed, not tested here
    throughputs = iter(range(100, 1000, 10))  # GFLOP/s, rising with every measurement
    monkeypatch.setattr(bench_speed, "matmul_gflops", lambda: float(next(throughputs)))
    monkeypatch.setattr(bench_speed, "median_ms", lambda fn, repeats, warmup=0: [fn()] and 5.0)  # 5 ms a call
    out = bench_speed.switches(size=32)
    names = ["eager", "channels_last", "bf16", "channels_last+bf16", "channels_last+compile",
             "channels_last+torchscript_freeze"]  # fmt: skip
    assert list(out["inference_over_bound_rounds"]) == names
    assert out["matmul_gflops_fp32_range"] == [100.0, 100.0 + 10 * (3 * len(names) - 1)]
    macs = out["unet_gmacs"] * 1e9
    for index, name in enumerate(names):  # round r of switch i came right after measurement 6 r + i
        expected = [5.0 / (2 * macs / ((100 + 10 * (6 * r + index)) * 1e9) * 1000) for r in range(3)]
        assert out["inference_over_bound_rounds"][name] == pytest.approx(expected)
        assert out["inference_over_bound"][name] == pytest.approx(expected[1])  # the median
    assert out["train_over_bound"]["eager"] == pytest.approx(5.0 / (3 * out["flop_bound_ms"] * bench_speed.TRAIN_BATCH))
    table = bench_speed.markdown({"machine": "m", "data": "d", "breakdown": {}, "switches": out, "scaling": {},
                                  "memory": {}})  # fmt: skip
    assert "| channels_last+compile |" in table and "median of 3 rounds" in table

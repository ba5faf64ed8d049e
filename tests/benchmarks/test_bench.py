"""The benchmark's helpers (the benchmark itself runs with `make bench`, not in the test suite)."""

import json
from pathlib import Path

from bench import markdown, speed_breakdown
from bench_common import median_ms


def test_median_ms_measures_a_sleep() -> None:
    import time

    assert 4.0 <= median_ms(lambda: time.sleep(0.005), repeats=3, warmup=1) < 50.0


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
    assert "Not measured yet: `make bench-speed`" in text


def test_bench_md_shows_the_test_pass_breakdown_bench_speed_wrote(tmp_path: Path) -> None:
    parts = {f"{part}_ms": 1.5 for part in ("decode", "resize", "cache_read", "masks", "unet", "scoring", "metrics",
                                           "overlays", "overlays_wait", "wandb", "other")}  # fmt: skip
    totals = {"forward_img_per_s": 7.0, "test_first_run_img_per_s": 3.0}
    for key in ("before", "cold_cache", "cached", "workers1"):
        totals |= {f"test_{key}_img_per_s": 5.0, f"test_{key}_over_forward": 0.71, f"test_{key}_forward_share": 0.9}
    (tmp_path / "speed.json").write_text(json.dumps({"breakdown": {"128": {**parts, **totals}}}))
    breakdown = speed_breakdown(tmp_path / "speed.json")
    text = markdown({"machine": "m", "costs": {}, "latency_ms": {}, "ratios": {}, "other": {},
                     "test_pass_breakdown": breakdown})  # fmt: skip
    assert "From `make bench-speed`" in text and "| decode | 1.5 |" in text and "| / forward alone | 0.71 |" in text
    (tmp_path / "speed.json").write_text("{not json")
    assert speed_breakdown(tmp_path / "speed.json") is None and speed_breakdown(tmp_path / "absent.json") is None

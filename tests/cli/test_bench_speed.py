"""``make bench-speed`` on a small generated set with a tiny U-Net: its parts add up and its plot is drawn."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fader_lightning.cli import bench_speed
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
    for part in ("decode", "resize", "masks", "unet", "scoring", "metrics"):
        assert out[f"{part}_ms"] > 0, part
    assert out["test_over_forward"] == pytest.approx(out["test_img_per_s"] / out["forward_img_per_s"])
    assert len(list((tmp_path / "scratch" / "overlays64" / "overlays" / "ear").glob("*.png"))) == min(8, n)
    assert list((tmp_path / "scratch" / "wandb64" / "wandb").glob("offline-run-*"))  # the W&B pass really logged
    table = bench_speed.markdown_breakdown({"64": out})
    assert all(f"| {part} |" in table for part in ("decode", "unet", "overlays", "wandb"))


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

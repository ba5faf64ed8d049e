"""`make bench-peers`: the report, the weights fallback and the EAR row (the full run is `make bench-peers`)."""

import json
import math
from pathlib import Path

import bench_peers as peers
import pytest
import timm
from bench_peers import (
    FROM_SCRATCH,
    NO_INTERNET,
    PRETRAINED,
    RANDOM_ASKED,
    backbone_weights,
    backbones_line,
    default_data,
    markdown,
    pretrained_loads,
    ratios,
    run,
)

from fader_lightning.errors import ConfigError, DataError


def row(train_s, test_ms, rss, image, pixel, pro):
    return {"status": "ok", "train_s": train_s, "test_ms_per_image": test_ms, "peak_rss_mb": rss,
            "image_auroc": image, "pixel_auroc": pixel, "aupro": pro}  # fmt: skip


@pytest.fixture
def report() -> dict:
    rows = {
        "ear": row(200.0, 20.0, 1000.0, 0.96, 0.80, 0.64),
        "ear_fader": row(260.0, 21.0, 1100.0, 0.97, 0.82, 0.70),
        "patchcore": row(50.0, 80.0, 2500.0, 0.48, None, 0.32),  # None: an undefined metric, as JSON stores it
        "draem": {"status": "failed", "error": "boom", "log": "results/peers_logs/draem.log"},
    }
    data = {"train_images": 54, "held_out_normals": 6, "test_images": 83}
    weights = {"ear": FROM_SCRATCH, "ear_fader": FROM_SCRATCH, "patchcore": NO_INTERNET, "draem": FROM_SCRATCH}
    return {
        "machine": {"summary": "2 CPU cores (test)", "load_average": {"start": 0.5, "end": 1.3}},
        "data": {"root": "/data/mvtec_ad", "category": "bottle", "image_size": 128, **data},
        "backbones": NO_INTERNET,
        "weights": weights,
        "epochs": {"ear": 60, "ear_fader": 100, "draem": 2},
        "wall_s": 1800.0,
        "rows": rows,
        "ratios": ratios(rows),
    }


def test_ratios_divide_every_column_by_ears(report: dict) -> None:
    got = report["ratios"]
    assert set(got) == {"ear", "ear_fader", "patchcore"}  # a failed row has no ratios
    assert all(value == 1.0 for value in got["ear"].values())
    assert got["patchcore"]["train_s"] == pytest.approx(0.25)
    assert got["patchcore"]["test_ms_per_image"] == pytest.approx(4.0)
    assert got["patchcore"]["peak_rss_mb"] == pytest.approx(2.5)
    assert got["patchcore"]["image_auroc"] == pytest.approx(0.5)
    assert got["patchcore"]["aupro"] == pytest.approx(0.5)
    assert math.isnan(got["patchcore"]["pixel_auroc"])
    assert got["ear_fader"]["train_s"] == pytest.approx(1.3)


def test_markdown_is_one_table_with_the_ratios(report: dict) -> None:
    text = markdown(report)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4  # heading, rule, one line per row
    assert table[2] == (
        "| EAR | none (trained from scratch) | 200.0 (1.00×) | 20.0 (1.00×) | 1000 (1.00×) | 0.960 (1.00×) "
        "| 0.800 (1.00×) | 0.640 (1.00×) |"
    )
    assert table[4] == (
        "| PatchCore | random init (no internet) | 50.0 (0.25×) | 80.0 (4.00×) | 2500 (2.50×) | 0.480 (0.50×) "
        "| n/a | 0.320 (0.50×) |"
    )
    assert table[5] == "| DRAEM | none (trained from scratch) | failed: see `results/peers_logs/draem.log` |"
    assert "- Backbones: random init (no internet)" in text
    assert "- Epochs: EAR 60, EAR + FADeR 100, DRAEM 2;" in text
    assert "54 training images (6 more normals held out" in text and "30.0 min wall time" in text
    assert "load average 0.5 at the start, 1.3 at the end" in text


def test_backbone_weights_say_where_each_model_starts(monkeypatch) -> None:
    models = ["ear", "patchcore", "padim", "draem"]
    assert backbone_weights(models, "random") == {"ear": FROM_SCRATCH, "patchcore": RANDOM_ASKED,
                                                  "padim": RANDOM_ASKED, "draem": FROM_SCRATCH}  # fmt: skip
    monkeypatch.setattr(peers, "pretrained_loads", lambda backbone: backbone == "resnet18")
    weights = backbone_weights(models, "auto")
    assert weights["patchcore"] == NO_INTERNET and weights["padim"] == PRETRAINED
    assert backbones_line(weights) == "PatchCore: random init (no internet); PaDiM: pretrained (ImageNet)"
    assert backbones_line({"ear": FROM_SCRATCH, "padim": PRETRAINED}) == PRETRAINED


def test_pretrained_loads_falls_back_only_when_the_download_fails(monkeypatch) -> None:
    calls = []

    def offline(name: str, pretrained: bool = False, **kwargs):
        calls.append(pretrained)
        if pretrained:
            raise OSError("cannot reach the hub")
        return object()

    monkeypatch.setattr(timm, "create_model", offline)
    assert pretrained_loads("resnet18") is False and calls == [False, True]
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="Unknown model"):  # a wrong name is not mistaken for "no internet"
        pretrained_loads("no_such_backbone")


def test_default_data_prefers_the_shared_data(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "shared" / "mvtec_ad" / "grid").mkdir(parents=True)
    monkeypatch.setenv("FADER_SHARED_DATA", str(tmp_path / "shared"))
    assert default_data("grid", tmp_path) == (tmp_path / "shared" / "mvtec_ad", "grid")
    with pytest.raises(DataError, match="--root"):
        default_data("cable", tmp_path)


def test_run_needs_the_ear_row_and_known_models(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ear included"):
        run(tmp_path, models=["patchcore"])
    with pytest.raises(ConfigError, match="unknown: riad"):
        run(tmp_path, models=["ear", "riad"])


def test_run_without_anomalib_names_the_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(peers, "installed", lambda package: None)
    with pytest.raises(ConfigError, match="make bench-peers"):
        run(tmp_path, models=["ear", "padim"])


@pytest.mark.slow
def test_ear_row_scores_like_the_projects_own_test(synthetic_mvtec: Path, tmp_path: Path) -> None:
    report = run(tmp_path, root=synthetic_mvtec, category="synth_object", image_size=64, models=["ear"],
                 epochs={"ear": 1})  # fmt: skip
    ear = report["rows"]["ear"]
    assert ear["status"] == "ok" and ear["epochs"] == 1 and ear["peak_rss_mb"] > 100
    assert ear["train_images"] + ear["held_out_normals"] == 12 and ear["test_images"] == 4 + 2 * 3
    for key in ("image_auroc", "pixel_auroc", "aupro"):  # the run's own test pass, stored as float16
        assert ear[key] == pytest.approx(ear["own_metrics"][key], abs=1e-3)
    assert report["ratios"]["ear"]["train_s"] == 1.0
    written = json.loads((tmp_path / "peers.json").read_text())
    assert written["rows"]["ear"]["train_s"] == ear["train_s"]
    assert "| EAR | none (trained from scratch) |" in (tmp_path / "peers.md").read_text()


@pytest.mark.slow
def test_a_peer_row_on_the_same_images(synthetic_mvtec: Path, tmp_path: Path) -> None:
    pytest.importorskip("anomalib", reason="anomalib is installed only in .venv-peers (make bench-peers)")
    report = run(tmp_path, root=synthetic_mvtec, category="synth_object", image_size=64, models=["ear", "padim"],
                 epochs={"ear": 1}, backbones="random")  # fmt: skip
    padim = report["rows"]["padim"]
    assert padim["status"] == "ok" and report["weights"]["padim"] == RANDOM_ASKED
    assert padim["test_images"] == report["rows"]["ear"]["test_images"]
    assert 0.0 <= padim["pixel_auroc"] <= 1.0

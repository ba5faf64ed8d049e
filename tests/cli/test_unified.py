"""One model for several categories, as a user runs it: a sweep of one-class jobs and the unified job of the same
categories, then one aggregated table with a column group per setting, then ``fader-eval`` of the unified model."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fader_lightning.aggregate import aggregate
from fader_lightning.aggregate.reading import collect
from fader_lightning.api import Detector
from fader_lightning.errors import CheckpointError, ConfigError, DataError

CATEGORIES = ["synth_texture", "synth_object"]
RUN = ["stage=both", "data.image_size=48", "data.n_train=16", "data.n_test_good=4", "data.n_test_defect=3",
       "data.size=48", "model.unet.widths=[8,16,32,64]", "trainer.max_epochs=6", "fader.trainer.max_epochs=2",
       "logger=none", "trainer.enable_progress_bar=false", "callbacks.overlays.num_samples=2"]  # fmt: skip


def _run(tmp_path: Path, module: str, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", f"fader_lightning.cli.{module}", *overrides, f"paths.data_dir={tmp_path / 'data'}",
           f"paths.log_dir={tmp_path / 'logs'}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("unified")
    _run(tmp_path, "train", "-m", f"data.category={','.join(CATEGORIES)},[{','.join(CATEGORIES)}]", *RUN)
    return (tmp_path / "logs" / "train" / "latest").resolve()


def _unified_entry(sweep: Path) -> tuple[Path, dict]:
    job = next(p for p in sweep.iterdir() if "+" in p.name)
    return job, json.loads((job / "metrics.json").read_text())


def test_the_unified_job_tests_each_category_both_ways(sweep: Path) -> None:
    job, results = _unified_entry(sweep)
    assert job.name == "2_synthetic-synth_texture+synth_object-checkerboard-s0"
    for stage in ("ear", "fader"):
        entry = results[stage]
        assert entry["status"] == "ok" and entry["categories"] == CATEGORIES
        assert set(entry["per_category"]) == set(CATEGORIES)
        per_category = entry["per_category"]
        for key in ("metrics", "metrics_category_free"):  # the means are the means of the rows
            for metric, value in entry[key].items():
                assert value == pytest.approx(sum(per_category[c][key][metric] for c in CATEGORIES) / 2, nan_ok=True)
        for category in CATEGORIES:
            result = per_category[category]
            assert result["metrics"]["image_auroc"] > 0.7  # one model learned both categories
            assert result["test_images"] == 10 and result["calibration"]["split"] == "held_out"
            # each category calibrated on its own held-out normals, the category-free thresholds on all of them
            assert result["calibration"]["normal_images"] < entry["calibration"]["normal_images"]
            assert result["calibration"]["image_threshold"] != entry["calibration"]["image_threshold"]
        assert entry["metrics_pooled"]["image_auroc"] > 0.5 and entry["test_images"] == 20
    overlays = job / "overlays" / "ear"
    assert {p.name for p in overlays.iterdir()} == {"pooled", *CATEGORIES}  # one folder per pass that is shown
    assert len(list((overlays / "synth_object").glob("*.png"))) == 2


def test_one_table_holds_one_class_and_unified_columns(sweep: Path, tmp_path: Path) -> None:
    rows = collect([sweep])
    assert not [row for row in rows if row.status != "ok"]  # the unified job is no missing job of the grid
    paths = aggregate([sweep], "unified", out_root=tmp_path)
    lines = paths["markdown"].read_text().splitlines()
    header = lines[0]
    for setting in ("one-class", "unified", "unified-category-free"):
        assert f"checkerboard [training={setting}] EAR I-AUROC" in header
    assert [line.split("|")[1].strip() for line in lines[2:5]] == ["synth_object", "synth_texture", "mean"]
    _, results = _unified_entry(sweep)
    column = header.split("|").index(" checkerboard [training=unified] EAR I-AUROC ")
    shown = [float(lines[row].split("|")[column]) for row in (2, 3, 4)]
    per_category = results["ear"]["per_category"]
    expected = [100 * per_category[c]["metrics"]["image_auroc"] for c in ("synth_object", "synth_texture")]
    assert shown[:2] == pytest.approx(expected, abs=0.05)
    assert shown[2] == pytest.approx(sum(expected) / 2, abs=0.1)


def test_eval_of_the_unified_model_repeats_its_figures(sweep: Path, tmp_path: Path) -> None:
    job, results = _unified_entry(sweep)
    checkpoint = job / "checkpoints" / "ear" / "last.ckpt"
    out = tmp_path / "eval"
    _run(tmp_path, "evaluate", f"ckpt_path={checkpoint}", f"hydra.run.dir={out}")
    again = json.loads((out / "metrics.json").read_text())["ear"]
    trained = results["ear"]
    for category in CATEGORIES:  # same data, same model, same calibration: the same metrics
        for key in ("metrics", "metrics_category_free"):
            got, want = again["per_category"][category][key], trained["per_category"][category][key]
            assert all(math.isclose(got[m], want[m], abs_tol=1e-6) or math.isnan(want[m]) for m in want)


def test_a_malformed_per_category_record_is_named(sweep: Path, tmp_path: Path) -> None:
    job, results = _unified_entry(sweep)
    copy = tmp_path / "copy" / job.name
    copy.mkdir(parents=True)
    (copy / ".hydra").mkdir()
    (copy / ".hydra" / "overrides.yaml").write_text((job / ".hydra" / "overrides.yaml").read_text())
    results["ear"]["per_category"] = {"synth_object": ["not", "a", "mapping"]}
    (copy / "metrics.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match=r"the 'ear' entry's per_category is not \{category: \{metrics"):
        collect([copy.parent])


def test_the_checkpoint_keeps_each_categorys_scoring_for_eval_and_deployment(sweep: Path, tmp_path: Path) -> None:
    job, results = _unified_entry(sweep)
    checkpoint = job / "checkpoints" / "ear" / "last.ckpt"
    trained = results["ear"]["per_category"]["synth_object"]
    detector = Detector.from_checkpoint(checkpoint, device="cpu", category="synth_object")
    assert detector.image_threshold == pytest.approx(trained["calibration"]["image_threshold"], rel=1e-6)
    shared = Detector.from_checkpoint(checkpoint, device="cpu")
    assert shared.image_threshold == pytest.approx(results["ear"]["calibration"]["image_threshold"], rel=1e-6)
    with pytest.raises(ConfigError, match="category='bottle' has no scoring state in this model; its categories: "
                                          "synth_texture, synth_object"):  # fmt: skip
        Detector.from_checkpoint(checkpoint, device="cpu", category="bottle")
    out = tmp_path / "eval_one"
    _run(tmp_path, "evaluate", f"ckpt_path={checkpoint}", "data.category=synth_object", f"hydra.run.dir={out}")
    alone = json.loads((out / "metrics.json").read_text())["ear"]
    assert alone["category_scoring"] == "synth_object" and "per_category" not in alone
    for metric in ("image_auroc", "pixel_auroc", "aupro", "image_fpr_at_threshold", "image_tpr_at_threshold"):
        assert alone["metrics"][metric] == pytest.approx(trained["metrics"][metric], abs=1e-6, nan_ok=True)


def test_a_malformed_per_category_scoring_in_a_checkpoint_is_refused(sweep: Path, tmp_path: Path) -> None:
    job, _ = _unified_entry(sweep)
    checkpoint = torch.load(job / "checkpoints" / "ear" / "last.ckpt", weights_only=True)
    assert set(checkpoint["category_scoring"]) == set(CATEGORIES)
    checkpoint["category_scoring"]["synth_object"] = {"map_mean": [1.0]}
    damaged = tmp_path / "damaged.ckpt"
    torch.save(checkpoint, damaged)
    with pytest.raises(CheckpointError, match=r"category_scoring record that is not \{category: \{map_mean"):
        Detector.from_checkpoint(damaged, device="cpu", category="synth_object")

"""The calibration benchmark's tabulation, on hand-made evaluation sweeps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("calibration_table", REPO_ROOT / "benchmarks" / "calibration_table.py")
table_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table_module)

FPRS = {("bottle", 0): 0.10, ("bottle", 1): 0.25, ("grid", 0): 0.0}


def fake_sweeps(root: Path) -> list[Path]:
    """Three checkpoints (two runs of a sweep, one single run) and two methods' evaluation sweeps of them."""
    checkpoints = [
        root / "multi" / "0_mvtecad-bottle-checkerboard-s0" / "checkpoints" / "ear" / "last.ckpt",
        root / "multi" / "1_mvtecad-bottle-checkerboard-s1" / "checkpoints" / "ear" / "last.ckpt",
        root / "runs" / "mvtecad-grid-checkerboard-s0" / "2026-01-01_00-00-00" / "checkpoints" / "ear" / "last.ckpt",
    ]
    for index, checkpoint in enumerate(checkpoints):
        checkpoint.parent.mkdir(parents=True)
        checkpoint.write_bytes(b"")
        category, seed = table_module.describe(checkpoint)["category"], table_module.describe(checkpoint)["seed"]
        job = root / "out" / "max@0.05" / f"{index}_run-ear"
        job.mkdir(parents=True)
        metrics = {key: 0.5 for key in table_module.FIELDS} | {"image_fpr_at_threshold": FPRS[category, seed]}
        calibration = {"normal_images": 6 - 4 * (category == "grid"), "image_threshold": 2.0 + index}
        (job / "metrics.json").write_text(json.dumps({"ear": {"status": "ok", "metrics": metrics,
                                                               "calibration": calibration}}))  # fmt: skip
        failed = root / "out" / "quantile@0.05" / f"{index}_run-ear"
        failed.mkdir(parents=True)
        (failed / "eval.log").write_text("[time][fader_lightning.cli.job][ERROR] - ConfigError: needs 19, has 6\n")
    return checkpoints


def test_rows_means_and_failures(tmp_path: Path) -> None:
    checkpoints = fake_sweeps(tmp_path)
    assert table_module.checkpoints([tmp_path / "multi", tmp_path / "runs" / "mvtecad-grid-checkerboard-s0" /
                                     "2026-01-01_00-00-00"]) == checkpoints  # fmt: skip
    rows = table_module.rows(checkpoints, ["max@0.05", "quantile@0.05"], tmp_path / "out")
    assert [(row["category"], row["seed"], row["method"]) for row in rows][:3] == [
        ("bottle", 0, "max"), ("bottle", 1, "max"), ("grid", 0, "max")
    ]  # fmt: skip
    assert all(row["error"] == "needs 19, has 6" for row in rows[3:])
    means = {(entry["category"], entry["method"]): entry for entry in table_module.summary(rows)}
    bottle = means["bottle", "max"]
    assert bottle["image_fpr_at_threshold"] == pytest.approx(np.mean([0.10, 0.25]))
    assert bottle["image_fpr_at_threshold_std"] == pytest.approx(np.std([0.10, 0.25]))
    assert means["all", "max"]["image_fpr_at_threshold"] == pytest.approx(np.mean(list(FPRS.values())))
    assert means["all", "quantile"]["measured"] == 0 and means["all", "quantile"]["image_fpr_at_threshold"] is None
    text = table_module.markdown(rows, table_module.summary(rows))
    assert "| bottle | max | 0.05 | 2/2 | 0.175 ± 0.075 |" in text
    assert "| grid | 0 | quantile | 0.05 | | | needs 19, has 6 |" in text
    assert "| grid | 0 | max | 0.05 | 2 | 4 | 0.000 |" in text


def test_a_folder_without_checkpoints_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=rf"--runs {tmp_path} holds no checkpoints/ear/last.ckpt"):
        table_module.checkpoints([tmp_path])


def test_method_specs() -> None:
    assert table_module.parse("max@0.05") == ("max", 0.05, 0.0)
    assert table_module.parse("seen_gap@0.1+1.5") == ("seen_gap", 0.1, 1.5)

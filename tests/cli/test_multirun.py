"""A real multirun on the joblib launcher: 2 categories x 2 masking methods (plus one broken job), 2 jobs at once,
then aggregation; with no ``hydra.sweep.dir``, as a user types it."""

import csv
import json
import subprocess
import sys
from pathlib import Path

from fader_lightning.aggregate import aggregate
from fader_lightning.utils.threads import available_cores


def test_multirun_with_a_failing_job_then_aggregate(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "fader_lightning.cli.train", "-m",
           "data.category=synth_texture,synth_object,no_such_category", "masking=saliency,checkerboard",
           "stage=both", "data.image_size=32", "data.n_train=8", "data.n_test_good=3", "data.n_test_defect=2",
           "data.size=48", "model.unet.widths=[8,16,32,64]", "trainer.max_epochs=1", "fader.trainer.max_epochs=1",
           "logger=none", "trainer.enable_progress_bar=false",
           f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}",
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the sweep went to logs/<task>/multiruns/<time>/, and logs/train/latest links to it
    latest = tmp_path / "logs" / "train" / "latest"
    sweep = latest.resolve()
    assert latest.is_symlink() and sweep.parent == (tmp_path / "logs" / "train" / "multiruns").resolve()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(jobs) == 6 and len({p.resolve() for p in jobs}) == 6
    # each job's folder is named by its number and what it is
    assert {p.name for p in jobs} >= {
        "0_synthetic-synth_texture-saliency-s0",
        "3_synthetic-synth_object-checkerboard-s0",
    }
    statuses = {}
    for job in jobs:
        entry = json.loads((job / "metrics.json").read_text())
        key = (entry["ear"]["category"], entry["ear"]["masking"])
        statuses[key] = (entry["ear"]["status"], entry["fader"]["status"])
        for stage in ("ear", "fader"):  # each job took its share of the cores, read from n_jobs alone
            threads = entry[stage]["threads"]
            assert threads["jobs_at_once"] == 2 and threads["cores"] == available_cores()
            assert threads["threads"] == max(1, available_cores() // 2) and threads["num_workers"] == 0
    assert statuses[("no_such_category", "saliency")] == ("failed", "failed")
    assert statuses[("synth_object", "checkerboard")] == ("ok", "ok")
    paths = aggregate([sweep], "smoke", out_root=tmp_path / "results")
    table = paths["markdown"].read_text()
    no_such = next(line for line in table.splitlines() if line.startswith("| no_such_category"))
    assert no_such.count("failed") == 8  # 2 methods x 2 stages x 2 metrics
    synth = next(line for line in table.splitlines() if line.startswith("| synth_object"))
    assert "failed" not in synth and "—" not in synth
    assert paths["chart"].stat().st_size > 0


SWEEP = ["stage=ear", "data.image_size=32", "data.n_train=8", "data.n_test_good=3", "data.n_test_defect=2",
         "data.size=48", "model.unet.widths=[8,16,32,64]", "trainer.max_epochs=1", "logger=none",
         "callbacks.overlays.num_samples=0", "trainer.enable_progress_bar=false"]  # fmt: skip


def test_a_refused_job_or_sweep_rewrites_no_record(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "fader_lightning.cli.train", *args, *SWEEP, f"paths.data_dir={tmp_path / 'data'}",
               f"paths.log_dir={tmp_path / 'logs'}"]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)

    first = run("-m", "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stderr[-3000:]
    jobs = sorted(sweep.glob("*_synthetic-*"))
    files = [*(path for job in jobs for path in (*(job / ".hydra").iterdir(), job / "metrics.json")),
             sweep / "multirun.yaml"]  # fmt: skip
    records = {path: path.stat().st_mtime_ns for path in files}
    assert len(jobs) == 2 and len(records) == 9
    # another sweep into the same folder: refused before Hydra writes its grid
    other = run("-m", "seed=2,3", f"hydra.sweep.dir={sweep}")
    assert other.returncode == 1 and "ConfigError: sweep folder" in other.stderr and "Traceback" not in other.stderr
    # the same sweep again completes it: its finished jobs are refused by their folders and rewrite nothing
    again = run("-m", "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert again.returncode == 0 and (again.stdout + again.stderr).count("already holds a run") == 2
    # a single run refused by its folder
    single = run("seed=5", f"hydra.run.dir={jobs[0]}")
    assert single.returncode == 1 and "already holds a run" in single.stdout + single.stderr
    assert {path: path.stat().st_mtime_ns for path in records if path.name != "multirun.yaml"} == {
        path: stamp for path, stamp in records.items() if path.name != "multirun.yaml"
    }
    assert "seed=5" not in (jobs[0] / ".hydra/overrides.yaml").read_text()
    assert "seed=0,1" in (sweep / "multirun.yaml").read_text()
    table = aggregate([sweep], "twice", out_root=tmp_path / "results")["csv"]
    rows = [row for row in csv.DictReader(table.open()) if row["stage"] == "ear"]  # the sweep trains stage 1 only
    assert rows and {row["status"] for row in rows} == {"ok"} and {row["seeds"] for row in rows} == {"0;1"}

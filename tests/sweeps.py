"""Fake sweeps for the aggregate tests (fixtures ``complete``, ``incomplete``, ``ablation``, a plugin of the root
conftest): job folders with ``metrics.json`` as ``fader-train -m`` leaves them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

METRICS = ("image_auroc", "pixel_auroc", "aupro")
LABELS = {"image_auroc": "I-AUROC", "pixel_auroc": "P-AUROC", "aupro": "AUPRO"}
STAGE_LABELS = {"ear": "EAR", "fader": "EAR+FADeR"}


class Sweep:
    """Writes job folders as ``fader-train -m`` leaves them and remembers what it wrote."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(seed)
        self.values: dict[tuple[str, str, str], list[dict[str, float]]] = {}
        self.runs: dict[tuple[str, str, str], list[tuple[str, str]]] = {}  # (run_dir, commit)
        self.variant_values: dict[tuple[str, str, str, str], list[dict[str, float]]] = {}  # key + " ".join(extra)
        self.jobs = 0

    def job(
        self,
        category: str,
        masking: str,
        seed: int = 0,
        stages: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> Path:
        """One job; ``stages`` maps stage -> ``ok``/``failed`` (``None``: crashed before writing metrics.json).

        ``extra``: further overrides of the job, e.g. ``("fader.patch_size=4",)``.
        """
        job = self.root / str(self.jobs)
        self.jobs += 1
        overrides = [f"data.category={category}", f"masking={masking}", f"seed={seed}", "stage=both", *extra]
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if stages is None:
            return job
        commit = f"commit{self.jobs:03d}"
        results = {}
        for stage, status in stages.items():
            entry = {
                "stage": stage, "status": status, "dataset": "MVTecADDataModule", "category": category,
                "masking": masking, "fill": "mosaic", "fader": stage == "fader", "seed": seed, "run_dir": str(job),
                "overrides": overrides, "config": {"seed": seed}, "environment": {"git_commit": commit},
            }  # fmt: skip
            if status == "ok":
                entry["metrics"] = {metric: float(self.rng.uniform(0.6, 1.0)) for metric in METRICS}
                self.values.setdefault((category, masking, stage), []).append(entry["metrics"])
                variant = " ".join(extra)
                self.variant_values.setdefault((category, masking, stage, variant), []).append(entry["metrics"])
            else:
                entry["error"] = "DataError: mask folder /data/x is missing"
            self.runs.setdefault((category, masking, stage), []).append((str(job.resolve()), commit))
            results[stage] = entry
        (job / "metrics.json").write_text(json.dumps(results))
        return job

    def multirun(self, categories: str, maskings: str, params: dict[str, str] | None = None) -> None:
        config = {
            "seed": 0, "stage": "ear", "data": {"category": "bottle"}, "masking": {"name": "saliency"},
            "hydra": {"sweeper": {"params": params},
                      "overrides": {"task": [f"data.category={categories}", f"masking={maskings}", "stage=both"]}},
        }  # fmt: skip
        (self.root / "multirun.yaml").write_text(yaml.safe_dump(config))


BOTH_OK = {"ear": "ok", "fader": "ok"}


@pytest.fixture
def complete(tmp_path: Path) -> tuple[list[Path], Sweep]:
    """2 categories × 2 masking methods × 2 stages, seed 0 in a sweep, seed 1 of bottle/saliency in a single run."""
    sweep = Sweep(tmp_path / "sweep_a")
    sweep.multirun("bottle,grid", "saliency,checkerboard")
    for category in ("bottle", "grid"):
        for masking in ("saliency", "checkerboard"):
            sweep.job(category, masking, stages=BOTH_OK)
    extra = Sweep(tmp_path / "run_b", seed=1)
    extra.jobs = 7  # its own job number and commit
    extra.job("bottle", "saliency", seed=1, stages=BOTH_OK)
    for key, values in extra.values.items():
        sweep.values[key] += values
        sweep.runs[key] += extra.runs[key]
    return [sweep.root, extra.root], sweep


@pytest.fixture
def incomplete(tmp_path: Path) -> Sweep:
    """bottle/checkerboard failed in stage 1, grid/saliency crashed before writing, screw never started."""
    sweep = Sweep(tmp_path / "sweep")
    sweep.multirun("bottle,grid,screw", "saliency,checkerboard")
    sweep.job("bottle", "saliency", stages=BOTH_OK)
    sweep.job("bottle", "checkerboard", stages={"ear": "failed"})
    sweep.job("grid", "saliency")
    sweep.job("grid", "checkerboard", stages=BOTH_OK)
    return sweep


@pytest.fixture
def ablation(tmp_path: Path) -> Sweep:
    """A patch-size ablation: 2 categories × fader.patch_size 4,8 × seeds 0,1, every job with a constant override."""
    sweep = Sweep(tmp_path / "ablation")
    sweep.multirun("bottle,grid", "saliency", params={"fader.patch_size": "4,8", "seed": "0,1"})
    for category in ("bottle", "grid"):
        for patch_size in (4, 8):
            for seed in (0, 1):
                extra = (f"fader.patch_size={patch_size}", "data.image_size=128", "reuse_stage1=true")
                sweep.job(category, "saliency", seed=seed, stages=BOTH_OK, extra=extra)
    return sweep


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return {cells[0]: dict(zip(split[0], cells, strict=True)) for cells in split[2:]}


def read_csv(path: Path) -> dict[tuple[str, str, str, str], dict[str, str]]:
    with path.open(newline="") as handle:
        return {(r["category"], r["masking"], r["stage"], r["metric"]): r for r in csv.DictReader(handle)}


def read_variant_csv(path: Path) -> dict[tuple[str, str, str, str, str], dict[str, str]]:
    with path.open(newline="") as handle:
        return {(r["category"], r["masking"], r["variant"], r["stage"], r["metric"]): r for r in csv.DictReader(handle)}


def label(masking: str, stage: str, metric: str) -> str:
    return f"{masking} {STAGE_LABELS[stage]} {LABELS[metric]}"

"""Calibration methods on trained models: the test FPR and TPR at each method's thresholds (``docs/CALIBRATION.md``).

Usage:
    python benchmarks/calibration_table.py --runs RUN [RUN ...] --out results/calibration

Each ``RUN`` is a ``fader-train`` run folder, or a multirun folder holding them, with ``checkpoints/ear/last.ckpt``.
For each method of ``--methods`` (``name@target_fpr``, or ``name@target_fpr+margin``) it runs one ``fader-eval -m``
sweep over every checkpoint, which re-calibrates the thresholds on the checkpoint's held-out normals by that method
(never on test labels) and tests at them. Then it writes ``calibration.md`` and ``calibration.json``: one row per
category, seed and method, and the means per category and method. A method that needs more held-out normals than a
model has is reported with the reason ``fader-eval`` gave.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METHODS = ("max@0.05", "quantile@0.05", "quantile@0.2", "gaussian@0.05", "seen_gap@0.05")
"""The methods measured by default, ``name@target_fpr[+margin]``."""
FIELDS = ("image_fpr_at_threshold", "image_tpr_at_threshold", "image_auroc", "pro_at_threshold")
"""The test metrics tabulated per model."""
RUN_NAME = re.compile(r"-(?P<category>[^-]+)-(?P<masking>[^-]+)-s(?P<seed>\d+)$")
"""``<dataset>-<category>-<masking>-s<seed>``: a training run's name (its folder's, or ``<num>_`` and it in a sweep)."""


def checkpoints(runs: Sequence[Path]) -> list[Path]:
    """The stage-1 checkpoints of run folders (or of the jobs of multirun folders), sorted.

    Args:
        runs: Run or multirun folders.

    Returns:
        ``<run>/checkpoints/ear/last.ckpt`` files.

    Raises:
        SystemExit: When a folder holds none.
    """
    found = []
    for run in runs:
        files = sorted(run.glob("checkpoints/ear/last.ckpt")) or sorted(run.glob("*/checkpoints/ear/last.ckpt"))
        if not files:
            raise SystemExit(f"--runs {run} holds no checkpoints/ear/last.ckpt (nor do its sub-folders)")
        found += files
    return found


def describe(checkpoint: Path) -> dict[str, Any]:
    """Category, masking and seed of a checkpoint, from its run folder's name.

    Args:
        checkpoint: ``<run>/checkpoints/ear/last.ckpt``.

    Returns:
        ``{"category", "masking", "seed"}``.
    """
    names = (checkpoint.parents[2].name, checkpoint.parents[3].name)  # a multirun job, or runs/<run_name>/<time>
    match = next((found for found in map(RUN_NAME.search, names) if found), None)
    if match is None:
        raise SystemExit(f"{checkpoint}: its run folder is not named <dataset>-<category>-<masking>-s<seed>")
    return {**match.groupdict(), "seed": int(match["seed"])}


def parse(method: str) -> tuple[str, float, float]:
    """``name@target_fpr[+margin]`` as its calibration settings.

    Args:
        method: The spec.

    Returns:
        Name, target false-positive rate and margin.
    """
    name, rest = method.split("@")
    target, _, margin = rest.partition("+")
    return name, float(target), float(margin or 0.0)


def sweep(files: Sequence[Path], method: str, out: Path, evaluate: str) -> None:
    """Evaluate every checkpoint with one calibration method (one ``fader-eval -m`` sweep).

    Args:
        files: The checkpoints.
        method: ``name@target_fpr[+margin]``.
        out: The sweep folder.
        evaluate: The ``fader-eval`` executable.
    """
    name, target, margin = parse(method)
    command = [evaluate, "-m", "ckpt_path=" + ",".join(str(path) for path in files), f"calibration.method={name}",
               f"calibration.target_fpr={target}", f"calibration.margin={margin}", "logger=csv",
               "callbacks.overlays.num_samples=0", f"hydra.sweep.dir={out}"]  # fmt: skip
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL)


def job_result(job: Path) -> dict[str, Any]:
    """The test metrics and calibration of one evaluation job, or the reason it failed.

    Args:
        job: The job folder.

    Returns:
        ``{"metrics": ..., "calibration": ...}`` or ``{"error": ...}``.
    """
    results = job / "metrics.json"
    if results.is_file():
        entry = json.loads(results.read_text())["ear"]
        if entry.get("status") == "ok":
            return {"metrics": {key: entry["metrics"][key] for key in FIELDS}, "calibration": entry["calibration"]}
    logs = [line for path in job.glob("*.log") for line in path.read_text().splitlines() if "Error:" in line]
    return {"error": logs[-1].split("Error: ", 1)[1] if logs else "no result"}


def rows(files: Sequence[Path], methods: Sequence[str], out: Path) -> list[dict[str, Any]]:
    """One row per checkpoint and method, from the evaluation sweeps in ``out``.

    Args:
        files: The checkpoints, in sweep order.
        methods: The methods.
        out: The folder holding one sweep folder per method.

    Returns:
        Rows with the checkpoint's description, the method (with its margin), its target and :func:`job_result`.
    """
    table = []
    for method in methods:
        jobs = {int(job.name.split("_", 1)[0]): job for job in (out / method).iterdir() if job.is_dir()}
        name, target, margin = parse(method)
        label = name if not margin else f"{name} + {margin:g} std"
        for index, checkpoint in enumerate(files):
            result = job_result(jobs[index]) if index in jobs else {"error": "not run"}
            table.append({**describe(checkpoint), "method": label, "target_fpr": target, **result})
    return table


def summary(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means and seed spreads (population standard deviation) per category and method, then over categories.

    Args:
        table: :func:`rows`.

    Returns:
        One entry per (category, method, target) and per (``all``, method, target) over the models measured.
    """
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for row in table:
        for category in (row["category"], "all"):
            groups.setdefault((category, row["method"], row["target_fpr"]), []).append(row)
    out = []
    for (category, method, target), members in groups.items():
        measured = [row["metrics"] for row in members if "metrics" in row]
        entry = {"category": category, "method": method, "target_fpr": target, "models": len(members),
                 "measured": len(measured)}  # fmt: skip
        for key in FIELDS:
            values = [metrics[key] for metrics in measured]
            entry[key] = statistics.fmean(values) if values else None
            entry[key + "_std"] = statistics.pstdev(values) if len(values) > 1 else None
        out.append(entry)
    return out


def cell(value: float | None, spread: float | None = None) -> str:
    """A table cell: three decimals, ``± spread`` when given, ``—`` when missing."""
    if value is None:
        return "—"
    return f"{value:.3f}" + (f" ± {spread:.3f}" if spread is not None else "")


def markdown(table: Sequence[dict[str, Any]], means: Sequence[dict[str, Any]]) -> str:
    """The two tables as Markdown.

    Args:
        table: :func:`rows`.
        means: :func:`summary`.

    Returns:
        The text.
    """
    lines = ["| category | method | target FPR | models | test FPR | test TPR | image AUROC | PRO at threshold |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for entry in means:
        lines.append(
            f"| {entry['category']} | {entry['method']} | {entry['target_fpr']:g} | "
            f"{entry['measured']}/{entry['models']} | "
            + " | ".join(cell(entry[key], entry[key + "_std"]) for key in FIELDS)
            + " |"
        )
    lines += [
        "",
        "| category | seed | method | target FPR | held-out normals | image threshold | test FPR | test TPR "
        "| image AUROC | PRO at threshold |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    counts = {(row["category"], row["seed"]): row["calibration"]["normal_images"] for row in table
              if "normal_images" in row.get("calibration", {})}  # fmt: skip
    for row in table:
        head = f"| {row['category']} | {row['seed']} | {row['method']} | {row['target_fpr']:g} |"
        if "error" in row:
            lines.append(f"{head} | | {row['error']} | | | |")
            continue
        calibration = row["calibration"]  # kept from the checkpoint: its count is another method's of that model
        count = calibration.get("normal_images", counts.get((row["category"], row["seed"]), "?"))
        lines.append(f"{head} {count} | {calibration['image_threshold']:.4g} | "
                     + " | ".join(cell(row["metrics"][key]) for key in FIELDS) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sweeps (unless ``--tabulate-only``) and write the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="fader-train run or multirun folders")
    parser.add_argument("--out", type=Path, default=Path("results/calibration"), help="where sweeps and tables go")
    parser.add_argument("--methods", default=",".join(METHODS), help="name@target_fpr, comma-separated")
    parser.add_argument("--tabulate-only", action="store_true", help="tabulate the sweeps already in --out")
    args = parser.parse_args(argv)
    files, methods = checkpoints(args.runs), args.methods.split(",")
    evaluate = str(Path(sys.executable).with_name("fader-eval"))
    for method in methods:
        if not args.tabulate_only:
            sweep(files, method, (args.out / method).resolve(), evaluate)
    table = rows(files, methods, args.out)
    means = summary(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps({"rows": table, "means": means}, indent=2) + "\n")
    (args.out / "calibration.md").write_text(markdown(table, means))
    print(markdown(table, means))


if __name__ == "__main__":
    main()

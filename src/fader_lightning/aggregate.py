"""``fader-aggregate``: turn training sweeps into the paper's tables, a chart and a provenance record.

Every job of a sweep (``fader-train -m ...``) leaves ``metrics.json`` (one entry per stage) next to its ``.hydra/``
folder. This module finds the jobs, groups them by (category, masking method, stage), averages the seeds of a group
(mean ± *sample* standard deviation, ``ddof=1``, with n) and writes, under ``<out>/<name>/``:

* ``table.md`` and ``table.tex``: the paper's layout, categories × masking method × {EAR, EAR+FADeR} × metric, in %,
* ``table.csv``: tidy, one line per category × masking × stage × metric, with the run folders, seeds and commits,
* ``chart.png``: image AUROC per category, EAR vs EAR+FADeR for each masking method,
* ``provenance.json``: for each cell, every run it came from (folder, seed, status, commit, overrides, error).

Nothing is dropped: a failed job shows as ``failed``, a job without results as ``—``, and a cell or mean built from an
incomplete set of runs is marked ``*``. A sweep's ``multirun.yaml`` gives the expected grid, so jobs that never
started still show up as missing cells.

Examples:
    fader-aggregate logs/train/multiruns/2024-05-01_10-00-00-000000 --name mvtec_main --aupro
    fader-aggregate sweep_a sweep_b --name ablation --wandb
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import netrc
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFont

from fader_lightning.errors import ConfigError, DataError, FaderError
from fader_lightning.results import METRICS_FILE, load_results
from fader_lightning.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

OK, FAILED, MISSING, PARTIAL = "ok", "failed", "missing", "partial"
NOT_APPLICABLE = "not_applicable"  # e.g. FADeR on the multi-pass random_multi baseline
UNKNOWN = "?"
STAGE_LABELS = {"ear": "EAR", "fader": "EAR+FADeR"}
# the stages a job runs for each value of ``stage=`` (as in fader_lightning.train, which imports torch)
JOB_STAGES = {"ear": ("ear",), "fader": ("fader",), "both": ("ear", "fader")}
DEFAULT_STAGE = "ear"
METRIC_LABELS = {"image_auroc": "I-AUROC", "pixel_auroc": "P-AUROC", "aupro": "AUPRO"}
DEFAULT_METRICS = ("image_auroc", "pixel_auroc")
# where each axis of the grid lives: (Hydra override key, dotted path in the composed config)
AXES = {
    "category": ("data.category", "data.category"),
    "masking": ("masking", "masking.name"),
    "seed": ("seed", "seed"),
    "stage": ("stage", "stage"),
}
STD_NOTE = "sample standard deviation over seeds (ddof=1); empty when n < 2"
LEGEND = (
    "Values in %: mean±std over seeds (sample std, ddof=1) when n>1. — no result, failed: every run failed, "
    "n/a: not applicable (FADeR on a multi-pass mask), "
    "* incomplete (some runs or categories missing or failed; see table.csv and provenance.json). "
    "mean: mean over categories of the per-category means."
)
CSV_FIELDS = (
    "category",
    "masking",
    "stage",
    "metric",
    "mean",
    "std",
    "n",
    "status",
    "run_dirs",
    "seeds",
    "git_commits",
)
WANDB_PROJECT = "fader-lightning"
WANDB_URL = "https://api.wandb.ai"


@dataclass(frozen=True)
class Row:
    """One stage of one job, or one expected job that left no results.

    Attributes:
        category: Dataset category (``?`` when unknown).
        masking: Masking method (``?`` when unknown).
        stage: ``ear`` or ``fader``.
        status: ``ok``, ``failed`` or ``missing``.
        run_dir: The job folder (the sweep folder for a job that never started).
        seed: Training seed.
        git_commit: Commit the job ran at.
        overrides: The job's Hydra overrides.
        metrics: Test metrics (fractions, not percent).
        error: Why the stage failed or is missing.
    """

    category: str
    masking: str
    stage: str
    status: str
    run_dir: str
    seed: int | None = None
    git_commit: str | None = None
    overrides: tuple[str, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def value(self, metric: str) -> float | None:
        """The metric's finite value when the stage succeeded, else ``None``."""
        value = self.metrics.get(metric) if self.status == OK else None
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class Stat(NamedTuple):
    """Mean ± sample std of one metric over the n runs that produced it, and the status of the group."""

    mean: float | None
    std: float | None
    n: int
    status: str


def _status(n_ok: int, n_rows: int, any_failed: bool, all_not_applicable: bool = False) -> str:
    if all_not_applicable:
        return NOT_APPLICABLE
    if n_ok and n_ok == n_rows:
        return OK
    if n_ok:
        return PARTIAL
    return FAILED if any_failed else MISSING


def summarize(rows: Sequence[Row], metric: str) -> Stat:
    """Mean, sample std (ddof=1) and count of a metric over the runs that produced it.

    Args:
        rows: Runs of one (category, masking, stage).
        metric: Metric name.

    Returns:
        The statistics; status ``ok`` (every run has the value), ``partial``, ``failed`` or ``missing``.
    """
    values = [value for value in (row.value(metric) for row in rows) if value is not None]
    not_applicable = bool(rows) and all(row.status == NOT_APPLICABLE for row in rows)
    status = _status(len(values), len(rows), any(row.status == FAILED for row in rows), not_applicable)
    if not values:
        return Stat(None, None, 0, status)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return Stat(float(np.mean(values)), std, len(values), status)


@dataclass(frozen=True)
class Cell:
    """The runs of one (category, masking, stage)."""

    category: str
    masking: str
    stage: str
    rows: tuple[Row, ...] = ()

    @property
    def status(self) -> str:
        """``ok`` when every run succeeded, ``partial``, ``failed`` or ``missing``."""
        n_ok = sum(row.status == OK for row in self.rows)
        not_applicable = bool(self.rows) and all(row.status == NOT_APPLICABLE for row in self.rows)
        return _status(n_ok, len(self.rows), any(row.status == FAILED for row in self.rows), not_applicable)

    def stat(self, metric: str) -> Stat:
        """Statistics of one metric over the cell's runs."""
        return summarize(self.rows, metric)


class Column(NamedTuple):
    """One column of the table: a metric of a stage of a masking method."""

    masking: str
    stage: str
    metric: str

    @property
    def label(self) -> str:
        """Header text, e.g. ``saliency EAR+FADeR I-AUROC``."""
        return f"{self.masking} {STAGE_LABELS[self.stage]} {METRIC_LABELS.get(self.metric, self.metric)}"


@dataclass(frozen=True)
class Table:
    """Results laid out as in the paper: one row per category, columns masking × stage × metric."""

    categories: tuple[str, ...]
    maskings: tuple[str, ...]
    metrics: tuple[str, ...]
    cells: Mapping[tuple[str, str, str], Cell]

    @property
    def columns(self) -> list[Column]:
        """Columns in display order: masking, then stage (EAR, EAR+FADeR), then metric."""
        return [Column(*key) for key in product(self.maskings, STAGE_LABELS, self.metrics)]

    def cell(self, category: str, masking: str, stage: str) -> Cell:
        """The runs of one (category, masking, stage); empty when none."""
        return self.cells.get((category, masking, stage)) or Cell(category, masking, stage)

    def stat(self, category: str, column: Column) -> Stat:
        """Statistics of one table entry."""
        return self.cell(category, column.masking, column.stage).stat(column.metric)

    def mean(self, column: Column) -> Stat:
        """Mean over categories of the per-category means, over the categories that have a value.

        Returns:
            n is the number of categories averaged; status ``ok`` only when every category's cell is complete.
        """
        stats = [self.stat(category, column) for category in self.categories]
        means = [stat.mean for stat in stats if stat.mean is not None]
        if not means:
            return Stat(None, None, 0, NOT_APPLICABLE if all(s.status == NOT_APPLICABLE for s in stats) else MISSING)
        complete = all(s.status in (OK, NOT_APPLICABLE) for s in stats)
        return Stat(float(np.mean(means)), None, len(means), OK if complete else PARTIAL)


# ----------------------------------------------------------------------------------------------------------- reading


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DataError(f"{path} is not valid YAML ({err}); fix or delete it") from err


def _read_results(job_dir: Path) -> dict[str, Any]:
    path = job_dir / METRICS_FILE
    try:
        results = load_results(path)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}); re-run the job or delete the file") from err
    if not isinstance(results, dict) or not all(isinstance(entry, dict) for entry in results.values()):
        raise DataError(f"{path} is not a fader-train results file ({{stage: entry}}); move it out of the sweep folder")
    return results


def _lookup(config: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return None if isinstance(config, str) and config.startswith("${") else config


def parse_overrides(overrides: Iterable[Any]) -> dict[str, str]:
    """Hydra ``key=value`` overrides as a dict (``+``/``++``/``~`` prefixes and quotes removed)."""
    parsed = {}
    for item in map(str, overrides):
        if "=" in item:
            key, value = item.split("=", 1)
            parsed[key.lstrip("+~")] = value.strip().strip("'\"")
    return parsed


def _seed(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def job_spec(job_dir: Path) -> dict[str, Any]:
    """Where a job sits in the grid, from its ``.hydra/overrides.yaml`` and ``.hydra/config.yaml``.

    Args:
        job_dir: The job folder.

    Returns:
        ``category``, ``masking``, ``seed``, ``stage`` (``None`` when unknown) and ``overrides``.
    """
    overrides = _read_yaml(job_dir / ".hydra" / "overrides.yaml") or []
    config = _read_yaml(job_dir / ".hydra" / "config.yaml") or {}
    given = parse_overrides(overrides)
    spec = {axis: given.get(key, _lookup(config, path)) for axis, (key, path) in AXES.items()}
    return {**spec, "overrides": tuple(map(str, overrides))}


def _stage_row(job_dir: Path, stage: str, entry: dict[str, Any] | None, spec: dict[str, Any]) -> Row:
    entry = entry or {}
    known = {**spec, **{key: entry[key] for key in ("category", "masking", "seed") if entry.get(key) is not None}}
    if not entry:
        status, error = MISSING, f"no {stage!r} entry in {job_dir / METRICS_FILE}: the job stopped before this stage"
    else:
        recorded = entry.get("status")
        status, error = (recorded if recorded in (OK, NOT_APPLICABLE) else FAILED), entry.get("error")
    return Row(
        category=str(known["category"] or UNKNOWN),
        masking=str(known["masking"] or UNKNOWN),
        stage=stage,
        status=status,
        run_dir=str(job_dir),
        seed=_seed(known["seed"]),
        git_commit=(entry.get("environment") or {}).get("git_commit"),
        overrides=tuple(entry.get("overrides") or spec["overrides"]),
        metrics=entry.get("metrics") or {},
        error=error,
    )


def read_job(job_dir: Path) -> list[Row]:
    """One row per stage the job recorded or was asked to run (``stage=``), missing stages included.

    Args:
        job_dir: Folder holding ``metrics.json`` and/or ``.hydra/``.

    Returns:
        The rows.
    """
    spec = job_spec(job_dir)
    results = _read_results(job_dir)
    default = () if results else JOB_STAGES[DEFAULT_STAGE]
    expected = JOB_STAGES.get(str(spec["stage"]), default) if spec["stage"] is not None else default
    return [_stage_row(job_dir, stage, results.get(stage), spec) for stage in dict.fromkeys([*expected, *results])]


def find_job_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) holding ``metrics.json`` or ``.hydra/overrides.yaml``."""
    markers = [path.parent for path in root.rglob(METRICS_FILE)]
    markers += [path.parent.parent for path in root.rglob(".hydra/overrides.yaml")]
    return sorted({path.resolve() for path in markers})


def _sweep_values(key: str, raw: Any, source: Path) -> list[str]:
    text = str(raw).strip()
    if match := re.fullmatch(r"range\(([-\d,\s]+)\)", text):
        return [str(value) for value in range(*(int(part) for part in match.group(1).split(",")))]
    if match := re.fullmatch(r"choice\((.*)\)", text):
        text = match.group(1)
    if re.search(r"[\[\]{}()*]", text):
        log.warning("%s: cannot expand %s=%s; jobs of that sweep that never started are not listed", source, key, text)
        return []
    return [value.strip().strip("'\"") for value in text.split(",")]


def sweep_grid(multirun_file: Path) -> list[dict[str, Any]]:
    """The (category, masking, seed, stage) combinations a multirun sweep was asked to run.

    Args:
        multirun_file: The sweep's ``multirun.yaml``.

    Returns:
        One dict per expected (job, stage); empty when the sweep values cannot be expanded.
    """
    config = _read_yaml(multirun_file) or {}
    hydra_cfg = config.get("hydra") or {}
    swept = {
        **{str(key): value for key, value in ((hydra_cfg.get("sweeper") or {}).get("params") or {}).items()},
        **parse_overrides((hydra_cfg.get("overrides") or {}).get("task") or []),
    }
    axes = {
        axis: _sweep_values(key, swept[key], multirun_file) if key in swept else [_lookup(config, path)]
        for axis, (key, path) in AXES.items()
    }
    axes["stage"] = list(dict.fromkeys(s for value in axes["stage"] for s in JOB_STAGES.get(str(value), ())))
    return [dict(zip(axes, combo, strict=True)) for combo in product(*axes.values())]


def missing_jobs(multirun_file: Path, rows: Sequence[Row]) -> list[Row]:
    """Rows for the combinations of a sweep's grid that no job folder under it accounts for.

    Args:
        multirun_file: The sweep's ``multirun.yaml``.
        rows: Rows read from job folders.

    Returns:
        ``missing`` rows whose ``run_dir`` is the sweep folder.
    """
    sweep_dir = multirun_file.parent
    seen = {
        (row.category, row.masking, row.stage, row.seed) for row in rows if Path(row.run_dir).is_relative_to(sweep_dir)
    }
    missing = []
    for job in sweep_grid(multirun_file):
        category, masking = str(job["category"] or UNKNOWN), str(job["masking"] or UNKNOWN)
        key = (category, masking, job["stage"], _seed(job["seed"]))
        if key not in seen:
            overrides = (f"data.category={category}", f"masking={masking}", f"seed={job['seed']}")
            error = f"no job folder for this combination under {sweep_dir}: the sweep stopped before it"
            missing.append(Row(*key[:3], MISSING, str(sweep_dir), key[3], overrides=overrides, error=error))
    return missing


def collect(sweep_dirs: Sequence[Path]) -> list[Row]:
    """Read every job under the given folders: one row per (job, stage), with status ok, failed or missing.

    A job folder without ``metrics.json`` yields ``missing`` rows (category, masking and seed recovered from its
    overrides); a sweep's ``multirun.yaml`` adds ``missing`` rows for jobs that never got a folder.

    Args:
        sweep_dirs: Sweep folders of ``fader-train -m``, run folders, or folders holding several of them.

    Returns:
        The rows.

    Raises:
        DataError: When a folder does not exist, or no job folder is found under any of them.
    """
    roots = [Path(directory).resolve() for directory in sweep_dirs]
    for root in roots:
        if not root.is_dir():
            raise DataError(f"sweep folder {root} does not exist; pass the folder fader-train -m printed")
    job_dirs = sorted({job_dir for root in roots for job_dir in find_job_dirs(root)})
    if not job_dirs:
        raise DataError(
            f"no training job found under {', '.join(map(str, roots)) or '(no folder given)'}: expected folders "
            f"holding {METRICS_FILE} or .hydra/overrides.yaml; pass a sweep folder of fader-train -m "
            "(logs/train/multiruns/<date>) or a run folder"
        )
    rows = [row for job_dir in job_dirs for row in read_job(job_dir)]
    sweep_files = sorted({path.resolve() for root in roots for path in root.rglob("multirun.yaml")})
    rows += [row for path in sweep_files for row in missing_jobs(path, rows)]
    log.info("%d job folders, %d rows (%d ok)", len(job_dirs), len(rows), sum(row.status == OK for row in rows))
    return rows


def build_table(rows: Sequence[Row], metrics: Sequence[str] = DEFAULT_METRICS, include_aupro: bool = False) -> Table:
    """Group rows into the paper's table; every category × masking × stage gets a cell, empty ones included.

    Args:
        rows: Rows from :func:`collect`.
        metrics: Metrics shown for each stage.
        include_aupro: Add ``aupro`` to the metrics.

    Returns:
        The table.
    """
    metrics = (*metrics, "aupro") if include_aupro and "aupro" not in metrics else tuple(metrics)
    categories = tuple(sorted({row.category for row in rows}))
    maskings = tuple(sorted({row.masking for row in rows}))
    grouped: dict[tuple[str, str, str], list[Row]] = {key: [] for key in product(categories, maskings, STAGE_LABELS)}
    for row in rows:
        grouped.setdefault((row.category, row.masking, row.stage), []).append(row)
    cells = {key: Cell(*key, rows=tuple(group)) for key, group in grouped.items()}
    return Table(categories, maskings, metrics, cells)


# ----------------------------------------------------------------------------------------------------------- writing


class Style(NamedTuple):
    """Symbols of an output format."""

    pm: str
    missing: str
    failed: str = "failed"
    incomplete: str = "*"


MARKDOWN = Style("±", "—")
LATEX = Style(r"$\pm$", "---")
TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def format_stat(stat: Stat, style: Style = MARKDOWN) -> str:
    """Percent with one decimal, ``±std`` when n>1, ``*`` when incomplete, or the failed / missing mark."""
    if stat.mean is None:
        if stat.status == NOT_APPLICABLE:
            return "n/a"
        return style.failed if stat.status == FAILED else style.missing
    text = f"{100 * stat.mean:.1f}"
    if stat.std is not None:
        text += f"{style.pm}{100 * stat.std:.1f}"
    return text if stat.status == OK else text + style.incomplete


def display_rows(table: Table, style: Style = MARKDOWN) -> list[list[str]]:
    """Formatted table body: one row per category, then the ``mean`` row."""
    rows = [
        [category, *(format_stat(table.stat(category, column), style) for column in table.columns)]
        for category in table.categories
    ]
    return [*rows, ["mean", *(format_stat(table.mean(column), style) for column in table.columns)]]


def _markdown_line(texts: Sequence[str], widths: Sequence[int]) -> str:
    padded = [
        texts[0].ljust(widths[0]),
        *(text.rjust(width) for text, width in zip(texts[1:], widths[1:], strict=True)),
    ]
    return "| " + " | ".join(padded) + " |"


def to_markdown(table: Table) -> str:
    """The table as aligned GitHub Markdown, followed by its legend."""
    grid = [["category", *(column.label for column in table.columns)], *display_rows(table)]
    widths = [max(3, *(len(line[i]) for line in grid)) for i in range(len(grid[0]))]
    rule = ["-" * widths[0], *("-" * (width - 1) + ":" for width in widths[1:])]
    lines = [_markdown_line(line, widths) for line in [grid[0], rule, *grid[1:]]]
    return "\n".join(lines) + f"\n\n{LEGEND}\n"


def _tex(text: str) -> str:
    return "".join(TEX_ESCAPES.get(char, char) for char in text)


def _cmidrules(width: int, count: int) -> str:
    return "".join(rf"\cmidrule(lr){{{2 + i * width}-{1 + (i + 1) * width}}}" for i in range(count))


def to_latex(table: Table) -> str:
    r"""The table as a booktabs ``tabular`` with masking and stage header rows (needs ``\usepackage{booktabs}``)."""
    n_metrics, n_stages = len(table.metrics), len(STAGE_LABELS)
    group = n_metrics * n_stages
    maskings = [rf"\multicolumn{{{group}}}{{c}}{{{_tex(masking)}}}" for masking in table.maskings]
    stages = [
        rf"\multicolumn{{{n_metrics}}}{{c}}{{{label}}}" for _ in table.maskings for label in STAGE_LABELS.values()
    ]
    metrics = [_tex(METRIC_LABELS.get(column.metric, column.metric)) for column in table.columns]
    *body, mean = display_rows(table, LATEX)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{Results in \% (mean$\pm$std over seeds; --- no result; * incomplete).}",
        rf"\begin{{tabular}}{{l{'c' * len(table.columns)}}}",
        r"\toprule",
        " & ".join(["", *maskings]) + r" \\",
        _cmidrules(group, len(table.maskings)),
        " & ".join(["", *stages]) + r" \\",
        _cmidrules(n_metrics, n_stages * len(table.maskings)),
        " & ".join(["Category", *metrics]) + r" \\",
        r"\midrule",
        *(" & ".join([_tex(row[0]), *row[1:]]) + r" \\" for row in body),
        r"\midrule",
        " & ".join(["Mean", *mean[1:]]) + r" \\",
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _join(values: Iterable[Any]) -> str:
    return ";".join("" if value is None else str(value) for value in values)


def records(table: Table) -> list[dict[str, Any]]:
    """Tidy records: one per category × masking × stage × metric, with mean/std as fractions and provenance."""
    out = []
    for category, column in product(table.categories, table.columns):
        rows = table.cell(category, column.masking, column.stage).rows
        stat = table.stat(category, column)
        out.append(
            {
                **column._asdict(),
                "category": category,
                **stat._asdict(),
                "run_dirs": _join(row.run_dir for row in rows),
                "seeds": _join(row.seed for row in rows),
                "git_commits": _join(row.git_commit for row in rows),
            }
        )
    return out


def provenance(table: Table) -> dict[str, Any]:
    """For every cell, the runs it came from: folder, seed, status, commit, overrides, metrics and error."""
    cells = [
        {
            "category": cell.category,
            "masking": cell.masking,
            "stage": cell.stage,
            "status": cell.status,
            "runs": [
                {
                    "run_dir": row.run_dir,
                    "seed": row.seed,
                    "status": row.status,
                    "git_commit": row.git_commit,
                    "overrides": list(row.overrides),
                    "metrics": dict(row.metrics),
                    "error": row.error,
                }
                for row in cell.rows
            ],
        }
        for _, cell in sorted(table.cells.items())
    ]
    return {"std": STD_NOTE, "cells": cells}


def write_markdown(table: Table, path: Path) -> Path:
    """Write :func:`to_markdown` atomically."""
    return atomic_write_text(path, to_markdown(table))


def write_latex(table: Table, path: Path) -> Path:
    """Write :func:`to_latex` atomically."""
    return atomic_write_text(path, to_latex(table))


def write_csv(table: Table, path: Path) -> Path:
    """Write :func:`records` as CSV atomically (``std`` empty when n < 2, lists joined by ``;``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records(table))
    return atomic_write_text(path, buffer.getvalue())


# ------------------------------------------------------------------------------------------------------------- chart

CHART_METRIC, CHART_LABEL = "image_auroc", "image AUROC"
CHART_TITLE = f"{CHART_LABEL} per category: EAR vs EAR+FADeR for each masking method"
CHART_NOTES = ("F failed, M missing, N not applicable", "line: ±std over seeds")
PALETTE = ((31, 119, 180), (214, 96, 0), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))
FONT_SIZE = 14
HEIGHT = 440
LEFT, TOP, BOTTOM, MARGIN = 80, 50, 70, 20  # plot area offsets in pixels
BAR_W, GAP = 16, 18  # bar width, space between category groups
INK, GRID_INK, FAINT_INK = (30, 30, 30), (225, 225, 225), (120, 120, 120)
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class Series(NamedTuple):
    """One bar per category: a stage of a masking method."""

    masking: str
    stage: str
    colour: tuple[int, int, int]

    @property
    def label(self) -> str:
        """Legend text."""
        return f"{self.masking} {STAGE_LABELS[self.stage]}"


class Plot(NamedTuple):
    """The plotting area in pixels and the lowest percent shown."""

    left: int
    top: int
    right: int
    bottom: int
    low: float

    def y(self, percent: float) -> float:
        """Pixel row of a value in percent."""
        return self.bottom - (percent - self.low) / (100 - self.low) * (self.bottom - self.top)


def _series(table: Table) -> list[Series]:
    series = []
    for i, masking in enumerate(table.maskings):
        dark = PALETTE[i % len(PALETTE)]
        light = tuple(int(c + (255 - c) * 0.55) for c in dark)
        series += [Series(masking, "ear", light), Series(masking, "fader", dark)]
    return series


def _text_width(font: Font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _axis_low(stats: Iterable[Stat]) -> float:
    lowest = min((100 * stat.mean for stat in stats if stat.mean is not None), default=50.0)
    return float(max(0, min(50, 10 * math.floor(lowest / 10) - 10)))


def _draw_axes(image: Image.Image, plot: Plot, font: Font) -> None:
    draw = ImageDraw.Draw(image)
    for tick in range(int(plot.low), 101, 10):
        y = plot.y(tick)
        draw.line([(plot.left, y), (plot.right, y)], fill=GRID_INK)
        draw.text((plot.left - 6, y), str(tick), fill=INK, font=font, anchor="rm")
    draw.line([(plot.left, plot.top), (plot.left, plot.bottom), (plot.right, plot.bottom)], fill=INK, width=1)
    label = f"{CHART_LABEL} (%)"
    strip = Image.new("RGB", (_text_width(font, label) + 4, FONT_SIZE + 6), "white")
    ImageDraw.Draw(strip).text((2, 1), label, fill=INK, font=font)
    rotated = strip.rotate(90, expand=True)
    image.paste(rotated, (8, int((plot.top + plot.bottom - rotated.height) / 2)))
    draw.text(((plot.left + plot.right) / 2, image.height - 8), "category", fill=INK, font=font, anchor="md")


def _draw_bar(draw: ImageDraw.ImageDraw, plot: Plot, x: float, stat: Stat, series: Series, font: Font) -> None:
    if stat.mean is None:
        mark = {FAILED: "F", NOT_APPLICABLE: "N"}.get(stat.status, "M")
        draw.text((x + BAR_W / 2, plot.bottom - 2), mark, fill=FAINT_INK, font=font, anchor="mb")
        return
    draw.rectangle([x, plot.y(100 * stat.mean), x + BAR_W - 2, plot.bottom], fill=series.colour)
    if stat.std is not None:
        centre, low, high = x + BAR_W / 2 - 1, 100 * (stat.mean - stat.std), 100 * (stat.mean + stat.std)
        draw.line([(centre, plot.y(max(low, plot.low))), (centre, plot.y(min(high, 100)))], fill=INK, width=1)


def _draw_legend(draw: ImageDraw.ImageDraw, x: int, y: int, series: Sequence[Series], font: Font) -> None:
    for i, item in enumerate(series):
        top = y + i * (FONT_SIZE + 8)
        draw.rectangle([x, top, x + 14, top + 14], fill=item.colour)
        draw.text((x + 20, top + 7), item.label, fill=INK, font=font, anchor="lm")
    for i, note in enumerate(CHART_NOTES):
        draw.text((x, y + len(series) * (FONT_SIZE + 8) + 6 + i * (FONT_SIZE + 6)), note, fill=FAINT_INK, font=font)


def render_chart(table: Table) -> Image.Image:
    """Grouped bar chart of image AUROC: one group per category, one bar per masking method × stage.

    Args:
        table: The table.

    Returns:
        The RGB image.
    """
    font = ImageFont.load_default(size=FONT_SIZE)
    series = _series(table)
    categories = table.categories or (UNKNOWN,)
    stats = {(c, s): table.cell(c, s.masking, s.stage).stat(CHART_METRIC) for c in categories for s in series}
    group_w = max(len(series) * BAR_W, *(_text_width(font, category) for category in categories)) + GAP
    legend_w = max([_text_width(font, s.label) + 20 for s in series] + [_text_width(font, n) for n in CHART_NOTES])
    plot = Plot(LEFT, TOP, LEFT + group_w * len(categories), HEIGHT - BOTTOM, _axis_low(stats.values()))
    width = max(plot.right + 2 * MARGIN + legend_w, _text_width(font, CHART_TITLE) + 2 * MARGIN)
    image = Image.new("RGB", (width, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    _draw_axes(image, plot, font)
    for i, category in enumerate(categories):
        left = plot.left + i * group_w + (group_w - len(series) * BAR_W) / 2
        for j, item in enumerate(series):
            _draw_bar(draw, plot, left + j * BAR_W, stats[category, item], item, font)
        draw.text((plot.left + (i + 0.5) * group_w, plot.bottom + 6), category, fill=INK, font=font, anchor="ma")
    _draw_legend(draw, plot.right + MARGIN, TOP, series, font)
    draw.text((image.width / 2, 12), CHART_TITLE, fill=INK, font=font, anchor="ma")
    return image


def write_chart(table: Table, path: Path) -> Path:
    """Write :func:`render_chart` as PNG atomically."""
    buffer = io.BytesIO()
    render_chart(table).save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


# ------------------------------------------------------------------------------------------------------------- W&B


def _netrc_has_wandb() -> bool:
    host = urlparse(os.environ.get("WANDB_BASE_URL") or WANDB_URL).hostname
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    """``WANDB_MODE`` when set, ``online`` with an API key, else ``offline``.

    The key is ``WANDB_API_KEY`` or the netrc entry (``$NETRC`` or ``~/.netrc``) that ``wandb login`` writes for the
    W&B host (``$WANDB_BASE_URL``, ``api.wandb.ai`` by default).
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") or _netrc_has_wandb() else "offline"


def _active_wandb_run() -> bool:
    wandb = sys.modules.get("wandb")
    return wandb is not None and getattr(wandb, "run", None) is not None


def log_to_wandb(table: Table, paths: Mapping[str, Path], name: str, project: str = WANDB_PROJECT) -> None:
    """Log the table (display and tidy) and the written files (artifact of type ``results``) to W&B.

    Logs into the active run when there is one; otherwise starts a run (mode from :func:`wandb_mode`) and finishes it.

    Args:
        table: The table.
        paths: Files to put in the artifact.
        name: Run and artifact name.
        project: W&B project of a new run.

    Raises:
        ConfigError: When wandb is not installed.
    """
    try:
        import wandb
    except ImportError as err:
        raise ConfigError("W&B logging needs the wandb package: pip install wandb, or drop --wandb") from err
    own_run = wandb.run is None
    run = wandb.init(project=project, job_type="aggregate", name=name, mode=wandb_mode()) if own_run else wandb.run
    try:
        header = ["category", *(column.label for column in table.columns)]
        tidy = [[record[key] for key in CSV_FIELDS] for record in records(table)]
        run.log(
            {
                "table": wandb.Table(columns=header, data=display_rows(table)),
                "results": wandb.Table(columns=list(CSV_FIELDS), data=tidy),
            }
        )
        artifact = wandb.Artifact(re.sub(r"[^\w.-]", "_", f"{name}-results"), type="results")
        for path in paths.values():
            artifact.add_file(str(path))
        run.log_artifact(artifact)
        log.info("logged %s to W&B run %s (files in %s)", name, run.name, run.dir)
    finally:
        if own_run:
            wandb.finish()


# ------------------------------------------------------------------------------------------------------ entry point


def aggregate(
    sweep_dirs: Sequence[Path],
    name: str,
    out_root: Path = Path("results"),
    include_aupro: bool = False,
    use_wandb: bool = False,
) -> dict[str, Path]:
    """Collect the sweeps and write ``table.md``, ``table.csv``, ``table.tex``, ``chart.png`` and ``provenance.json``.

    Args:
        sweep_dirs: Sweep or run folders.
        name: Output folder name under ``out_root``.
        out_root: Results root.
        include_aupro: Show AUPRO next to image and pixel AUROC.
        use_wandb: Log to W&B (also done when a W&B run is already active).

    Returns:
        ``{"markdown", "csv", "latex", "chart", "provenance"}`` → path written.

    Raises:
        ConfigError: When ``name`` is not a plain folder name.
        DataError: When no job is found (see :func:`collect`).
    """
    if not name or Path(name).name != name or name in {".", ".."}:
        raise ConfigError(f"--name {name!r} must be a plain folder name (results go to <out>/<name>/)")
    table = build_table(collect(sweep_dirs), include_aupro=include_aupro)
    out_dir = Path(out_root) / name
    paths = {
        "markdown": write_markdown(table, out_dir / "table.md"),
        "csv": write_csv(table, out_dir / "table.csv"),
        "latex": write_latex(table, out_dir / "table.tex"),
        "chart": write_chart(table, out_dir / "chart.png"),
        "provenance": atomic_write_json(out_dir / "provenance.json", provenance(table)),
    }
    log.info("results of %d categories written to %s", len(table.categories), out_dir)
    if use_wandb or _active_wandb_run():
        log_to_wandb(table, paths, name)
    return paths


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``fader-aggregate``."""
    parser = argparse.ArgumentParser(
        prog="fader-aggregate", description="Collect training sweeps into tables, a chart and provenance."
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep or run folders")
    parser.add_argument("--name", required=True, help="output folder name under --out")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results root (default: results)")
    parser.add_argument("--aupro", action="store_true", help="also show AUPRO")
    parser.add_argument("--wandb", action="store_true", help="log the table and files to W&B (offline without a key)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fader-aggregate``; print the files written and the Markdown table.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when the files were written (failed cells are marked, not fatal), 2 when nothing was found.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = aggregate(args.sweep_dirs, args.name, args.out, include_aupro=args.aupro, use_wandb=args.wandb)
    except FaderError as err:
        sys.stderr.write(f"fader-aggregate: {type(err).__name__}: {err}\n")
        return 2
    sys.stdout.write("".join(f"{key}: {path}\n" for key, path in paths.items()))
    sys.stdout.write("\n" + paths["markdown"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reading sweeps: job folders (``metrics.json``, ``.hydra/``) and ``multirun.yaml`` grids into rows."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from fader_lightning.aggregate.table import FAILED, MISSING, NOT_APPLICABLE, OK, UNKNOWN, Row
from fader_lightning.errors import DataError
from fader_lightning.results import METRICS_FILE, load_results

log = logging.getLogger(__name__)

# the stages a job runs for each value of ``stage=`` (as in fader_lightning.train, which imports torch)
JOB_STAGES = {"ear": ("ear",), "fader": ("fader",), "both": ("ear", "fader")}
DEFAULT_STAGE = "ear"
# where each axis of the grid lives: (Hydra override key, dotted path in the composed config)
AXES = {
    "category": ("data.category", "data.category"),
    "masking": ("masking", "masking.name"),
    "seed": ("seed", "seed"),
    "stage": ("stage", "stage"),
}


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

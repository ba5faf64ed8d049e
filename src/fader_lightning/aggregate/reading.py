"""Reading sweeps: job folders (``metrics.json``, ``.hydra/``) and ``multirun.yaml`` grids into rows.

Besides the category, the masking method, the seed and the stage, a row belongs to a *variant*: its job's values of
the override keys that differ between the jobs of one category (:func:`assign_variants`), e.g.
``fader.patch_size=4`` in a patch-size ablation. Keys that only say where things live or how jobs are launched
(:data:`NON_VARIANT_KEYS`) never make variants.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from fader_lightning.aggregate.table import (
    DEFAULT_VARIANT,
    DIAGNOSTIC_PREFIX,
    FAILED,
    MISSING,
    NO_VARIANT,
    NOT_APPLICABLE,
    OK,
    UNKNOWN,
    Row,
)
from fader_lightning.errors import DataError
from fader_lightning.keys import JOB_STAGES
from fader_lightning.results import METRICS_FILE, load_results
from fader_lightning.utils.io import REPLACED_PREFIX

log = logging.getLogger(__name__)
OVERRIDE_PARSER = OverridesParser.create()
"""Hydra's own override grammar (sweeps, lists, quoting), so the tables read overrides as Hydra ran them."""

# the stages a job runs for each value of ``stage=`` (as in fader_lightning.cli.train, which imports torch)
DEFAULT_STAGE = "ear"
# where each axis of the grid lives: (Hydra override key, dotted path in the composed config)
AXES = {
    "category": ("data.category", "data.category"),
    "masking": ("masking", "masking.name"),
    "seed": ("seed", "seed"),
    "stage": ("stage", "stage"),
}
AXIS_KEYS = frozenset(key for key, _ in AXES.values())
# override keys (or their first component) that do not change results: launcher, output and data locations, logging
# a stage-1 checkpoint path (stage=fader) or resume path names a run, like the seed, not an ablation variant
NON_VARIANT_KEYS = frozenset({"hydra", "paths", "data.root", "logger", "fader.ckpt_path", "ckpt_path"})
TRAINING_KEY = "training"
"""The variant key that tells a unified run's rows from one-class runs of the same categories (never a Hydra key)."""
ONE_CLASS, UNIFIED, UNIFIED_CATEGORY_FREE = "one-class", "unified", "unified-category-free"
"""Its values: a model per category; one model for every category, calibrated per category or on them all."""
UNIFIED_METRICS = {UNIFIED: ("metrics", "diagnostics"),
                   UNIFIED_CATEGORY_FREE: ("metrics_category_free", "diagnostics_category_free")}  # fmt: skip
"""Where each unified setting's metrics and diagnostics are in an entry's ``per_category.<c>``."""


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


def _clean_value(text: str) -> str:
    """An override value as Hydra's parser prints it, without the quotes of a quoted string."""
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" else text


def _parse(item: str, source: Path | None = None) -> Override | None:
    """One override parsed by Hydra's own grammar; ``None`` (with a warning) when it does not parse."""
    try:
        return OVERRIDE_PARSER.parse_override(item)
    except (HydraException, ValueError) as err:
        log.warning("%s: cannot parse the override %r (%s); it is left out", source or "overrides", item, err)
        return None


def _key(override: Override) -> str:
    return f"{override.key_or_group}@{override.package}" if override.package else override.key_or_group


def parse_overrides(overrides: Iterable[Any]) -> dict[str, str]:
    """Hydra ``key=value`` overrides as a dict of normalised values (``+``/``++`` dropped, ``~`` deletions skipped).

    Values are printed by Hydra's parser, so ``[0, 1]`` and ``[0,1]`` (or ``'a'`` and ``a``) are one value; sweeps
    keep their text (see :func:`sweep_values`).
    """
    parsed = {}
    for item in map(str, overrides):
        override = _parse(item)
        if override is None or override.is_delete():
            continue
        text = item.split("=", 1)[1] if override.is_sweep_override() else override.get_value_element_as_str()
        parsed[_key(override)] = _clean_value(text)
    return parsed


def _is_variant_key(key: str) -> bool:
    top = key.replace("/", ".").replace("@", ".").split(".", 1)[0]
    return key not in AXIS_KEYS and key not in NON_VARIANT_KEYS and top not in NON_VARIANT_KEYS


def _settings(overrides: Iterable[Any]) -> dict[str, str]:
    """The overrides that could make a variant: all but the grid axes and :data:`NON_VARIANT_KEYS`."""
    return {key: value for key, value in parse_overrides(overrides).items() if _is_variant_key(key)}


def variant_keys(rows: Sequence[Row]) -> list[str]:
    """Override keys whose value differs between rows of the same category, sorted.

    A key some rows of a category do not set counts as differing. Keys that differ only between categories (a
    per-dataset ``data.mask_suffix`` when sweeps over several datasets are collected together) describe the data,
    not a variant.
    """
    by_category: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_category.setdefault(row.category, []).append(_settings(row.overrides))
    keys = sorted({key for settings in by_category.values() for setting in settings for key in setting})
    return [
        key
        for key in keys
        if any(len({setting.get(key) for setting in settings}) > 1 for settings in by_category.values())
    ]


def assign_variants(rows: Sequence[Row], keys: Iterable[str] | None = None) -> list[Row]:
    """Set each row's ``variant`` from its values of the varying keys.

    The variant reads as Hydra overrides, ``fader.levels=[0] fader.patch_size=4``, keys sorted; a row that sets none of
    the varying keys is ``default``; when no key varies, every row gets the variant ``""``.

    Args:
        rows: The rows.
        keys: The varying keys; default: the :func:`variant_keys` of ``rows``.

    Returns:
        The rows with their variant.
    """
    keys = variant_keys(rows) if keys is None else sorted(set(keys))
    if not keys:
        return [replace(row, variant=NO_VARIANT) for row in rows]
    out = []
    for row in rows:
        setting = _settings(row.overrides)
        variant = " ".join(f"{key}={setting[key]}" for key in keys if key in setting) or DEFAULT_VARIANT
        out.append(replace(row, variant=variant))
    return out


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
    if isinstance(known["category"], list):  # a unified run's list, spelled as Hydra prints it: [a,b]
        known["category"] = f"[{','.join(map(str, known['category']))}]"
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
        metrics={
            **(entry.get("metrics") or {}),
            **{f"{DIAGNOSTIC_PREFIX}{key}": value for key, value in (entry.get("diagnostics") or {}).items()},
        },
        error=error,
    )


def _per_category(job_dir: Path, stage: str, entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A unified entry's ``per_category`` results, checked: ``{category: {metrics: {...}, ...}}``."""
    per_category = entry.get("per_category")
    fine = isinstance(per_category, dict) and per_category and all(
        isinstance(name, str) and isinstance(result, dict)
        and all(isinstance(result.get(key) or {}, dict) for keys in UNIFIED_METRICS.values() for key in keys)
        for name, result in per_category.items()
    )  # fmt: skip
    if not fine:
        raise DataError(
            f"{job_dir / METRICS_FILE}: the {stage!r} entry's per_category is not {{category: {{metrics: {{...}}}}}}; "
            "re-run the job or move it out of the sweep folder"
        )
    return per_category


def unified_rows(job_dir: Path, row: Row, entry: dict[str, Any]) -> list[Row]:
    """A unified run's stage as rows per category: one with each category's calibration, one category-free.

    Args:
        job_dir: The job folder.
        row: The stage's row as :func:`_stage_row` reads it (its category the job's list).
        entry: The stage's entry, holding ``per_category``.

    Returns:
        Two rows per category, told apart by the variant key :data:`TRAINING_KEY`.
    """
    rows = []
    for category, result in _per_category(job_dir, row.stage, entry).items():
        for setting, (key, diagnostics) in UNIFIED_METRICS.items():
            found = (result.get(diagnostics) or {}).items()
            metrics = {**(result.get(key) or {}), **{f"{DIAGNOSTIC_PREFIX}{name}": value for name, value in found}}
            rows.append(replace(row, category=category, metrics=metrics, job_category=row.category,
                                overrides=(*row.overrides, f"{TRAINING_KEY}={setting}")))  # fmt: skip
    return rows


def read_job(job_dir: Path) -> list[Row]:
    """One row per stage the job recorded or was asked to run (``stage=``), missing stages included.

    A unified run's stage (one model for several categories) gives rows per category (:func:`unified_rows`).

    Args:
        job_dir: Folder holding ``metrics.json`` and/or ``.hydra/``.

    Returns:
        The rows.
    """
    spec = job_spec(job_dir)
    results = _read_results(job_dir)
    default = () if results else JOB_STAGES[DEFAULT_STAGE]
    expected = JOB_STAGES.get(str(spec["stage"]), default) if spec["stage"] is not None else default
    rows = []
    for stage in dict.fromkeys([*expected, *results]):
        row = _stage_row(job_dir, stage, results.get(stage), spec)
        unified = row.status == OK and "per_category" in results[stage]
        rows += unified_rows(job_dir, row, results[stage]) if unified else [row]
    return rows


def mark_one_class(rows: Sequence[Row]) -> list[Row]:
    """Where unified runs are collected with one-class runs, mark the one-class rows as such (:data:`TRAINING_KEY`)."""
    if not any(row.job_category is not None for row in rows):
        return list(rows)
    marker = f"{TRAINING_KEY}={ONE_CLASS}"
    return [row if row.job_category is not None else replace(row, overrides=(*row.overrides, marker)) for row in rows]


def find_job_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) holding ``metrics.json`` or ``.hydra/overrides.yaml``.

    Runs that ``overwrite=true`` moved aside (``<run>/.replaced-<time>/``) are not jobs of the sweep.
    """
    markers = [path.parent for path in root.rglob(METRICS_FILE)]
    markers += [path.parent.parent for path in root.rglob(".hydra/overrides.yaml")]
    jobs = {path.resolve() for path in markers}
    return sorted(path for path in jobs if not any(part.startswith(REPLACED_PREFIX) for part in path.parts))


def wandb_group(sweep_dirs: Sequence[Path]) -> str | None:
    """The W&B group the jobs under these folders logged to, when they share one.

    A job's group is its ``logger.wandb.group`` when set explicitly, else what ``conf/logger/wandb.yaml`` makes
    it: ``<task_name>-<folder>``, the folder being the sweep folder (the job folder's parent) in a multirun and the
    run folder itself in a single run.

    Args:
        sweep_dirs: The folders given to ``fader-aggregate``.

    Returns:
        The shared group, or ``None`` when the jobs span several groups (or there is no job).
    """
    groups = set()
    for root in (Path(directory).resolve() for directory in sweep_dirs):
        for job_dir in find_job_dirs(root):
            config = _read_yaml(job_dir / ".hydra" / "config.yaml") or {}
            folder = job_dir.name if job_dir == root else job_dir.parent.name
            groups.add(_lookup(config, "logger.wandb.group") or f"{config.get('task_name') or 'train'}-{folder}")
    return groups.pop() if len(groups) == 1 else None


def sweep_values(key: str, raw: Any, source: Path) -> list[str]:
    """The values a swept key takes (``a,b``, ``range(0,3)``, ``choice(...)``), expanded by Hydra's parser.

    Args:
        key: The key.
        raw: Its sweep text.
        source: The ``multirun.yaml`` it comes from, for the warning.

    Returns:
        The values as printed by Hydra; empty (with a warning) for sweeps that have no fixed values (``glob``,
        ``interval``) or text that does not parse.
    """
    override = _parse(f"{key}={raw}", source)
    if override is None:
        return []
    if not override.is_sweep_override():
        return [_clean_value(override.get_value_element_as_str())]
    try:
        return [_clean_value(value) for value in override.sweep_string_iterator()]
    except HydraException:
        log.warning("%s: cannot expand %s=%s; jobs of that sweep that never started are not listed", source, key, raw)
        return []


def sweep_grid(multirun_file: Path) -> list[dict[str, Any]]:
    """The (category, masking, seed, stage, other overrides) combinations a multirun sweep was asked to run.

    Args:
        multirun_file: The sweep's ``multirun.yaml``.

    Returns:
        One dict per expected (job, stage): ``category``, ``masking``, ``seed``, ``stage`` and ``overrides``, the job's
        values of every other key the sweep sets (swept or not, bar :data:`NON_VARIANT_KEYS`); empty when the sweep
        values cannot be expanded.
    """
    config = _read_yaml(multirun_file) or {}
    hydra_cfg = config.get("hydra") or {}
    swept = {
        **{str(key): value for key, value in ((hydra_cfg.get("sweeper") or {}).get("params") or {}).items()},
        **parse_overrides((hydra_cfg.get("overrides") or {}).get("task") or []),
    }
    axes = {
        axis: sweep_values(key, swept[key], multirun_file) if key in swept else [_lookup(config, path)]
        for axis, (key, path) in AXES.items()
    }
    axes["stage"] = list(dict.fromkeys(s for value in axes["stage"] for s in JOB_STAGES.get(str(value), ())))
    others = {key: sweep_values(key, value, multirun_file) for key, value in swept.items() if _is_variant_key(key)}
    grid = []
    for combo, setting in product(product(*axes.values()), product(*others.values())):
        grid.append({**dict(zip(axes, combo, strict=True)), "overrides": dict(zip(others, setting, strict=True))})
    return grid


def swept_keys(grid: Sequence[dict[str, Any]]) -> list[str]:
    """The keys of a :func:`sweep_grid` besides the axes that take more than one value: they tell its jobs apart."""
    return [key for key in (grid[0]["overrides"] if grid else ()) if len({job["overrides"][key] for job in grid}) > 1]


def _grid_key(
    category: Any, masking: Any, stage: Any, seed: Any, setting: dict[str, str], keys: Sequence[str]
) -> tuple:
    return (str(category or UNKNOWN), str(masking or UNKNOWN), stage, _seed(seed), *(setting.get(k) for k in keys))


def missing_jobs(multirun_file: Path, rows: Sequence[Row], grid: Sequence[dict[str, Any]] | None = None) -> list[Row]:
    """Rows for the combinations of a sweep's grid that no job folder under it accounts for.

    A job folder accounts for a combination when its category, masking method, stage, seed and values of the
    :func:`swept_keys` match.

    Args:
        multirun_file: The sweep's ``multirun.yaml``.
        rows: Rows read from job folders.
        grid: The sweep's :func:`sweep_grid`, when already read.

    Returns:
        ``missing`` rows whose ``run_dir`` is the sweep folder, with the overrides the job would have had.
    """
    sweep_dir = multirun_file.parent
    grid = sweep_grid(multirun_file) if grid is None else grid
    keys = swept_keys(grid)
    seen = {
        _grid_key(row.job_category or row.category, row.masking, row.stage, row.seed, _settings(row.overrides), keys)
        for row in rows
        if Path(row.run_dir).is_relative_to(sweep_dir)
    }
    missing = []
    for job in grid:
        key = _grid_key(job["category"], job["masking"], job["stage"], job["seed"], job["overrides"], keys)
        if key not in seen:
            seen.add(key)
            overrides = (
                f"data.category={key[0]}",
                f"masking={key[1]}",
                f"seed={job['seed']}",
                *(f"{name}={value}" for name, value in job["overrides"].items()),
            )
            error = f"no job folder for this combination under {sweep_dir}: the sweep stopped before it"
            missing.append(Row(*key[:3], MISSING, str(sweep_dir), key[3], overrides=overrides, error=error))
    return missing


def collect(sweep_dirs: Sequence[Path]) -> list[Row]:
    """Read every job under the given folders: one row per (job, stage), with status ok, failed or missing.

    A job folder without ``metrics.json`` yields ``missing`` rows (category, masking and seed recovered from its
    overrides); a sweep's ``multirun.yaml`` adds ``missing`` rows for jobs that never got a folder. Every row then gets
    its variant (:func:`assign_variants`) from the keys that vary between the job folders' overrides
    (:func:`variant_keys`) or are swept in a ``multirun.yaml`` (:func:`swept_keys`).

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
    rows = mark_one_class([row for job_dir in job_dirs for row in read_job(job_dir)])
    sweep_files = sorted({path.resolve() for root in roots for path in root.rglob("multirun.yaml")})
    grids = {path: sweep_grid(path) for path in sweep_files}
    # constant overrides a multirun.yaml lacks or spells differently must not split its missing jobs off as a variant
    keys = {*variant_keys(rows), *(key for grid in grids.values() for key in swept_keys(grid))}
    rows += [row for path, grid in grids.items() for row in missing_jobs(path, rows, grid)]
    rows = assign_variants(rows, keys)
    log.info("%d job folders, %d rows (%d ok)", len(job_dirs), len(rows), sum(row.status == OK for row in rows))
    return rows

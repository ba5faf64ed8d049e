"""``metrics.json``: one file per run, one entry per stage, written atomically."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fader_lightning.errors import ConfigError
from fader_lightning.run_layout import checkpoint_run
from fader_lightning.utils.io import atomic_write_json

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a run's ``metrics.json``.

    Args:
        path: The file, or the run folder holding it.

    Returns:
        ``{stage: entry}``; empty when the file does not exist.

    Raises:
        ConfigError: When the file is not a JSON object.
    """
    path = Path(path)
    path = path / METRICS_FILE if path.is_dir() else path
    if not path.is_file():
        return {}
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{path} is not valid JSON ({err}); move it away (it is no run of this project's that overwrite=true "
            "could set aside)"
        ) from err
    if not isinstance(results, dict):
        raise ConfigError(f"{path} holds a {type(results).__name__}, not a results object; move it away")
    return results


def record_stage(run_dir: str | Path, stage: str, entry: dict[str, Any]) -> Path:
    """Add or replace one stage's entry in ``run_dir/metrics.json``, atomically.

    Entries of other stages already in the file are kept.

    Args:
        run_dir: The run's output folder.
        stage: ``ear`` or ``fader``.
        entry: Status, metrics, timing and provenance of that stage.

    Returns:
        The path written.
    """
    path = Path(run_dir) / METRICS_FILE
    results = load_results(path)
    results[stage] = entry
    atomic_write_json(path, results)
    log.info("%s results written to %s", stage, path)
    return path


STALE = "stale"
"""Status of an entry whose model was built on an earlier stage's model that has since been trained again."""


def mark_stale(run_dir: str | Path, stages: Sequence[str], reason: str) -> list[str]:
    """Mark the entries of ``stages`` in ``run_dir/metrics.json`` stale (status ``stale``, ``error``: why), atomically.

    Args:
        run_dir: The run's output folder.
        stages: The stages whose entries no longer hold.
        reason: Why, for the entry's ``error`` (tables show it).

    Returns:
        The stages marked (those with an entry that was not stale already).
    """
    path = Path(run_dir) / METRICS_FILE
    results = load_results(path)
    marked = [stage for stage in stages
              if isinstance(results.get(stage), dict) and results[stage].get("status") != STALE]  # fmt: skip
    if not marked:
        return []
    for stage in marked:
        results[stage] = {**results[stage], "status": STALE, "error": reason}
    atomic_write_json(path, results)
    log.warning("%s: marked the %s entry stale: %s", path, ", ".join(marked), reason)
    return marked


def run_entry(ckpt: str | os.PathLike[str], stage: str) -> dict[str, Any]:
    """The ``metrics.json`` entry of the run a checkpoint was written by.

    Args:
        ckpt: Checkpoint file; only ``<run>/checkpoints/<stage>/<name>.ckpt`` has a run folder.
        stage: Stage whose entry to return.

    Returns:
        The entry (``config``, ``metrics``, ...), empty when the checkpoint is not in a run folder or the run has no
        ``metrics.json``.
    """
    run = checkpoint_run(ckpt)
    return load_results(run).get(stage, {}) if run is not None else {}

"""Weights & Biases: the mode a new run starts in, and logging the table and files of an aggregation."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from fader_lightning.aggregate.table import Table
from fader_lightning.aggregate.writers import csv_fields, display_rows, records
from fader_lightning.errors import ConfigError
from fader_lightning.utils.wandb_mode import wandb_offline

log = logging.getLogger(__name__)

WANDB_PROJECT = "fader-lightning"


def wandb_mode() -> str:
    """``WANDB_MODE`` when set, ``online`` with an API key, else ``offline``.

    The key is ``WANDB_API_KEY`` or the netrc entry that ``wandb login`` writes for the W&B host; the detection is
    :func:`fader_lightning.utils.wandb_mode.wandb_offline`, shared with ``fader-train``.
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "offline" if wandb_offline() else "online"


def active_wandb_run() -> bool:
    """Whether wandb is imported and a run is active (e.g. started by ``fader-train``)."""
    wandb = sys.modules.get("wandb")
    return wandb is not None and getattr(wandb, "run", None) is not None


def log_to_wandb(
    table: Table,
    paths: Mapping[str, Path],
    name: str,
    project: str = WANDB_PROJECT,
    group: str | None = None,
    run_dir: Path | None = None,
) -> None:
    """Log the table (display and tidy) and the written files (artifact of type ``results``) to W&B.

    Logs into the active run when there is one; otherwise starts a run (mode from :func:`wandb_mode`) in ``group``
    and finishes it.

    Args:
        table: The table.
        paths: Files to put in the artifact.
        name: Run and artifact name.
        project: W&B project of a new run.
        group: Group of a new run: the sweep's, so the table sits beside the runs it summarises.
        run_dir: Folder of a new run's files (``<run_dir>/wandb/``; wandb's default when ``None``).

    Raises:
        ConfigError: When wandb is not installed.
    """
    try:
        import wandb
    except ImportError as err:
        raise ConfigError("W&B logging needs the wandb package: pip install wandb, or drop --wandb") from err
    own_run = wandb.run is None
    run = (
        wandb.init(project=project, job_type="aggregate", name=name, group=group, dir=run_dir, mode=wandb_mode())
        if own_run
        else wandb.run
    )
    try:
        header = ["category", *(column.label for column in table.columns)]
        fields = csv_fields(table)
        tidy = [[record[key] for key in fields] for record in records(table)]
        run.log(
            {
                "table": wandb.Table(columns=header, data=display_rows(table)),
                "results": wandb.Table(columns=list(fields), data=tidy),
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

"""Weights & Biases: the mode a new run starts in, and logging the table and files of an aggregation."""

from __future__ import annotations

import logging
import netrc
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from fader_lightning.aggregate.table import Table
from fader_lightning.aggregate.writers import CSV_FIELDS, display_rows, records
from fader_lightning.errors import ConfigError

log = logging.getLogger(__name__)

WANDB_PROJECT = "fader-lightning"
WANDB_URL = "https://api.wandb.ai"


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


def active_wandb_run() -> bool:
    """Whether wandb is imported and a run is active (e.g. started by ``fader-train``)."""
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

"""Weights & Biases glue: a self-contained offline logger, config resolvers, one run per stage, finishing runs.

Importing this module registers the OmegaConf resolvers used by ``conf/logger/wandb.yaml``:

- ``${fader_wandb_offline:}``: whether W&B must run offline (see :func:`wandb_offline`);
- ``${fader_wandb_group:}``: the run group, the name of the sweep folder (see :func:`wandb_group`);
- ``${fader_wandb_job:}``: the Hydra job number, 0 outside a multirun.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from fader_lightning.utils.wandb_mode import wandb_offline

log = logging.getLogger(__name__)

# wandb's folders outside the run (artifact staging, artifact cache, downloads), and where an offline run keeps them
RUN_LOCAL_FOLDERS = {"WANDB_DATA_DIR": "staging", "WANDB_CACHE_DIR": "cache", "WANDB_ARTIFACT_DIR": "artifacts"}
_SET_BY_US: dict[str, str] = {}


class RunFolderWandbLogger(WandbLogger):
    """:class:`~lightning.pytorch.loggers.WandbLogger` whose offline runs are self-contained.

    Offline (``offline=true`` or ``WANDB_MODE=offline``), every file of the run lives in its run folder
    (``<save_dir>/wandb/``): the sample-table images and the artifacts wandb would otherwise stage in the home
    folder (``~/.local/share/wandb``, ``~/.cache/wandb``) until ``wandb sync``; folders the user set through
    ``WANDB_DATA_DIR``, ``WANDB_CACHE_DIR`` or ``WANDB_ARTIFACT_DIR`` are kept. ``log_model=true`` works offline:
    the checkpoints are logged as artifacts and uploaded by ``wandb sync`` with the rest of the run.

    Args:
        *args: Passed to :class:`~lightning.pytorch.loggers.WandbLogger`.
        offline: Run offline.
        **kwargs: Passed to :class:`~lightning.pytorch.loggers.WandbLogger`.
    """

    def __init__(self, *args: Any, offline: bool = False, **kwargs: Any) -> None:
        # wandb's own offline mode: Lightning's ``offline`` flag refuses log_model and sets WANDB_MODE process-wide
        super().__init__(*args, offline=False, **kwargs)
        self._run_offline = offline
        if offline:
            self._wandb_init["mode"] = "offline"

    @property
    def experiment(self) -> Any:
        """The wandb run, started on first use with its folders inside the run folder when offline."""
        if self._experiment is None and (
            self._run_offline or os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun")
        ):
            root = Path(self.save_dir or ".") / "wandb"
            for name, folder in RUN_LOCAL_FOLDERS.items():
                if os.environ.get(name) in (None, _SET_BY_US.get(name)):  # never a folder the user chose
                    os.environ[name] = _SET_BY_US[name] = str(root / folder)
        return super().experiment


def wandb_group() -> str:
    """Group of the W&B runs of a job: the sweep folder's name in a multirun, the run folder's name otherwise.

    All jobs of one sweep (and both stages of a ``stage=both`` job) share it, and it names the folder that
    holds their outputs.

    Returns:
        The folder name (a timestamp with the default ``hydra.sweep.dir`` / ``hydra.run.dir``).
    """
    hydra_cfg = HydraConfig.get()
    folder = hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else hydra_cfg.run.dir
    return Path(folder).name


def hydra_job_num() -> int:
    """The Hydra job number: the job's index in a multirun, 0 in a single run."""
    return OmegaConf.select(HydraConfig.get(), "job.num", default=0)


OmegaConf.register_new_resolver("fader_wandb_offline", wandb_offline, replace=True)
OmegaConf.register_new_resolver("fader_wandb_group", wandb_group, replace=True)
OmegaConf.register_new_resolver("fader_wandb_job", hydra_job_num, replace=True)


def log_config(loggers: Iterable[Logger], cfg: DictConfig, stage: str) -> None:
    """Dedicate each W&B run to one stage and log the full resolved config to it.

    The stage is appended to the run name and becomes the run's job type and a tag, so that the two runs of a
    ``stage=both`` job are told apart within their group. Call it before ``fit`` starts the run.

    Args:
        loggers: The trainer's loggers; those that are not :class:`WandbLogger` are skipped.
        cfg: Full config.
        stage: Stage the trainer runs (``ear`` or ``fader``).
    """
    wandb_loggers = [logger for logger in loggers if isinstance(logger, WandbLogger)]
    if not wandb_loggers:
        return
    config = OmegaConf.to_container(cfg, resolve=True)
    for logger in wandb_loggers:
        # WandbLogger starts its run lazily from these wandb.init arguments
        init = logger._wandb_init
        init["name"] = f"{init['name']}-{stage}" if init.get("name") else stage
        init["job_type"] = stage
        init["tags"] = [*(tag for tag in init.get("tags") or () if tag != stage), stage]
        logger.log_hyperparams(config)
        log.info("W&B run %s (group %s) logs to %s", init["name"], init.get("group"), logger.save_dir)


def finish_wandb(exit_code: int | None = None) -> None:
    """Finish the active W&B run, if any, so that the next stage or job starts a run of its own.

    Args:
        exit_code: Exit status recorded with the run; non-zero marks it failed.
    """
    # a run can only be active once wandb was imported; the check keeps wandb out of jobs that do not use it
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)

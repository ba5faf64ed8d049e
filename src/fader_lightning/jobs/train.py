"""The job of ``fader-train`` (and :func:`fader_lightning.api.train`): run the stages of one category.

The stages themselves run in :mod:`fader_lightning.jobs.stages`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from fader_lightning.errors import ConfigError
from fader_lightning.jobs.adopt import adopt_stage1
from fader_lightning.jobs.resume import check_resume
from fader_lightning.jobs.run_dir import link_run, prepare_run_dir, record_config, run_lock
from fader_lightning.jobs.settings_check import check_training_job
from fader_lightning.jobs.stages import check_launch, run_stages
from fader_lightning.keys import FADER, JOB_STAGES
from fader_lightning.utils.threads import apply_threads, plan_for_job

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run the stages named by ``cfg.stage`` and record each in ``metrics.json``.

    A failing stage, and every stage after it, is recorded with ``status: failed`` and the error before
    the error is raised again.

    Args:
        cfg: Full config.

    Returns:
        ``{stage: entry}`` of the stages run.

    Raises:
        ConfigError: When ``cfg.stage`` is unknown.
    """
    if cfg.stage not in JOB_STAGES:
        raise ConfigError(f"stage={cfg.stage!r} is unknown; use one of {', '.join(JOB_STAGES)}")
    if cfg.get("augmentation") not in cfg.get("augmentations", {}):
        raise ConfigError(
            f"augmentation={cfg.get('augmentation')!r} is not a preset; use one of "
            f"{', '.join(cfg.get('augmentations', {}))} (conf/augmentations/default.yaml), or add one there"
        )
    check_training_job(cfg)
    apply_threads(plan_for_job(cfg))  # before any torch work
    check_launch(cfg)
    forced = adopt_stage1(cfg) if cfg.stage == FADER and cfg.fader.get("ckpt_path") else {}
    output_dir = Path(cfg.paths.output_dir)
    check_resume(cfg, output_dir)
    if rank_zero_only.rank != 0:  # DDP ranks > 0 re-enter here while rank 0 holds the folder
        return run_stages(cfg, output_dir, forced)
    with run_lock(output_dir):  # first: a concurrent job must never see, let alone overwrite, this one's files
        prepare_run_dir(
            output_dir,
            resume=bool(cfg.get("ckpt_path")),
            overwrite=bool(cfg.get("overwrite", False)),
            reads={"fader.ckpt_path": cfg.get("fader", {}).get("ckpt_path")},
        )
        record_config(cfg, output_dir)
        link_run(cfg, output_dir)
        return run_stages(cfg, output_dir, forced)

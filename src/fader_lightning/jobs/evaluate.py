"""The job of ``fader-eval``: test a trained checkpoint (stage 1 or FADeR) on any datamodule.

Without ``data=``, a checkpoint is tested on the data it records (its datamodule, root, category and split settings:
a copy anywhere works while that data is here), so its test metrics are reproduced; ``data.*`` overrides change that
data, and ``data=...`` chooses other data. Nothing a checkpoint or a run folder holds is ever instantiated. The
model's input size and resize method are the checkpoint's; its scoring, normal-map statistics and thresholds too,
unless ``scoring.*`` replaces them; and how its U-Net runs, unless ``speed.*`` says otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict

from fader_lightning.configs import build, config_file
from fader_lightning.data.configured import check_dataset
from fader_lightning.data.datamodule import AnomalyDataModule
from fader_lightning.data.source import describe, missing_paths, read_record
from fader_lightning.errors import ConfigError, settings_of
from fader_lightning.jobs.run_dir import prepare_run_dir, record_config, run_lock
from fader_lightning.jobs.stages import job_provenance, record, test_trainer
from fader_lightning.jobs.testing import test_stage
from fader_lightning.models.base_module import AnomalyModule
from fader_lightning.models.loading import OpenedCheckpoint, open_checkpoint
from fader_lightning.utils.background import background_writes
from fader_lightning.utils.threads import apply_threads, plan_for_job
from fader_lightning.utils.wandb_setup import finish_wandb, log_config

log = logging.getLogger(__name__)


def data_overrides() -> list[Override]:
    """The command line's overrides of the ``data`` group and its keys (``data=...``, ``data.*=...``)."""
    task = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    parsed = OverridesParser.create().parse_overrides(list(task))
    return [override for override in parsed if override.key_or_group.split(".")[0] == "data"]


def checkpoint_data(cfg: DictConfig, module: AnomalyModule) -> None:
    """Test on the data the checkpoint records, unless the command line chooses a datamodule (``data=...``).

    The record is untrusted input: it may only name a packaged ``conf/data`` config and set plain values of that
    config's keys (:func:`~fader_lightning.data.source.read_record`); the job's own caches, batch sizes and paths
    stay. ``data.*`` overrides apply on top of it (``data.root=...`` for data that lives elsewhere here).

    Args:
        cfg: The eval config (its ``data`` node is replaced).
        module: The loaded checkpoint.

    Raises:
        CheckpointError: When the record is not one this project writes.
        ConfigError: When the checkpoint records no data, or its files are not here.
    """
    overrides = data_overrides()
    if any(override.key_or_group == "data" for override in overrides):
        return
    if module.data_source is None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} does not record the data it was trained on (it predates that); choose the "
            "data: data=<mvtec|visa|folder|synthetic> data.root=... data.category=..."
        )
    group, values = read_record(module.data_source, cfg.ckpt_path)
    node = config_file(f"data/{group}")
    node.merge_with({**values, "image_size": None, "interpolation": None})  # the model's input is the checkpoint's
    with open_dict(cfg):
        cfg.data = node
    for override in overrides:
        OmegaConf.update(cfg, override.key_or_group, override.value(), force_add=True)
    chosen = OmegaConf.to_container(cfg.data, resolve=True)
    missing = missing_paths(chosen)
    if missing:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} was trained on {describe(group, values)}, and {', '.join(missing)} is not "
            "here: give the same data's location here (e.g. data.root=...), or other data (data=... data.*=...)"
        )
    log.info("testing on the data the checkpoint was trained on: %s", describe(group, chosen))


def apply_checkpoint(cfg: DictConfig, opened: OpenedCheckpoint) -> None:
    """Fill the config with what the checkpoint decides, then apply the scoring and speed settings.

    The checkpoint decides the data (see :func:`checkpoint_data`), the input size, the resize method and the masking
    name.

    Args:
        cfg: The eval config (changed in place).
        opened: The loaded checkpoint.

    Raises:
        ConfigError: When ``data.image_size`` differs from the checkpoint's without ``force=true``.
    """
    module = opened.module
    checkpoint_data(cfg, module)
    height, width = opened.input_size(cfg.data.image_size, "data.image_size", bool(cfg.get("force", False)))
    settings = module.stage1_hparams
    with open_dict(cfg):
        cfg.data.image_size = [height, width] if height != width else height
        cfg.data.interpolation = cfg.data.interpolation or module.preprocessing["interpolation"]
        cfg.masking.name = settings["masking"]["name"]
    scoring = {key: value for key, value in (cfg.get("scoring") or {}).items() if value is not None}
    fpr_limit = module.fpr_limit if cfg.fpr_limit is None else cfg.fpr_limit
    map_storage = cfg.map_storage or module.hparams.get("map_storage", "float16")
    calibration = {key: value for key, value in (cfg.get("calibration") or {}).items() if value is not None}
    stored = module.calibration_settings.as_dict()
    module.set_evaluation({**settings.get("scoring", {}), **scoring}, fpr_limit, map_storage, {**stored, **calibration})
    unet, speed = module.ear.unet, cfg.get("speed") or {}
    with settings_of("speed"):
        unet.set_speed(
            channels_last=unet.channels_last if speed.get("channels_last") is None else speed.channels_last,
            bf16=unet.bf16 if speed.get("bf16") is None else speed.bf16,
        )


def category_scoring(module: AnomalyModule, datamodule: AnomalyDataModule) -> str | None:
    """Score one category of a unified model with that category's own statistics and thresholds, where it has them.

    They apply while the job's scoring and calibration settings are the checkpoint's (its thresholds survived
    ``set_evaluation``); with other settings the test pass calibrates on the category's own normal images anyway.

    Args:
        module: The loaded model.
        datamodule: The data it is tested on.

    Returns:
        The category whose state the model now scores with, or ``None``.
    """
    category = datamodule.category
    if datamodule.unified or category not in module.category_scoring or module.scorer.image_threshold is None:
        return None
    module.use_category(category)
    log.info("%s: scored with the statistics and thresholds the unified model measured on its normal images", category)
    return category


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint on the configured data and record the result in the run folder's ``metrics.json``.

    Args:
        cfg: The composed ``eval.yaml`` config.

    Returns:
        The results entry (also written to ``metrics.json`` under the checkpoint's stage).

    Raises:
        ConfigError: On a missing ``ckpt_path``, a size that differs from the checkpoint's, or a run folder in use.
        CheckpointError: When the checkpoint cannot be loaded.
    """
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise ConfigError("fader-eval needs ckpt_path=<run>/checkpoints/<ear|fader>/last.ckpt")
    apply_threads(plan_for_job(cfg))
    output_dir = Path(cfg.paths.output_dir)
    opened = open_checkpoint(cfg.ckpt_path, "cpu", cfg.get("vit_weights"))
    apply_checkpoint(cfg, opened)
    module = opened.module
    stage = module.stage
    with run_lock(output_dir), background_writes():  # the lock is held until the overlays are written
        prepare_run_dir(
            output_dir, resume=False, overwrite=bool(cfg.get("overwrite", False)), reads={"ckpt_path": cfg.ckpt_path}
        )
        record_config(cfg, output_dir)
        L.seed_everything(cfg.seed, workers=True)
        check_dataset(cfg.data)
        datamodule = build(cfg.data)
        scored_as = category_scoring(module, datamodule)
        trainer = test_trainer(cfg, stage, output_dir)
        log_config(trainer.loggers, cfg, f"eval-{stage}")
        try:
            result = test_stage(trainer, module, datamodule)
        except Exception:
            finish_wandb(exit_code=1)
            raise
        finish_wandb()
        settings = module.stage1_hparams
        entry = {
            "stage": stage,
            "status": "ok",
            "evaluated": True,
            "checkpoint": str(Path(cfg.ckpt_path).resolve()),
            "masking": settings["masking"]["name"],
            "fader": stage == "fader" and module.network.enabled,
            "fill": settings.get("fill", {}).get("fill", "mosaic"),
            **job_provenance(cfg, output_dir),
            **result,
        }
        if scored_as:
            entry["category_scoring"] = scored_as
        record(output_dir, stage, entry)
    return entry

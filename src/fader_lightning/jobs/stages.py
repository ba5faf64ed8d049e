"""Stage orchestration: build the trainer, loggers and callbacks, fit and test each stage, record the results.

:func:`run_stages` runs the stages of ``cfg.stage`` in a prepared run folder (see :mod:`fader_lightning.cli.train`);
:func:`~fader_lightning.jobs.testing.test_stage` is the test pass that ``fader-eval`` shares.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from fader_lightning.configs import build
from fader_lightning.data.datamodule import AnomalyDataModule
from fader_lightning.data.source import data_record
from fader_lightning.data.transforms import as_hw
from fader_lightning.errors import ConfigError
from fader_lightning.jobs import stage1_store
from fader_lightning.jobs.stage1_store import stage1_key
from fader_lightning.jobs.testing import test_stage
from fader_lightning.keys import EAR, FADER, JOB_STAGES, STAGE_ORDER
from fader_lightning.masking import single_mask_problem
from fader_lightning.models.checkpoint_file import (
    check_fits,
    read_checkpoint,
    refresh_weights,
    save_atomically,
    weights_only,
)
from fader_lightning.models.loading import STAGE1_SOURCE_KEYS, load_stage1
from fader_lightning.results import mark_stale, record_stage
from fader_lightning.run_layout import checkpoint_dir, stage_checkpoint
from fader_lightning.utils.background import background_writes
from fader_lightning.utils.provenance import environment
from fader_lightning.utils.threads import plan_for_job
from fader_lightning.utils.wandb_setup import finish_wandb, log_config

log = logging.getLogger(__name__)


def build_callbacks(cfg: DictConfig, stage: str, output_dir: Path) -> list[L.Callback]:
    """Instantiate the configured callbacks; checkpoints of each stage go to their own folder.

    Args:
        cfg: Full config.
        stage: Stage being run.
        output_dir: Run folder.

    Returns:
        The callbacks.
    """
    callbacks = []
    for name, spec in (cfg.get("callbacks") or {}).items():
        callback = build(spec)
        if isinstance(callback, ModelCheckpoint):
            callback.dirpath = str(checkpoint_dir(output_dir, stage))
        log.debug("callback %s: %s", name, type(callback).__name__)
        callbacks.append(callback)
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Instantiate the configured experiment loggers (none for ``logger=none``)."""
    return [build(spec) for spec in (cfg.get("logger") or {}).values()]


def stage_model_spec(
    cfg: DictConfig, stage: str, stage1_ckpt: str | None
) -> tuple[DictConfig, dict[str, Any], dict[str, Any]]:
    """The module config of a stage, the keyword arguments it is built with and the trainer settings it brings.

    Stage 2's node also says which stage-1 model it trains on and how to load it (:data:`STAGE1_SOURCE_KEYS`): the
    job loads that model (:func:`~fader_lightning.models.loading.load_stage1`) and hands it to ``FADeRModule``.

    Args:
        cfg: Full config.
        stage: ``ear`` or ``fader``.
        stage1_ckpt: Stage-1 checkpoint produced in this run (for ``stage=both``), else ``None``.

    Returns:
        The node to instantiate, its extra keyword arguments (stage 2: ``stage1``) and extra trainer arguments.

    Raises:
        ConfigError: When stage 2 has no stage-1 checkpoint to start from.
        CheckpointError: When that checkpoint cannot be loaded or does not fit the configured U-Net.
    """
    if stage == EAR:
        return cfg.model, {}, {}
    resolved = OmegaConf.to_container(cfg.fader, resolve=True)
    spec = cfg.fader.copy()
    with open_dict(spec):
        for key in ("trainer", *STAGE1_SOURCE_KEYS):
            del spec[key]
    source = {key: resolved[key] for key in STAGE1_SOURCE_KEYS if key != "ckpt_path"}
    path = stage1_ckpt or resolved["ckpt_path"]
    if not path:
        raise ConfigError("stage=fader needs fader.ckpt_path=<stage-1 checkpoints/ear/last.ckpt>, or use stage=both")
    trainer = resolved["trainer"]
    return spec, {"stage1": load_stage1(path, "fader.ckpt_path", **source)}, trainer


def run_stage(
    cfg: DictConfig, stage: str, datamodule: AnomalyDataModule, output_dir: Path, stage1_ckpt: str | None = None
) -> dict[str, Any]:
    """Fit and test one stage.

    Args:
        cfg: Full config.
        stage: ``ear`` or ``fader``.
        datamodule: The data.
        output_dir: Run folder.
        stage1_ckpt: For stage 2, the stage-1 checkpoint of this run (overrides ``fader.ckpt_path``).

    Returns:
        The stage's results entry (metrics, timing, checkpoint).
    """
    L.seed_everything(cfg.seed, workers=True)  # each stage starts from the same RNG state, however it is reached
    spec, build_kwargs, trainer_overrides = stage_model_spec(cfg, stage, stage1_ckpt)
    reuse = stage == EAR and cfg.get("reuse_stage1", False)
    key = stage1_key(cfg, datamodule) if reuse else None
    stored = stage1_store.lookup(cfg.paths.stage1_store, key) if reuse else None
    if stored:
        masking = cfg.model.masking
        hint = f"delete it from the stage-1 store {cfg.paths.stage1_store} to train it again"
        model = load_stage1(stored, "paths.stage1_store", None, cfg.model.mask_cache_dir, masking.get("weights_path"),
                            bool(masking.get("pretrained", False)), "masking.weights_path", hint)  # fmt: skip
    else:
        model = build(spec, **build_kwargs)
    model.set_evaluation(cfg.model.scoring, cfg.model.fpr_limit, cfg.model.map_storage, cfg.calibration)
    model.record_data(data_record(cfg.data))  # fader-eval tests a copy of the checkpoint on the same data
    trainer: L.Trainer = build(
        cfg.trainer,
        callbacks=build_callbacks(cfg, stage, output_dir),
        logger=build_loggers(cfg) or False,
        **trainer_overrides,
    )
    if stage == EAR and not stored and cfg.data.get("image_size") is not None:  # before the data is read and cached
        model.check_training_memory(as_hw(cfg.data.image_size), cfg.data.train_batch_size, trainer.strategy.root_device)
    log_config(trainer.loggers, cfg, stage)
    entry: dict[str, Any] = {"status": "ok"}
    if stage == FADER:  # what stage 2 really ran on: the stage-1 checkpoint's settings, not the config's
        entry["masking"] = model.stage1_hparams["masking"]["name"]
        entry["fill"] = model.stage1_hparams["fill"].get("fill", "mosaic")
    if stored:
        log.info("reusing stage-1 checkpoint %s (reuse_stage1=true)", stored)
        entry.update({"train_seconds": 0.0, "checkpoint": str(stored), "reused": True})
    else:
        epochs_key = "fader.trainer.max_epochs" if stage == FADER else "trainer.max_epochs"
        log.info("%s: training for up to %s epochs (%s), time budget %s (trainer.max_time)", stage,
                 trainer.max_epochs, epochs_key, cfg.trainer.get("max_time") or "none")  # fmt: skip
        start = time.perf_counter()
        resume = cfg.get("ckpt_path") if stage == EAR else None
        if resume:  # checked before the job started (fader_lightning.jobs.resume): this folder's, same settings
            hint = "point ckpt_path at the run's checkpoints/ear/last.ckpt to resume it"
            check_fits(read_checkpoint(resume, hint), model, resume, "ckpt_path")
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=weights_only())
        # the file the checkpoint callback wrote, never a name guessed from the folder
        callback = trainer.checkpoint_callback
        written = (callback.last_model_path or callback.best_model_path) if callback else ""
        checkpoint = Path(written) if written else stage_checkpoint(output_dir, stage)
        if not written:  # fast_dev_run and other checkpoint-free runs: keep the final weights anyway
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            save_atomically(trainer, checkpoint)
        entry.update(
            {
                "train_seconds": round(time.perf_counter() - start, 3),
                "epochs": trainer.current_epoch,
                "checkpoint": str(checkpoint),
            }
        )
        if reuse and rank_zero_only.rank == 0:
            stage1_store.save(cfg.paths.stage1_store, key, checkpoint)
    if cfg.get("test", True):  # under DDP every rank tests its share; the metrics gather every rank's images
        entry.update(test_stage(trainer, model, datamodule))
        if model.category_scoring and not stored:  # a unified model's scoring per category, kept in its checkpoint
            refresh_weights(trainer, entry["checkpoint"])
    entry["calibration"] = model.calibration  # thresholds on normal images, never on test labels
    return entry


def test_trainer(cfg: DictConfig, stage: str, output_dir: Path) -> L.Trainer:
    """A trainer with the configured loggers and every callback but checkpointing, for a test pass of its own.

    Args:
        cfg: Full config (``trainer``, ``logger``, ``callbacks``).
        stage: Stage being tested.
        output_dir: Run folder.

    Returns:
        The trainer.
    """
    callbacks = [c for c in build_callbacks(cfg, stage, output_dir) if not isinstance(c, ModelCheckpoint)]
    return build(cfg.trainer, logger=build_loggers(cfg) or False, callbacks=callbacks)


def check_launch(cfg: DictConfig) -> None:
    """Refuse multi-device jobs that Lightning would launch by re-running this command.

    Lightning starts DDP ranks by re-running ``sys.argv``; inside a local multirun that re-runs the
    whole sweep. Under SLURM Lightning uses the scheduler's processes instead.

    Raises:
        ConfigError: For ``trainer.devices > 1`` (or ``num_nodes > 1``) in a local multirun.
    """
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    devices, nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes", 1)
    multi_device = (isinstance(devices, int) and devices > 1) or devices in ("auto", -1) or nodes > 1
    if multi_device and "Slurm" not in str(HydraConfig.get().launcher.get("_target_", "")):
        raise ConfigError(
            f"trainer.devices={devices} in a multirun: each sweep job must use one device (trainer=gpu), "
            "or run the sweep on SLURM (hydra/launcher=slurm with hydra.launcher.tasks_per_node=trainer.devices)"
        )


def job_provenance(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """What every results entry records of its job: data, seed, config, overrides, environment, threads."""
    return {
        "dataset": cfg.data._target_.rsplit(".", 1)[-1],
        "category": OmegaConf.to_container(cfg.data.category)
        if OmegaConf.is_list(cfg.data.category)
        else cfg.data.category,
        "seed": cfg.seed,
        "run_dir": str(output_dir),
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        "config": OmegaConf.to_container(cfg, resolve=True),
        "environment": environment(),
        "threads": {
            **plan_for_job(cfg).as_dict(),
            "threads": torch.get_num_threads(),  # what the job really ran with
            "interop_threads": torch.get_num_interop_threads(),
        },
    }


def provenance(cfg: DictConfig, stage: str, output_dir: Path) -> dict[str, Any]:
    """What a training entry needs to be traced: the stage, its method and the job (:func:`job_provenance`)."""
    return {
        "stage": stage,
        "masking": cfg.masking.name,
        "fader": stage == FADER and bool(cfg.fader.enabled),
        "fill": cfg.model.fill.fill,
        **job_provenance(cfg, output_dir),
    }


def run_stages(cfg: DictConfig, output_dir: Path, forced: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stages of ``cfg.stage``, each recorded in ``metrics.json`` (see :func:`train`).

    Args:
        cfg: Full config.
        output_dir: The run folder.
        forced: What ``force=true`` replaced of the stage-1 checkpoint's settings (``stage=fader``), recorded in
            stage 2's entry.

    Returns:
        ``{stage: entry}`` of the stages run.
    """
    L.seed_everything(cfg.seed, workers=True)
    stages = JOB_STAGES[cfg.stage]
    results: dict[str, Any] = {}
    datamodule: AnomalyDataModule | None = None
    with background_writes():  # overlays are drawn while the job goes on; the job waits for them at its end
        for index, stage in enumerate(stages):
            stage1_ckpt = results.get(EAR, {}).get("checkpoint")
            reason = single_mask_problem(cfg.masking.name) if stage == FADER and EAR in stages else None
            if reason:
                record(output_dir, stage, {**provenance(cfg, stage, output_dir), "status": "not_applicable",
                                                 "error": reason})  # fmt: skip
                log.info("%s: skipped", reason)
                continue
            if stage == EAR:  # a later stage's entry no longer describes the model this stage is about to train
                stale(output_dir, EAR, cfg.get("ckpt_path"))
            try:
                datamodule = datamodule or build(cfg.data)
                entry = run_stage(cfg, stage, datamodule, output_dir, stage1_ckpt)
            except Exception as err:
                for skipped in stages[index:]:  # later stages cannot run either; mark them so tables show it
                    failed = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
                    trained = stage_checkpoint(output_dir, skipped)
                    if trained.is_file():  # what the failed stage trained before it stopped
                        failed["checkpoint"] = str(trained)
                    try:
                        record(output_dir, skipped, {**provenance(cfg, skipped, output_dir), **failed})
                    except OSError as unwritten:  # a full disk: say so, and end with the error that stopped the job
                        log.error("%s failed, and its entry could not be written to %s/metrics.json (%s)",
                                  skipped, output_dir, unwritten)  # fmt: skip
                finish_wandb(exit_code=1)
                raise
            finally:
                finish_wandb()
            results[stage] = {**provenance(cfg, stage, output_dir), **entry}
            if stage == FADER and forced:
                results[stage]["forced"] = forced
            record(output_dir, stage, results[stage])
    return results


@rank_zero_only
def stale(output_dir: Path, stage: str, resumed: str | None) -> None:
    """Mark the ``metrics.json`` entries of the stages after ``stage`` stale: ``stage`` is trained again."""
    how = f"resumed from {resumed}" if resumed else "trained again"
    mark_stale(output_dir, STAGE_ORDER[STAGE_ORDER.index(stage) + 1 :],
               f"{stage} was {how} after this entry was written; run this stage again on the new model")  # fmt: skip


@rank_zero_only
def record(output_dir: Path, stage: str, entry: dict[str, Any]) -> None:
    """Write a stage's entry to ``metrics.json``, from the global-zero process only (DDP runs one per device)."""
    record_stage(output_dir, stage, entry)

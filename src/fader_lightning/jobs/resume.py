"""Resuming stage 1 (``ckpt_path=<run>/checkpoints/ear/last.ckpt``): only the run this folder started, as it started.

A resume continues training that already ran, so it must run in the folder that wrote the checkpoint (by default
it does: ``conf/hydra/default.yaml`` points ``hydra.run.dir`` at that folder) and with the settings the checkpoint
was trained with: its U-Net, masking, fill, input size, resize method and data. Anything else would train the later
epochs on other inputs than the first ones while ``metrics.json`` records only the new values. Everything is checked
before any work, against the checkpoint's hyper-parameters (read weights-only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fader_lightning.configs import resumed_run
from fader_lightning.data.source import PATH_KEYS, RECORD_KEY, data_record
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.jobs.adopt import SETTINGS, comparable, differing
from fader_lightning.keys import EAR, FADER
from fader_lightning.models.checkpoint_file import read_checkpoint
from fader_lightning.run_layout import stage_checkpoint

RESUMED = tuple(setting for setting in SETTINGS if setting.hparam != "scoring")
"""What a resume must share with its checkpoint; the scoring is fitted after training, so it may change."""


def check_resume(cfg: DictConfig, output_dir: Path) -> None:
    """Refuse a resume that does not continue this folder's own stage-1 run with the same settings.

    Args:
        cfg: The job's config (``ckpt_path``, ``stage``, the model and data settings).
        output_dir: The job's run folder.

    Raises:
        ConfigError: For ``ckpt_path`` with ``stage=fader``, a checkpoint outside ``output_dir/checkpoints/ear/``, or
            a setting that differs from the checkpoint's (each named with both values).
        CheckpointError: When the file does not exist or cannot be read as a checkpoint.
    """
    path = cfg.get("ckpt_path")
    if not path:
        return
    if cfg.stage == FADER:
        raise ConfigError(
            f"ckpt_path={path} resumes stage 1, and stage=fader trains only stage 2: give the stage-1 model as "
            "fader.ckpt_path=..., or resume stage 1 with stage=ear or stage=both"
        )
    if not Path(path).is_file():
        raise CheckpointError(
            f"ckpt_path={path} does not exist; point it at the run's checkpoints/ear/last.ckpt to resume it"
        )
    own = stage_checkpoint(output_dir, EAR).parent.resolve()
    if Path(path).resolve().parent != own:
        started = resumed_run(path)
        where = f"the run folder {started}" if started else "a run folder's checkpoints/ear/"
        raise ConfigError(
            f"ckpt_path={path} is not a stage-1 checkpoint of this run folder {output_dir}: a resume continues the "
            f"run that wrote it, in {where}. Leave hydra.run.dir unset (a resume then runs in the checkpoint's run "
            "folder), or start a new run without ckpt_path"
        )
    hparams = read_checkpoint(path, "point ckpt_path at the run's checkpoints/ear/last.ckpt").get(
        "hyper_parameters", {}
    )
    problems = _setting_changes(cfg, hparams) + _data_changes(cfg, hparams.get(RECORD_KEY))
    if problems:
        raise ConfigError(
            f"ckpt_path={path} was trained with other settings than this job's: {'; '.join(problems)}. A resume "
            "continues that training as it started: drop those overrides (or give the checkpoint's values), or "
            "start a new run without ckpt_path"
        )


def _setting_changes(cfg: DictConfig, hparams: dict[str, Any]) -> list[str]:
    """``key=<job value> here, <checkpoint value> in the checkpoint`` for each model setting that differs."""
    changes = []
    for setting in RESUMED:
        if hparams.get(setting.hparam) is None:  # a checkpoint that predates the setting
            continue
        stored = comparable(setting, hparams[setting.hparam])
        for key, values in differing(stored, comparable(setting, OmegaConf.select(cfg, setting.key)), [""]).items():
            name = ".".join(filter(None, (setting.key, key)))
            changes.append(f"{name}={values['job']} here, {values['checkpoint']} in the checkpoint")
    return changes


def _data_changes(cfg: DictConfig, record: Any) -> list[str]:
    """``data.<key>=<job value> here, <checkpoint value> in the checkpoint`` for each data value that differs."""
    if not isinstance(record, dict):  # a checkpoint that predates the record
        return []
    job = data_record(cfg.data)
    changes = []
    for key in sorted(set(record) | set(job)):
        stored, mine = record.get(key), job.get(key)
        if key in PATH_KEYS and stored and mine:
            stored, mine = os.path.realpath(str(stored)), os.path.realpath(str(mine))
        if stored != mine:
            name = "data" if key == "_target_" else f"data.{key}"
            changes.append(f"{name}={job.get(key)} here, {record.get(key)} in the checkpoint")
    return changes

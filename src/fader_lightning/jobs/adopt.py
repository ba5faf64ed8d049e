"""Stage 2 on its own (``stage=fader``): the stage-1 checkpoint's settings become the job's.

A stage-1 checkpoint states its U-Net, masking, fill, scoring, input size and resize method. A ``stage=fader`` job
takes each of them from there, so the user repeats nothing. A command-line override that contradicts the checkpoint
is an error naming both values, before any work; the input size, resize method and scoring may instead be honoured
with ``force=true`` (stage 2 then trains and scores that way, and ``metrics.json`` records what was forced). The U-Net,
masking and fill are what the frozen model was trained with, so they can never be replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from fader_lightning.data.transforms import as_hw
from fader_lightning.errors import ConfigError
from fader_lightning.models.checkpoint_file import read_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """A setting a stage-1 checkpoint decides: its config key, its hyper-parameter, whether force may replace it."""

    key: str
    hparam: str
    forceable: bool


SETTINGS = (
    Setting("model.unet", "unet", forceable=False),
    Setting("masking", "masking", forceable=False),
    Setting("model.fill", "fill", forceable=False),
    Setting("model.scoring", "scoring", forceable=True),
    Setting("data.image_size", "image_size", forceable=True),
    Setting("data.interpolation", "interpolation", forceable=True),
)
"""What stage 2 takes from its stage-1 checkpoint."""


def given_keys() -> list[str]:
    """The keys the command line sets (``key=value``, ``+key=value``, a group choice such as ``masking=saliency``)."""
    task = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    return [override.lstrip("+~").split("=", 1)[0] for override in task]


def comparable(setting: Setting, value: Any) -> Any:
    """A setting's value in a form that compares equal across a checkpoint and a config (plain, sizes as [h, w])."""
    if value is None:
        return None
    if setting.hparam == "image_size":
        return list(as_hw(value))
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def differing(stored: Any, job: Any, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Where the job's value contradicts the checkpoint's: ``{sub-key: {"checkpoint": ..., "job": ...}}``.

    Args:
        stored: The checkpoint's value.
        job: The job's value.
        keys: The overridden sub-keys; ``""`` for the whole setting (a group choice, a whole mapping or a scalar).
    """
    if not isinstance(stored, Mapping) or not isinstance(job, Mapping):
        return {} if stored == job else {"": {"checkpoint": stored, "job": job}}
    compared = list(job) if "" in keys else keys
    return {key: {"checkpoint": stored.get(key), "job": job.get(key)} for key in compared
            if stored.get(key) != job.get(key)}  # fmt: skip


def adopt_stage1(cfg: DictConfig) -> dict[str, Any]:
    """Fill a ``stage=fader`` job's config with its stage-1 checkpoint's settings (see the module docstring).

    Args:
        cfg: The job's config (changed in place); ``fader.ckpt_path`` names the stage-1 checkpoint.

    Returns:
        What ``force=true`` replaced: ``{key: {"checkpoint": value, "job": value}}`` (empty when nothing).

    Raises:
        ConfigError: When an override contradicts the checkpoint and cannot be, or was not, forced.
        CheckpointError: When the checkpoint cannot be read.
    """
    path = cfg.fader.ckpt_path
    hparams = read_checkpoint(path, "point fader.ckpt_path at a stage-1 checkpoint").get("hyper_parameters", {})
    given, force, forced = given_keys(), bool(cfg.get("force", False)), {}
    for setting in SETTINGS:
        if hparams.get(setting.hparam) is None:  # a checkpoint that predates the setting: the job's value stands
            continue
        stored = comparable(setting, hparams[setting.hparam])
        keys = [key.removeprefix(setting.key).lstrip(".") for key in given
                if key == setting.key or key.startswith(f"{setting.key}.")]  # fmt: skip
        changed = differing(stored, comparable(setting, OmegaConf.select(cfg, setting.key)), keys) if keys else {}
        if changed and not (force and setting.forceable):
            raise ConfigError(_message(setting, changed, path))
        if changed:
            forced.update({".".join(filter(None, (setting.key, key))): value for key, value in changed.items()})
            if setting.hparam == "image_size":
                with open_dict(cfg):
                    cfg.fader.force_image_size = True
            log.warning("force=true: stage 2 uses the command line's %s, not the stage-1 checkpoint's", setting.key)
            continue
        with open_dict(cfg):
            OmegaConf.update(cfg, setting.key, stored, merge=False, force_add=True)
    log.info("stage 2 takes the stage-1 model's settings from %s: %s", path,
             ", ".join(f"{s.key}={comparable(s, OmegaConf.select(cfg, s.key))}" for s in SETTINGS[1:]))  # fmt: skip
    return forced


def _message(setting: Setting, differing: Mapping[str, Any], path: str) -> str:
    pairs = "; ".join(
        f"{'.'.join(filter(None, (setting.key, key)))}={value['job']} on the command line, {value['checkpoint']} in "
        "the checkpoint"
        for key, value in differing.items()
    )
    if setting.forceable:
        fix = "drop the override (the checkpoint's value is used), or set force=true to train and score stage 2 so"
    else:
        fix = "drop the override: stage 2 runs the stage-1 model as it was trained"
    return f"the stage-1 checkpoint fader.ckpt_path={path} contradicts the command line: {pairs}; {fix}"

"""Loading a stage module from a checkpoint file: either stage for inference, stage 1 for stage 2.

Above the stage modules (it builds them); the file format below them is :mod:`fader_lightning.models.checkpoint_file`.

* :func:`open_checkpoint` is the one recipe of every command that runs a checkpoint (``fader-eval``,
  ``fader-predict``, ``fader-export``, the Python API): the module (:func:`load_module`, either stage; the module class
  of each stage is :data:`STAGE_MODULES`), the ``metrics.json`` entry of its run, and its input size.
* :func:`load_stage1` loads and checks a stage-1 checkpoint for stage 2, a resume and the stage-1 store;
  :meth:`EARModule.from_settings <fader_lightning.models.ear.module.EARModule.from_settings>` rebuilds the frozen
  stage-1 model a FADeR checkpoint holds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fader_lightning.data.transforms import checkpoint_size
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.keys import EAR, FADER
from fader_lightning.models.base_module import AnomalyModule
from fader_lightning.models.checkpoint_file import STAGE_KEY, VIT_KEYS, read_checkpoint, stage1_overrides, weights_only
from fader_lightning.models.ear.module import EARModule
from fader_lightning.models.fader.module import FADeRModule
from fader_lightning.results import run_entry
from fader_lightning.run_layout import stage_checkpoint

log = logging.getLogger(__name__)

STAGE_MODULES: Mapping[str, type[AnomalyModule]] = {EAR: EARModule, FADER: FADeRModule}
"""Module class of each stage (``ear``, ``fader``): a checkpoint's stage picks the class that loads it."""
LEGACY_STAGE_KEYS: dict[str, tuple[str, ...]] = {FADER: ("ckpt_path", "patch_size"), EAR: ("unet", "masking")}
"""Hyper-parameters that tell the stage of a checkpoint written before checkpoints stated it (FADeR first).
Kept until 2027-06-01 (docs/ARCHITECTURE.md, "Legacy checkpoints")."""
STAGE1_SOURCE_KEYS = ("ckpt_path", "expected_unet", "mask_cache_dir", "vit_weights", "allow_download")
"""Keys of the ``fader`` config node that name stage 2's stage-1 checkpoint and say how to load it
(:func:`load_stage1`'s arguments); the rest of the node are ``FADeRModule``'s settings."""
CHECKPOINT_HINT = "pass <run>/checkpoints/<ear|fader>/last.ckpt"


def checkpoint_stage(checkpoint: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    """The stage a checkpoint holds: the one it states, else the one its hyper-parameters fit (older files).

    Args:
        checkpoint: The checkpoint dictionary (:func:`read_checkpoint`).
        path: The file, for the message.

    Returns:
        ``"ear"`` or ``"fader"``.

    Raises:
        CheckpointError: When it states no known stage and its hyper-parameters fit neither.
    """
    stated = checkpoint.get(STAGE_KEY)
    if stated in STAGE_MODULES:
        return stated
    hparams = checkpoint.get("hyper_parameters", {})
    for stage, keys in LEGACY_STAGE_KEYS.items():
        if all(key in hparams for key in keys):
            return stage
    raise CheckpointError(
        f"{path} is neither a stage-1 (EAR) nor a stage-2 (FADeR) checkpoint: it states the stage {stated!r} and "
        f"its hyper-parameters {sorted(hparams)} lack {' / '.join('+'.join(k) for k in LEGACY_STAGE_KEYS.values())}"
    )


def load_module(path: str | os.PathLike[str], device: str = "cpu", vit_weights: str | None = None) -> AnomalyModule:
    """Load a stage-1 or stage-2 checkpoint for inference.

    The module is put in eval mode on ``device``; its mask cache keeps masks in memory only, so inference never
    writes to the training run's disk cache (or to any folder the checkpoint names), and nothing is downloaded.
    A FADeR checkpoint is self-contained (it holds the frozen stage-1 weights and settings).

    Args:
        path: Checkpoint file (``<run>/checkpoints/<stage>/last.ckpt``, or a copy anywhere).
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
        vit_weights: ViT state dict for a model with attention masking (checkpoints do not store it).

    Returns:
        The module (``stage`` is ``"ear"`` or ``"fader"``).

    Raises:
        CheckpointError: When the file is missing, unreadable, of neither stage or does not fit its settings.
        ConfigError: When ``device`` is unknown or CUDA is asked for but unavailable.
    """
    path = Path(path)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r} is unknown; use cpu, cuda or auto")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but CUDA is not available here; use device=cpu")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; {CHECKPOINT_HINT}")
    checkpoint = read_checkpoint(path, CHECKPOINT_HINT)
    stage = checkpoint_stage(checkpoint, path)
    hparams = checkpoint.get("hyper_parameters", {})
    try:
        if stage == EAR:
            overrides = stage1_overrides(hparams, path, None, vit_weights)
        else:  # the frozen stage-1 model, rebuilt from the settings it stores (its weights are in the state dict)
            overrides = {
                "stage1": EARModule.from_settings(hparams.get("stage1_settings") or {}, path, None, vit_weights)
            }
        module = STAGE_MODULES[stage].load_from_checkpoint(
            path, map_location="cpu", weights_only=weights_only(), **overrides
        )
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit its own {stage} settings: {err}") from err
    log.info("loaded %s checkpoint %s on %s", stage, path, device)
    return module.eval().to(device)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def load_stage1(
    path: str | os.PathLike[str],
    key: str,
    expected_unet: Mapping[str, Any] | None = None,
    mask_cache_dir: str | None = None,
    vit_weights: str | None = None,
    allow_download: bool = False,
    vit_key: str = VIT_KEYS,
    hint: str | None = None,
) -> EARModule:
    """Load a stage-1 checkpoint for stage 2 or the stage-1 store, checking that it fits the configured U-Net.

    Args:
        path: Checkpoint written by stage 1 (``checkpoints/ear/last.ckpt`` of its run).
        key: The config key that named the file, for messages (``fader.ckpt_path``, ``paths.stage1_store``).
        expected_unet: U-Net settings the config asks for; any key that differs from the checkpoint's is an error.
            ``None`` skips the check.
        mask_cache_dir: The job's mask cache folder (never the checkpoint's).
        vit_weights: The job's ViT weights for attention masking (see :func:`stage1_overrides`).
        allow_download: Whether the job allows timm to fetch pretrained ViT weights.
        vit_key: The option that sets ``vit_weights``, for messages.
        hint: What to do when the file cannot be read (default: point ``key`` at a stage-1 checkpoint).

    Returns:
        The stage-1 module, on CPU.

    Raises:
        CheckpointError: When the file is missing, is not a stage-1 checkpoint, or does not match.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{key}={path} is a folder; point it at the stage-1 checkpoint file inside it, e.g. "
            f"{stage_checkpoint(path, 'ear')}"
        )
    if not path.is_file():
        raise CheckpointError(
            f"stage-1 checkpoint {path} does not exist; train stage 1 first (stage=ear) and set {key} to its "
            "checkpoints/ear/last.ckpt, or run stage=both"
        )
    checkpoint = read_checkpoint(path, hint or f"point {key} at a stage-1 checkpoint")
    hparams = checkpoint.get("hyper_parameters", {})
    if checkpoint.get(STAGE_KEY, EAR) != EAR or "unet" not in hparams or "masking" not in hparams:
        raise CheckpointError(f"{path} is not a stage-1 (EAR) checkpoint: it has no U-Net or masking settings")
    for name, value in (expected_unet or {}).items():
        stored = hparams["unet"].get(name)
        if stored is not None and _as_list(stored) != _as_list(value):
            raise CheckpointError(
                f"stage-1 checkpoint {path} was trained with model.unet.{name}={stored} but the config asks for "
                f"{value}; drop the override or point {key} at a matching checkpoint"
            )
    overrides = stage1_overrides(hparams, path, mask_cache_dir, vit_weights, allow_download, vit_key)
    try:
        return EARModule.load_from_checkpoint(path, map_location="cpu", weights_only=weights_only(), **overrides)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit its own U-Net settings {hparams['unet']}: {err}") from err


@dataclass(frozen=True)
class OpenedCheckpoint:
    """A checkpoint loaded for inference, with what its training run recorded.

    Attributes:
        module: The stage module, in eval mode.
        path: The checkpoint file.
        run: The ``metrics.json`` entry of the run that wrote it (empty for a copy outside its run folder).
    """

    module: AnomalyModule
    path: Path
    run: Mapping[str, Any] = field(default_factory=dict)

    def input_size(
        self, given: int | Sequence[int] | None = None, key: str = "image_size", force: bool = False
    ) -> tuple[int, int]:
        """The size the model runs at (:func:`~fader_lightning.data.transforms.checkpoint_size`), checked to fit it.

        Args:
            given: The size the job asks for (``key``), or ``None`` for the checkpoint's.
            key: The option that gave it, for messages.
            force: Accept a size that differs from the checkpoint's (``force=true``).

        Returns:
            Height and width.

        Raises:
            ConfigError: When the size differs from the checkpoint's without ``force``, nothing states it, or the
                U-Net cannot take it.
        """
        stored = self.run.get("config", {}).get("data", {}).get("image_size")
        size = checkpoint_size(given, self.module.trained_size, key, force, stored)
        self.module.ear.unet.check_input_size(*size)
        return size


def open_checkpoint(
    path: str | os.PathLike[str], device: str = "cpu", vit_weights: str | None = None
) -> OpenedCheckpoint:
    """Load a checkpoint of either stage for inference, with its run's ``metrics.json`` entry.

    Args:
        path: Checkpoint file (``<run>/checkpoints/<stage>/last.ckpt``, or a copy anywhere).
        device: ``cpu``, ``cuda`` or ``auto``.
        vit_weights: ViT state dict for a model with attention masking.

    Returns:
        The module and its run's record; :meth:`OpenedCheckpoint.input_size` gives its input size.

    Raises:
        CheckpointError: When the file is missing, unreadable, of neither stage or does not fit its settings.
        ConfigError: When ``device`` is unknown or unavailable.
    """
    module = load_module(path, device, vit_weights)
    return OpenedCheckpoint(module, Path(path), run_entry(path, module.stage))

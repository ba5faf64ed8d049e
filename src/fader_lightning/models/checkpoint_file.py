"""Checkpoint files: safe reading, the stage and digest they state, and atomic, DDP-safe writing.

The low layer of checkpoints, which the stage modules use; loading a module from a file is
:mod:`fader_lightning.models.loading`, above the modules.

* Reading is weights-only everywhere, so a checkpoint can never run code, unless the user opts in: every load path
  reads with :func:`read_checkpoint` and hands :func:`weights_only` to Lightning, whatever torch's own default is. Set
  ``FADER_TRUST_CHECKPOINTS=1`` to load a file you trust that holds pickled objects.
* Every checkpoint states its stage (``checkpoint["stage"]``) and the digest of its weights and settings
  (``checkpoint["weights_sha256"]``), both written by the stage modules' ``on_save_checkpoint``.
* Writing is atomic (a temporary file renamed into place) and collective under DDP (:func:`save_atomically`,
  :func:`refresh_weights`); :func:`write_checkpoint` writes a module that no trainer holds the same way.
* What the loading job, never the checkpoint, decides: the mask cache folder and attention's ViT weights
  (:func:`stage1_overrides`).
* The frozen mask generator's weights (a DINO ViT: 87 MB) are left out of every checkpoint and rebuilt from the
  settings (:func:`strip_frozen`, :func:`restore_frozen`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from fader_lightning.errors import CheckpointError
from fader_lightning.utils.io import atomic_save

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule

TRUST_ENV = "FADER_TRUST_CHECKPOINTS"
STAGE_KEY = "stage"
"""Key of the stage name in a checkpoint dictionary."""
DIGEST_KEY = "weights_sha256"
"""Key of the digest of a checkpoint's weights and hyper-parameters (:func:`weights_digest`)."""
CATEGORY_SCORING_KEY = "category_scoring"
"""Key of a unified model's per-category scoring state (``{category: {map_mean, map_std, thresholds}}``)."""
VIT_KEYS = "fader.vit_weights (training) or vit_weights= (eval, predict, export)"
"""The options that give attention masking's ViT weights, which checkpoints do not store."""


def weights_only() -> bool:
    """bool: ``False`` only when ``FADER_TRUST_CHECKPOINTS`` is ``1``, ``true`` or ``yes``."""
    return os.environ.get(TRUST_ENV, "").strip().lower() not in ("1", "true", "yes")


def weights_digest(checkpoint: Mapping[str, Any]) -> str:
    """The SHA-256 of a checkpoint's weights (names, dtypes, shapes, bytes) and hyper-parameters.

    The stage modules store it when they save (``on_save_checkpoint``) and :func:`read_checkpoint` compares it: a
    file damaged after it was written (a flipped bit, a partial copy) is refused instead of scoring differently.

    Args:
        checkpoint: The checkpoint dictionary.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    for name, value in sorted(checkpoint.get("state_dict", {}).items()):
        digest.update(f"{name} {getattr(value, 'dtype', type(value).__name__)} {list(getattr(value, 'shape', []))}"
                      .encode())  # fmt: skip
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    hparams = checkpoint.get("hyper_parameters", {})
    digest.update(json.dumps(dict(hparams), sort_keys=True, default=str).encode())
    for category, state in sorted(checkpoint.get(CATEGORY_SCORING_KEY, {}).items()):  # a unified model's, if any
        for name, value in sorted(state.items()):
            digest.update(f"{category} {name} {list(value.shape)}".encode())
            digest.update(value.detach().cpu().float().contiguous().reshape(-1).numpy().tobytes())
    return digest.hexdigest()


def read_checkpoint(path: str | Path, hint: str) -> dict[str, Any]:
    """Load a checkpoint file on the CPU, weights-only unless trusted.

    Args:
        path: The file.
        hint: What the user should point the key at, for the error message.

    Returns:
        The checkpoint dictionary.

    Raises:
        CheckpointError: When the file cannot be read as a (weights-only) checkpoint; nothing in it has run.
    """
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): a copy or a save that did not finish; {hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only())
    except Exception as err:
        reason = (str(err).splitlines() or [""])[0]
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {reason}); {hint}. "
            f"Checkpoints load weights-only, so pickled code never runs; set {TRUST_ENV}=1 only for a file you "
            "trust that holds other objects"
        ) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dictionary; {hint}")
    check_category_scoring(checkpoint.get(CATEGORY_SCORING_KEY), path, hint)
    stored = checkpoint.get(DIGEST_KEY)
    if stored is not None and stored != weights_digest(checkpoint):
        raise CheckpointError(
            f"{path} was damaged after it was written: its weights or settings no longer match the digest saved "
            f"with them ({DIGEST_KEY}); copy it again from its source, or train it again"
        )
    return checkpoint


SCORING_STATE = frozenset({"map_mean", "map_std", "thresholds"})
"""What a unified model keeps per category (:meth:`~fader_lightning.models.scoring.AnomalyScorer.calibrated_state`)."""


def check_category_scoring(states: Any, path: str | Path, hint: str) -> None:
    """Refuse a malformed per-category scoring record of a unified model (read from a file: untrusted).

    It must be ``{category: {map_mean, map_std, thresholds}}`` of float tensors.

    Raises:
        CheckpointError: Naming the file and the record.
    """
    if states is None:
        return
    fine = isinstance(states, dict) and all(
        isinstance(category, str) and isinstance(state, dict) and set(state) == SCORING_STATE
        and all(isinstance(value, torch.Tensor) and value.is_floating_point() for value in state.values())
        for category, state in states.items()
    )  # fmt: skip
    if not fine:
        raise CheckpointError(
            f"{path} holds a {CATEGORY_SCORING_KEY} record that is not {{category: {{map_mean, map_std, thresholds}}}} "
            f"of float tensors, so its per-category scoring cannot be used; {hint}"
        )


def check_fits(checkpoint: dict[str, Any], module: torch.nn.Module, path: str | Path, key: str) -> None:
    """Check that a checkpoint's weights fit a module before Lightning loads them.

    The module's ``on_load_checkpoint`` (if any) first restores what its checkpoints leave out on purpose, such
    as frozen weights rebuilt from settings, on a copy of the state dictionary.

    Args:
        checkpoint: The checkpoint dictionary (:func:`read_checkpoint`).
        module: The module the job built from its config.
        path: The checkpoint file, for the message.
        key: The config key that named the file, for the message.

    Raises:
        CheckpointError: When a weight is missing, unexpected or of another shape, naming the first few, both
            architectures' settings where the checkpoint records them, and the fix.
    """
    state = dict(checkpoint.get("state_dict", {}))
    if hasattr(module, "on_load_checkpoint"):
        module.on_load_checkpoint({**checkpoint, "state_dict": state})
    # empty buffers (normal-map statistics, thresholds) are measured after fitting: any shape, or none, fits them
    unfitted = {name for name, value in module.state_dict().items() if value.numel() == 0}
    own = {name: value for name, value in module.state_dict().items() if name not in unfitted}
    state = {name: value for name, value in state.items() if name not in unfitted}
    problems = [f"{name}: {list(state[name].shape)} in the file, {list(own[name].shape)} here"
                for name in state if name in own and state[name].shape != own[name].shape]  # fmt: skip
    problems += [f"{name}: only in the file" for name in state if name not in own]
    problems += [f"{name}: missing from the file" for name in own if name not in state]
    if problems:
        stored = checkpoint.get("hyper_parameters", {}).get("unet")
        built = getattr(module, "hparams", {}).get("unet")
        settings = f" It was trained with model.unet={stored}; this job builds {built}." if stored != built else ""
        raise CheckpointError(
            f"{key}={path} does not fit the model this job builds ({len(problems)} weights differ, e.g. "
            f"{'; '.join(problems[:3])}).{settings} Resume with the settings it was trained with, or start a new "
            f"run without {key}"
        )


def save_atomically(
    trainer: L.Trainer, filepath: str | os.PathLike[str], write: Callable[[str], None] | None = None
) -> None:
    """Write a checkpoint under a temporary name and rename it into place, from the global-zero process.

    Every process calls this (Lightning's checkpoint writing is collective); only global zero writes and renames.

    Args:
        trainer: The trainer whose state is saved.
        filepath: Destination file.
        write: Writer of the checkpoint at a given path; ``trainer.save_checkpoint`` when ``None``.
    """
    tmp = f"{filepath}.{os.getpid()}.tmp"
    try:
        if write is None:
            trainer.save_checkpoint(tmp, weights_only=False)  # resumable: optimizer and loop state included
        else:
            write(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, filepath)
    finally:
        if trainer.is_global_zero and os.path.exists(tmp):
            os.remove(tmp)
    trainer.strategy.barrier("atomic_checkpoint")


def refresh_weights(trainer: L.Trainer, filepath: str | os.PathLike[str]) -> None:
    """Rewrite a checkpoint's weights and buffers with the module's current ones, keeping its training state.

    What a module measures after its last epoch (thresholds, normal-map statistics) then travels in the final
    checkpoint, while its epoch, optimizer and loop state stay those of the last epoch, so resuming is unchanged.
    Every process calls this; global zero rewrites the file atomically.

    Args:
        trainer: The trainer whose module is saved.
        filepath: A checkpoint the trainer wrote.
    """
    if trainer.is_global_zero:
        module = trainer.lightning_module
        _store(module, read_checkpoint(filepath, "the checkpoint this run has just written"), filepath)
    trainer.strategy.barrier("refresh_weights")


def write_checkpoint(module: LightningModule, path: str | os.PathLike[str]) -> Path:
    """Write a module's weights and hyper-parameters as a loadable checkpoint, atomically, outside any trainer.

    The file is what a trainer's final checkpoint holds for inference (the module's ``on_save_checkpoint`` adds the
    stage and digest and leaves the frozen weights out), without optimizer or loop state.

    Args:
        module: The module.
        path: Destination file.

    Returns:
        ``path``.
    """
    _store(module, {"hyper_parameters": dict(module.hparams), "pytorch-lightning_version": L.__version__}, path)
    return Path(path)


def _store(module: LightningModule, checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``checkpoint`` with the module's current weights, atomically; what the module leaves out stays out."""
    checkpoint["state_dict"] = module.state_dict()
    module.on_save_checkpoint(checkpoint)
    atomic_save(path, lambda tmp: torch.save(checkpoint, tmp))


def strip_frozen(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A state dict without the frozen weights under ``prefix`` (they are rebuilt from the settings)."""
    return {key: value for key, value in state_dict.items() if not key.startswith(prefix)}


def restore_frozen(state_dict: dict[str, Any], own: Mapping[str, Any], prefix: str) -> None:
    """Put a freshly built module's frozen weights under ``prefix`` back into a loaded state dict (strict loading)."""
    for key, value in own.items():
        if key.startswith(prefix):
            state_dict.setdefault(key, value)


def stage1_overrides(
    hparams: Mapping[str, Any],
    path: str | Path,
    mask_cache_dir: str | None,
    vit_weights: str | None = None,
    allow_download: bool = False,
    key: str = "vit_weights",
) -> dict[str, Any]:
    """Hyper-parameters the loading job decides for a stage-1 model, whatever its checkpoint says.

    A checkpoint never decides where files are written (the mask cache folder is the job's) and never triggers a
    download: attention masking's ViT weights are not stored in checkpoints, so they come from the job's
    ``vit_weights``, else from the weights file the checkpoint names if it exists here, else from a download only
    when the job allows it (``masking=attention`` with ``pretrained=true`` in a training job).

    Args:
        hparams: The stage-1 hyper-parameters (of a stage-1 checkpoint, or ``stage1_settings`` of a FADeR one).
        path: The checkpoint, for messages.
        mask_cache_dir: The job's mask cache folder (``None``: memory only).
        vit_weights: The job's ViT state dict, if it gives one.
        allow_download: Whether the job allows timm to fetch pretrained weights.
        key: The option that sets ``vit_weights``, for messages.

    Returns:
        Overrides for ``load_from_checkpoint`` (``mask_cache_dir`` and ``masking``).

    Raises:
        CheckpointError: When attention masking has no weights here and the job does not allow a download.
    """
    masking = dict(hparams.get("masking") or {})
    if masking.get("name") == "attention":
        stored = masking.get("weights_path")
        if vit_weights:
            masking["weights_path"] = str(vit_weights)
        elif stored and not Path(stored).expanduser().is_file():
            raise CheckpointError(
                f"{path} computes attention masks with the ViT weights {stored}, which do not exist here "
                f"(checkpoints do not store them); pass {key}=<path of the same state dict>"
            )
        elif not stored and masking.get("pretrained", True) and not allow_download:
            raise CheckpointError(
                f"{path} computes attention masks with the pretrained {masking.get('model_name', 'ViT')}, whose "
                f"weights checkpoints do not store, and loading a checkpoint never downloads; pass {key}=<a local "
                "state dict of it>"
            )
    return {"mask_cache_dir": mask_cache_dir, "masking": masking}

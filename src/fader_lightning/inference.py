"""Shared pieces of the deployment commands (``fader-predict``, ``fader-export``).

* :func:`run_cli` parses Hydra-style ``key=value`` arguments and turns project errors into exit code 1;
* :func:`load_module` rebuilds a stage-1 or stage-2 module from its checkpoint, whichever it is;
* :func:`run_entry` and :func:`resolve_image_size` read the training run's ``metrics.json`` when the checkpoint
  still sits in its run folder (``<run>/checkpoints/<stage>/*.ckpt``).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fader_lightning.data.transforms import as_hw
from fader_lightning.errors import CheckpointError, ConfigError, FaderError
from fader_lightning.models import EARModel, FADeRModule, InpaintingModule
from fader_lightning.models.base_module import AnomalyModule
from fader_lightning.results import load_results
from fader_lightning.utils.checkpoints import read_checkpoint, stage1_overrides, weights_only

log = logging.getLogger(__name__)

STAGE_MODULES: dict[str, type[AnomalyModule]] = {"ear": InpaintingModule, "fader": FADeRModule}
"""Module class of each stage, by the stage name used in run folders and ``metrics.json``."""
STAGE_KEYS: dict[str, tuple[str, ...]] = {"fader": ("ckpt_path", "patch_size"), "ear": ("unet", "masking")}
"""Hyper-parameters that identify the checkpoint of each stage (FADeR is checked first)."""
DEFAULT_IMAGE_SIZE = 256
"""Image side used when neither ``image_size=`` nor the run's ``metrics.json`` gives one."""


def parse_key_values(argv: Sequence[str], valid: Sequence[str], required: Sequence[str] = ()) -> dict[str, str]:
    """Parse ``key=value`` arguments (``--key=value`` and ``--key value`` are accepted too).

    Args:
        argv: The arguments.
        valid: Accepted keys.
        required: Keys that must be given.

    Returns:
        ``{key: value}`` as strings (a repeated key keeps its last value).

    Raises:
        ConfigError: On an argument that is not ``key=value``, an unknown key or a missing required key.
    """
    pending = list(argv)
    values: dict[str, str] = {}
    while pending:
        arg = pending.pop(0)
        key, sep, value = arg.removeprefix("--").partition("=")
        if not sep and arg.startswith("--") and pending:
            sep, value = "=", pending.pop(0)
        if not sep:
            raise ConfigError(f"argument {arg!r} is not key=value; valid keys: {', '.join(valid)}")
        if key not in valid:
            raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(valid)}")
        values[key] = value
    missing = [key for key in required if key not in values]
    if missing:
        raise ConfigError(f"missing {', '.join(f'{key}=...' for key in missing)}; valid keys: {', '.join(valid)}")
    return values


def to_int(key: str, value: str, minimum: int = 1) -> int:
    """Convert a command-line value to an integer.

    Args:
        key: Its key, for the message.
        value: The text.
        minimum: Smallest accepted value.

    Returns:
        The integer.

    Raises:
        ConfigError: When the text is not an integer ``>= minimum``.
    """
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConfigError(f"{key}={value!r} is invalid; use an integer >= {minimum}")
    return number


def to_float(key: str, value: str) -> float:
    """Convert a command-line value to a finite float.

    Args:
        key: Its key, for the message.
        value: The text.

    Returns:
        The number.

    Raises:
        ConfigError: When the text is not a finite number.
    """
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"{key}={value!r} is invalid; use a finite number")
    return number


def to_bool(key: str, value: str) -> bool:
    """The bool of a command-line ``key=true|false`` (any case); any other text is a ``ConfigError`` naming the key."""
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"{key}={value!r} is invalid; use {key}=true or {key}=false")
    return value.lower() == "true"


def run_cli(
    argv: Sequence[str] | None,
    usage: str,
    valid: Sequence[str],
    required: Sequence[str],
    command: Callable[[dict[str, str]], int],
) -> int:
    """Common body of the deployment entry points: logging, ``--help``, parsing, project errors.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).
        usage: Text written to stdout for ``-h``/``--help``.
        valid: Accepted keys.
        required: Keys that must be given.
        command: Runs the command on the parsed arguments and returns its exit code.

    Returns:
        The command's exit code, 0 for help, 1 when a project error (bad argument, data, checkpoint) stopped it.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in ("-h", "--help") for arg in argv):
        sys.stdout.write(usage.strip() + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return command(parse_key_values(argv, valid, required))
    except FaderError as err:
        log.error("%s: %s", type(err).__name__, err)
        return 1


def checkpoint_stage(hparams: Mapping[str, Any], path: Path) -> str:
    """Tell a stage-2 (FADeR) checkpoint from a stage-1 (EAR) one by its hyper-parameters.

    Args:
        hparams: The checkpoint's ``hyper_parameters``.
        path: The checkpoint, for the message.

    Returns:
        ``"fader"`` or ``"ear"``.

    Raises:
        CheckpointError: When the hyper-parameters fit neither stage.
    """
    for stage, keys in STAGE_KEYS.items():
        if all(key in hparams for key in keys):
            return stage
    raise CheckpointError(
        f"{path} is neither a stage-1 (EAR) nor a stage-2 (FADeR) checkpoint: its hyper-parameters "
        f"{sorted(hparams)} lack {' / '.join('+'.join(keys) for keys in STAGE_KEYS.values())}"
    )


def ear_model(module: AnomalyModule) -> EARModel:
    """The EAR model inside a stage module (frozen under FADeR).

    Args:
        module: A stage-1 or stage-2 module.

    Returns:
        Its :class:`~fader_lightning.models.EARModel`.
    """
    return module.inpainter


def stage1_settings(module: AnomalyModule) -> dict[str, Any]:
    """The stage-1 hyper-parameters of a stage module (masking, fill, scoring, ...), under FADeR its frozen model's.

    Args:
        module: A stage-1 or stage-2 module.

    Returns:
        The settings.
    """
    return dict(module.stage1_hparams if isinstance(module, FADeRModule) else module.hparams)


def load_module(path: str | Path, device: str = "cpu", vit_weights: str | None = None) -> AnomalyModule:
    """Load a stage-1 or stage-2 checkpoint for inference.

    The module is put in eval mode on ``device``; its mask cache keeps masks in memory only, so inference never
    writes to the training run's disk cache (or to any folder the checkpoint names), and nothing is downloaded.

    Args:
        path: Checkpoint file (``<run>/checkpoints/<stage>/last.ckpt``).
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
        vit_weights: ViT state dict for a model with attention masking (checkpoints do not store it).

    Returns:
        The module (``stage`` is ``"ear"`` or ``"fader"``).

    Raises:
        CheckpointError: When the file is missing, unreadable, of neither stage or does not fit its settings
            (a FADeR checkpoint also needs its stage-1 checkpoint at the path it was trained from).
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
        raise CheckpointError(f"checkpoint {path} does not exist; pass ckpt=<run>/checkpoints/<stage>/last.ckpt")
    hparams = read_checkpoint(path, "pass ckpt=<run>/checkpoints/<stage>/last.ckpt").get("hyper_parameters", {})
    stage = checkpoint_stage(hparams, path)
    if stage == "ear":
        overrides = stage1_overrides(hparams, path, None, vit_weights)
    else:
        overrides = {"mask_cache_dir": None, "vit_weights": vit_weights, "allow_download": False}
    try:
        module = STAGE_MODULES[stage].load_from_checkpoint(
            path, map_location="cpu", weights_only=weights_only(), **overrides
        )
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit its own {stage} settings: {err}") from err
    log.info("loaded %s checkpoint %s on %s", stage, path, device)
    return module.eval().to(device)


def run_entry(ckpt: str | Path, stage: str) -> dict[str, Any]:
    """The ``metrics.json`` entry of the run a checkpoint was written by.

    Args:
        ckpt: Checkpoint file; only ``<run>/checkpoints/<stage>/<name>.ckpt`` has a run folder.
        stage: Stage whose entry to return.

    Returns:
        The entry (``config``, ``metrics``, ...), empty when the checkpoint is not in a run folder or the run has no
        ``metrics.json``.
    """
    ckpt = Path(ckpt).resolve()
    if ckpt.parent.parent.name != "checkpoints":
        return {}
    return load_results(ckpt.parents[2]).get(stage, {})


def resolve_image_size(
    value: str | None, module: AnomalyModule, entry: Mapping[str, Any], force: bool = False
) -> tuple[int, int]:
    """The inference image size: the checkpoint's own, which ``image_size=`` may only repeat unless forced.

    Checkpoints written before models stored their size fall back to the run's ``data.image_size``, else 256.

    Args:
        value: ``image_size=`` text (``N`` or ``H,W``), or ``None``.
        module: The loaded model (its :attr:`~fader_lightning.models.base_module.AnomalyModule.trained_size`).
        entry: The run's ``metrics.json`` entry (see :func:`run_entry`).
        force: Accept an ``image_size=`` that differs from the checkpoint's.

    Returns:
        Height and width.

    Raises:
        ConfigError: When the value is not one or two positive integers, or differs from the checkpoint's size
            without ``force``.
    """
    trained = module.trained_size
    if value is not None:
        sides = [to_int("image_size", side) for side in value.strip("[]()").split(",")]
        size = as_hw(sides[0] if len(sides) == 1 else sides)
        if trained is not None and size != trained and not force:
            raise ConfigError(
                f"image_size={value} differs from the {list(trained)} the checkpoint was trained at: its scores would "
                "be meaningless; drop image_size=, or add force=true to score at this size anyway"
            )
        return size
    if trained is not None:
        return trained
    stored = entry.get("config", {}).get("data", {}).get("image_size")
    if stored is not None:
        log.info("image_size=%s from the training run's metrics.json (the checkpoint does not state it)", stored)
        return as_hw(stored)
    log.warning("the checkpoint does not state its image size and has no metrics.json; using %d", DEFAULT_IMAGE_SIZE)
    return as_hw(DEFAULT_IMAGE_SIZE)

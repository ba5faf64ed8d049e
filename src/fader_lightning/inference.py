"""Shared pieces of the deployment commands (``fader-predict``, ``fader-export``).

* :func:`run_cli` parses Hydra-style ``key=value`` arguments and turns project errors into exit code 1;
* :func:`resolve_image_size` takes the inference size from the checkpoint (or, for older checkpoints, from the
  training run's ``metrics.json``, see :func:`~fader_lightning.models.checkpoints.run_entry`).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fader_lightning.data.transforms import as_hw
from fader_lightning.errors import ConfigError, FaderError
from fader_lightning.models.base_module import AnomalyModule

log = logging.getLogger(__name__)

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

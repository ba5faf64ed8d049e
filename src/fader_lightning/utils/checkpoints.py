"""Safe checkpoint reading: weights-only everywhere, so a checkpoint can never run code, unless the user opts in.

Every load path (stage 2's stage-1 checkpoint, resuming, the stage-1 store, ``fader-predict``, ``fader-export``)
reads checkpoints with :func:`read_checkpoint` and hands :func:`weights_only` to Lightning, whatever torch's own
default is. Set ``FADER_TRUST_CHECKPOINTS=1`` to load a file you trust that holds pickled objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fader_lightning.errors import CheckpointError

TRUST_ENV = "FADER_TRUST_CHECKPOINTS"


def weights_only() -> bool:
    """bool: ``False`` only when ``FADER_TRUST_CHECKPOINTS`` is ``1``, ``true`` or ``yes``."""
    return os.environ.get(TRUST_ENV, "").strip().lower() not in ("1", "true", "yes")


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
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only())
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0]}); {hint}. "
            f"Checkpoints load weights-only, so pickled code never runs; set {TRUST_ENV}=1 only for a file you "
            "trust that holds other objects"
        ) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dictionary; {hint}")
    return checkpoint

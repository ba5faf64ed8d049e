"""The inference size of the deployment commands (``fader-predict``, ``fader-export``): the checkpoint's own.

Older checkpoints that do not store it fall back to the training run's ``metrics.json`` (see
:func:`~fader_lightning.run_layout.run_entry`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fader_lightning.data.transforms import as_hw
from fader_lightning.errors import ConfigError
from fader_lightning.models.base_module import AnomalyModule

log = logging.getLogger(__name__)


def resolve_image_size(
    value: int | Sequence[int] | None, module: AnomalyModule, entry: Mapping[str, Any], force: bool
) -> tuple[int, int]:
    """The inference image size: the checkpoint's own, which ``image_size=`` may only repeat unless forced.

    Checkpoints written before models stored their size fall back to the run's ``data.image_size``.

    Args:
        value: ``image_size=`` (``N`` or ``[H, W]``), or ``None``.
        module: The loaded model (its :attr:`~fader_lightning.models.base_module.AnomalyModule.trained_size`).
        entry: The run's ``metrics.json`` entry (see :func:`run_entry`).
        force: Accept an ``image_size=`` that differs from the checkpoint's.

    Returns:
        Height and width.

    Raises:
        ConfigError: When the value is not one or two positive integers, differs from the checkpoint's size
            without ``force``, or nothing states the size.
    """
    trained = module.trained_size
    if value is not None:
        size = as_hw(value, "image_size")
        if trained is not None and size != trained and not force:
            raise ConfigError(
                f"image_size={list(size)} differs from the {list(trained)} the checkpoint was trained at: its scores "
                "would be meaningless; drop image_size=, or add force=true to score at this size anyway"
            )
        return size
    if trained is not None:
        return trained
    stored = entry.get("config", {}).get("data", {}).get("image_size")
    if stored is not None:
        log.info("image_size=%s from the training run's metrics.json (the checkpoint does not state it)", stored)
        return as_hw(stored)
    raise ConfigError(
        "the checkpoint does not state its image size (it predates stored sizes) and has no metrics.json beside it; "
        "pass image_size=<the size it was trained at>"
    )

"""Joint image/mask transforms built on albumentations."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from numbers import Integral

import albumentations as A
import cv2

from fader_lightning.errors import ConfigError

log = logging.getLogger(__name__)


def as_hw(image_size: int | Sequence[int], key: str = "data.image_size") -> tuple[int, int]:
    """Normalise an ``image_size`` setting to (height, width).

    Args:
        image_size: One int for square images or a (height, width) pair (a list config too).
        key: The setting's name, for the message.

    Returns:
        Height and width.

    Raises:
        ConfigError: When the value is not one positive int or a pair of them.
    """
    pair = isinstance(image_size, Sequence) and not isinstance(image_size, str)
    sides = list(image_size) if pair else [image_size]
    if not all(isinstance(side, Integral) and not isinstance(side, bool) for side in sides) or len(sides) not in (1, 2):
        sides = [0]
    if min(sides) <= 0:
        raise ConfigError(f"{key}={image_size!r} is invalid; use a positive int N or a [height, width] pair")
    return (int(sides[0]), int(sides[0])) if len(sides) == 1 else (int(sides[0]), int(sides[1]))


INTERPOLATIONS: dict[str, int] = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def checkpoint_size(
    given: int | Sequence[int] | None,
    trained: Sequence[int] | None,
    key: str,
    force: bool,
    stored: int | Sequence[int] | None = None,
) -> tuple[int, int]:
    """The input size of a trained model: the size it was trained at, which ``key`` may only repeat unless forced.

    The one rule of every command that runs a checkpoint (``fader-eval``, ``fader-predict``, ``fader-export``, the
    Python API, and ``stage=fader`` on a stage-1 checkpoint); ``force=true`` is the one key that allows another size.

    Args:
        given: The size the job asks for (``key``), or ``None``.
        trained: The size the checkpoint states, or ``None`` when it predates stored sizes.
        key: The option that gave ``given`` (``data.image_size``, ``image_size``), for messages.
        force: Accept a ``given`` size that differs from ``trained``.
        stored: For a checkpoint that does not state its size: the one its training run's ``metrics.json`` records.

    Returns:
        Height and width.

    Raises:
        ConfigError: When ``given`` is not one or two positive integers, differs from ``trained`` without ``force``,
            or nothing states the size.
    """
    trained = as_hw(trained, "the checkpoint's image_size") if trained is not None else None
    if given is not None:
        size = as_hw(given, key)
        if trained is not None and size != trained and not force:
            raise ConfigError(
                f"{key}={list(size)} differs from the {list(trained)} the checkpoint was trained at: its scores "
                f"would be meaningless; drop {key}= (the checkpoint's size is used), or add force=true to run at "
                "this size anyway"
            )
        return size
    if trained is not None:
        return trained
    if stored is not None:
        log.info("image size %s from the training run's metrics.json (the checkpoint does not state it)", stored)
        return as_hw(stored)
    raise ConfigError(
        "the checkpoint does not state its image size (it predates stored sizes) and has no metrics.json beside it "
        f"that does; pass {key}=<the size it was trained at>"
    )


def build_transform(image_size: int | Sequence[int], interpolation: str = "area") -> A.Compose:
    """Build the transform applied jointly to an image and its mask.

    The image is resized with ``interpolation``; the default, ``area``, averages every source pixel a target
    pixel covers, so downscaling a periodic texture (MVTec grid, 1024 px to 256) does not alias into a moiré that
    MSGMS would then score, as bilinear sampling of 4 of them does. The mask is resized with nearest-neighbour
    interpolation so that it stays binary. Training augmentations run after it, outside this transform (see
    :class:`~fader_lightning.data.dataset.AnomalyDataset`), so the resized images can be cached.

    Args:
        image_size: Output size, an int or (height, width).
        interpolation: ``area`` (default), ``linear`` or ``cubic``.

    Returns:
        The composed transform; call it as ``transform(image=..., mask=...)``.

    Raises:
        ConfigError: When the interpolation is unknown.
    """
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"data.interpolation={interpolation!r} is unknown; use one of {', '.join(INTERPOLATIONS)}")
    height, width = as_hw(image_size)
    resize = A.Resize(height, width, interpolation=INTERPOLATIONS[interpolation], mask_interpolation=cv2.INTER_NEAREST)
    return A.Compose([resize])

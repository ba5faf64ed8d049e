"""Joint image/mask transforms built on albumentations."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import albumentations as A
import cv2

from fader_lightning.errors import ConfigError


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

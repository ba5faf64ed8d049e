"""Obfuscation of the masked pixels before inpainting: ``I' = (1 - M) * I + M * F``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from fader_lightning.errors import ConfigError
from fader_lightning.masking.base import positive_int, upsample_cells

FILL_MODES = ("mosaic", "zero")
"""tuple[str, ...]: Accepted values of ``fill``."""


def mosaic(images: Tensor, block: int) -> Tensor:
    """Replace every ``block`` x ``block`` tile by its mean.

    Tiles are anchored at the top-left corner; the partial tiles at the bottom/right border (when the size is not a
    multiple of ``block``) take the mean of the pixels they actually hold.

    Args:
        images: Images ``(B, C, H, W)``.
        block: Tile side in pixels.

    Returns:
        Mosaic ``(B, C, H, W)``, same dtype as ``images``.
    """
    height, width = images.shape[-2:]
    means = F.avg_pool2d(images, kernel_size=block, stride=block, ceil_mode=True)
    return upsample_cells(means, block, height, width)


def _check_fill(fill: str, block: int) -> int:
    """Validate the fill settings.

    Args:
        fill: Fill mode.
        block: Mosaic tile side.

    Returns:
        ``block`` as int.

    Raises:
        ConfigError: If ``fill`` is unknown or ``block`` is not a positive integer.
    """
    if fill not in FILL_MODES:
        raise ConfigError(f"fill={fill!r} is unknown for masked pixels; use one of: {', '.join(FILL_MODES)}")
    return positive_int("block", block)


def obfuscate(images: Tensor, mask: Tensor, fill: str = "mosaic", block: int = 8) -> Tensor:
    """Hide the masked pixels: ``(1 - M) * I + M * F`` with ``F`` the mosaic of ``I`` or zero.

    Args:
        images: Images ``(B, C, H, W)``.
        mask: Mask ``(B, 1, H, W)`` or ``(B, H, W)``, ``1`` = hidden (soft values blend linearly).
        fill: ``"mosaic"`` (block means, ``block`` x ``block``) or ``"zero"``.
        block: Mosaic tile side in pixels (ignored for ``"zero"`` but still validated).

    Returns:
        Obfuscated images, same shape and dtype as ``images``.

    Raises:
        ConfigError: If ``fill`` is unknown or ``block`` is invalid.
        ValueError: If the mask does not match the images.
    """
    block = _check_fill(fill, block)
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    batch, _, height, width = images.shape
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != batch or mask.shape[-2:] != (height, width):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(images.shape)}; "
            f"expected ({batch}, 1, {height}, {width}) or ({batch}, {height}, {width})"
        )
    mask = mask.to(images.dtype)
    kept = (1 - mask) * images
    if fill == "zero":
        return kept
    return kept + mask * mosaic(images, block)


class Obfuscation(nn.Module):
    """Module form of :func:`obfuscate` with fixed settings.

    Args:
        fill: ``"mosaic"`` or ``"zero"``.
        block: Mosaic tile side in pixels.

    Raises:
        ConfigError: If ``fill`` is unknown or ``block`` is invalid.
    """

    def __init__(self, fill: str = "mosaic", block: int = 8) -> None:
        super().__init__()
        self.block = _check_fill(fill, block)
        self.fill = fill

    def forward(self, images: Tensor, mask: Tensor) -> Tensor:
        """Obfuscate the masked pixels.

        Args:
            images: Images ``(B, C, H, W)``.
            mask: Mask ``(B, 1, H, W)`` or ``(B, H, W)``.

        Returns:
            Obfuscated images.
        """
        return obfuscate(images, mask, self.fill, self.block)

    def extra_repr(self) -> str:
        """Return the settings shown by ``repr``.

        Returns:
            Comma-separated ``name=value`` pairs.
        """
        return f"fill={self.fill!r}, block={self.block}"

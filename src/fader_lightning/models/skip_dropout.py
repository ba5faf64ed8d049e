"""Patch-wise skip dropout: stage-1 training that teaches the decoder to rebuild patches whose skips are removed.

FADeR attenuates the skips of suspicious patches at test time. A decoder that never saw missing skips rebuilds such
patches with artefacts, on normal images too, so every wrong attenuation costs image AUROC. Zeroing the skips of
random patches during stage-1 training (as EAR's first version switched shallow skips off) makes the decoder rebuild
them from the bottleneck and the neighbouring skips, which lowers that cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fader_lightning.errors import ConfigError
from fader_lightning.models.unet import attenuate


class PatchSkipDropout(nn.Module):
    """Zeroes the skip features of random ``patch_size`` patches (the same patches on every chosen level).

    A ``skip_transform`` for :meth:`~fader_lightning.models.ear.model.EARModel.inpaint`; draws from torch's global RNG,
    which Lightning seeds, so runs with one seed drop the same patches.

    Args:
        p: Probability that a patch is dropped, in ``[0, 1)``.
        levels: Skip levels to drop (``0`` = highest resolution).
        patch_size: Patch side in pixels of the input image.

    Raises:
        ConfigError: If ``p`` or ``patch_size`` is out of range.
    """

    def __init__(self, p: float, levels: Sequence[int] = (0, 1, 2), patch_size: int = 8) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ConfigError(f"p={p} is invalid; use a probability in [0, 1) such as 0.1")
        if patch_size < 1:
            raise ConfigError(f"patch_size={patch_size} is invalid; use a positive size such as 8")
        self.p = p
        self.levels = tuple(int(level) for level in levels)
        self.patch_size = patch_size

    def check_levels(self, num_levels: int) -> None:
        """Check the levels against a U-Net with ``num_levels`` skip tensors (once, when the model is built).

        Args:
            num_levels: Skip tensors of the U-Net.

        Raises:
            ConfigError: If a level is not an index of them.
        """
        if any(level not in range(num_levels) for level in self.levels):
            raise ConfigError(
                f"levels={list(self.levels)} is invalid; use skip level indices from {list(range(num_levels))}"
            )

    def forward(self, skips: list[Tensor], obfuscated: Tensor) -> list[Tensor]:
        """Drops random patches of the skips.

        Args:
            skips: Skip tensors, highest resolution first.
            obfuscated: The obfuscated images ``(B, C, H, W)`` (for the patch grid).

        Returns:
            The skips with the chosen levels zeroed on the dropped patches.
        """
        batch, _, height, width = obfuscated.shape
        grid = (batch, 1, max(height // self.patch_size, 1), max(width // self.patch_size, 1))
        keep = (torch.rand(grid, device=obfuscated.device) >= self.p).to(obfuscated.dtype)
        return attenuate(skips, keep, self.levels)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"p={self.p}, levels={self.levels}, patch_size={self.patch_size}"

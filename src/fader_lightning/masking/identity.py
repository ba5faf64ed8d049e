"""The ``none`` masking method: nothing is hidden, which turns the inpainting model into a plain autoencoder."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from fader_lightning.masking.base import MaskGenerator, check_images


class NoMask(MaskGenerator):
    """All-zero mask with a single pass."""

    name: ClassVar[str] = "none"

    deterministic = True
    partitions = False
    image_independent = True

    def forward(self, images: Tensor) -> Tensor:
        """Return an empty mask.

        Args:
            images: Images ``(B, 3, H, W)``.

        Returns:
            Zeros ``(B, 1, H, W)``, float32, on the images' device.
        """
        check_images(images)
        batch, _, height, width = images.shape
        return torch.zeros(batch, 1, height, width, dtype=torch.float32, device=images.device)

    def settings(self) -> dict[str, Any]:
        """Return the (empty) settings.

        Returns:
            Always empty.
        """
        return {}

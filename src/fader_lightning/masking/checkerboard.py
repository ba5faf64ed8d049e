"""Fixed checkerboard masking: every other square cell is hidden."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from fader_lightning.errors import ConfigError
from fader_lightning.masking.base import MaskGenerator, check_images, positive_int, to_mask, upsample_cells


class CheckerboardMask(MaskGenerator):
    """Checkerboard of ``cell_size`` x ``cell_size`` cells, one pass.

    Cell ``(i, j)`` (row, column, counted from the top-left) is masked when ``(i + j + phase)`` is even, so phase 0
    masks the top-left cell and phase 1 is its complement. Exactly half of the pixels are masked when the image
    holds an even number of whole cells along one side; partial border cells make it differ slightly otherwise.

    Args:
        cell_size: Side of a cell in pixels.
        phase: ``0`` or ``1``, which of the two complementary boards to use.

    Raises:
        ConfigError: If ``cell_size`` is not a positive integer or ``phase`` is not 0 or 1.
    """

    name: ClassVar[str] = "checkerboard"

    deterministic = True
    partitions = False
    image_independent = True

    def __init__(self, cell_size: int = 16, phase: int = 0) -> None:
        super().__init__()
        self.cell_size = positive_int("cell_size", cell_size)
        if isinstance(phase, bool) or phase not in (0, 1):
            raise ConfigError(f"phase={phase!r} is invalid; use 0 or 1")
        self.phase = int(phase)

    def forward(self, images: Tensor) -> Tensor:
        """Return the checkerboard for the batch's image size.

        Args:
            images: Images ``(B, 3, H, W)``.

        Returns:
            Masks ``(B, 1, H, W)``, float32 in ``{0, 1}``, identical for every image.
        """
        check_images(images)
        batch, _, height, width = images.shape
        rows = torch.arange(-(-height // self.cell_size), device=images.device)
        cols = torch.arange(-(-width // self.cell_size), device=images.device)
        cells = (rows[:, None] + cols[None, :] + self.phase) % 2 == 0
        board = upsample_cells(cells, self.cell_size, height, width)
        return to_mask(board.expand(batch, 1, height, width))

    def settings(self) -> dict[str, Any]:
        """Return the settings that change the mask.

        Returns:
            ``cell_size`` and ``phase``.
        """
        return {"cell_size": self.cell_size, "phase": self.phase}

"""RIAD-style random multi-scale masking: each scale's cells are split into disjoint random sets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from fader_lightning.errors import ConfigError
from fader_lightning.masking.base import MaskGenerator, check_images, positive_int, to_mask, upsample_cells


class RandomMultiMask(MaskGenerator):
    """Random disjoint cell masks at several scales (Zavrtanik et al., RIAD, 2021).

    For every cell size ``K`` in ``cell_sizes`` the image is cut into ``K`` x ``K`` cells (partial cells at the
    bottom/right border count as cells) and every cell is assigned to exactly one of ``n`` masks, the sets having
    equal sizes up to one cell. The ``len(cell_sizes) * n`` passes are ordered group by group: passes
    ``[g * n, (g + 1) * n)`` belong to ``cell_sizes[g]`` and sum to one at every pixel.

    As in RIAD, one draw is shared by every image of a batch (the masks differ from call to call, not from image to
    image inside a call), and a training mini-batch uses one cell size, drawn per call (:meth:`training_masks`).
    The draws come from a private ``torch.Generator`` seeded with ``seed``: the same seed and
    the same sequence of calls (and image sizes) reproduce the same masks; :meth:`reset_rng` restarts the sequence.

    Args:
        cell_sizes: Cell sides in pixels, one partition group per entry.
        n: Number of disjoint masks per cell size (the group size), at least 2.
        seed: Seed of the generator.

    Raises:
        ConfigError: If ``cell_sizes`` is empty or holds non-positive values, or ``n`` < 2.
    """

    name: ClassVar[str] = "random_multi"

    deterministic = False
    partitions = True
    graph_masks_unavailable = (
        "it draws new random cell partitions (len(cell_sizes) * n passes) from its own random generator at every "
        "call, which a fixed graph cannot reproduce"
    )

    def __init__(self, cell_sizes: Sequence[int] = (2, 4, 8, 16), n: int = 3, seed: int = 0) -> None:
        super().__init__()
        if isinstance(cell_sizes, (str, bytes)) or not isinstance(cell_sizes, Sequence) or len(cell_sizes) == 0:
            raise ConfigError(
                f"cell_sizes={cell_sizes!r} is invalid; use a non-empty list of positive integers such as [2, 4, 8, 16]"
            )
        self.cell_sizes = tuple(positive_int("cell_sizes", size) for size in cell_sizes)
        self.n = positive_int("n", n)
        if self.n < 2:
            raise ConfigError(f"n={n!r} is invalid; use at least 2 to split the cells, such as 3")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed={seed!r} is invalid; use an integer such as 0")
        self.seed = int(seed)
        self._rng = torch.Generator()
        self.reset_rng()

    def reset_rng(self) -> None:
        """Re-seed the private generator with ``seed`` so the next calls repeat the first draws."""
        self._rng.manual_seed(self.seed)

    @property
    def num_passes(self) -> int:
        """int: ``len(cell_sizes) * n``."""
        return len(self.cell_sizes) * self.n

    @property
    def group_size(self) -> int:
        """int: ``n``, the passes of one cell size."""
        return self.n

    def forward(self, images: Tensor) -> Tensor:
        """Draw a new set of masks for the batch.

        Args:
            images: Images ``(B, 3, H, W)``.

        Returns:
            Masks ``(B, len(cell_sizes) * n, H, W)``, float32 in ``{0, 1}``, the same for every image.
        """
        return self._draw(images, self.cell_sizes)

    def training_masks(self, images: Tensor) -> Tensor:
        """Masks of one training mini-batch: the ``n`` masks of one cell size, drawn from :attr:`cell_sizes`.

        Args:
            images: Images ``(B, 3, H, W)``.

        Returns:
            Masks ``(B, n, H, W)`` that partition the image, the same for every image.
        """
        pick = int(torch.randint(len(self.cell_sizes), (1,), generator=self._rng))
        return self._draw(images, self.cell_sizes[pick : pick + 1])

    def _draw(self, images: Tensor, cell_sizes: Sequence[int]) -> Tensor:
        check_images(images)
        batch, _, height, width = images.shape
        groups = []
        for size in cell_sizes:
            grid_h, grid_w = -(-height // size), -(-width // size)
            owner = torch.randperm(grid_h * grid_w, generator=self._rng) % self.n
            owner = owner.to(images.device).view(grid_h, grid_w)
            cells = owner[None] == torch.arange(self.n, device=images.device)[:, None, None]
            groups.append(upsample_cells(cells, size, height, width))
        masks = torch.cat(groups, dim=0)
        return to_mask(masks[None].expand(batch, -1, -1, -1))

    def settings(self) -> dict[str, Any]:
        """Return the settings that change the masks.

        Returns:
            ``cell_sizes``, ``n`` and ``seed``.
        """
        return {"cell_sizes": list(self.cell_sizes), "n": self.n, "seed": self.seed}

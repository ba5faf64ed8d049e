"""Common interface of the mask generators and the helpers they share.

A mask generator turns a batch of images ``(B, 3, H, W)`` (float in ``[0, 1]``, not normalised) into binary masks
``(B, P, H, W)`` where ``1`` marks the pixels to hide from the inpainting network and ``P`` is the number of
inpainting passes the method needs.

Most methods can also compute their masks inside an exported (ONNX) graph: :meth:`MaskGenerator.graph_masks` returns a
pure-torch module of fixed image size that maps images to the same masks, built from export-friendly operators only.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fader_lightning.errors import ConfigError


class MaskGenerator(nn.Module, ABC):
    """Base class of every masking method.

    Attributes:
        name: The method's name (``masking.name``), stated by each subclass; its key in the masking table.
        deterministic: ``True`` when the mask depends only on the image, so it can be cached.
        partitions: ``True`` when the passes come in groups of :attr:`group_size` masks that partition the
            image (every pixel is masked in exactly one pass of each group).
        image_independent: ``True`` when the masks depend on the image size only (not on the pixels), so
            :meth:`graph_masks` can hold them as constants.
        graph_masks_unavailable: Why :meth:`graph_masks` returns ``None`` for this method (read only then).
    """

    name: ClassVar[str]
    deterministic: ClassVar[bool]
    partitions: ClassVar[bool] = False
    image_independent: ClassVar[bool] = False
    graph_masks_unavailable: ClassVar[str] = "its masks have no export-friendly implementation"

    @abstractmethod
    def forward(self, images: Tensor) -> Tensor:
        """Compute the masks of a batch.

        Args:
            images: Images ``(B, 3, H, W)``, float in ``[0, 1]``.

        Returns:
            Masks ``(B, P, H, W)``, float32 in ``{0, 1}`` on the images' device; ``1`` = masked.
        """

    def graph_masks(self, image_size: tuple[int, int]) -> nn.Module | None:
        """Return a module that computes the masks of :meth:`forward` inside an exported graph, if the method allows.

        The module is pure torch, holds every constant it needs as a buffer and uses only operators that
        ``torch.onnx.export`` and ONNX Runtime / OpenVINO support, for images of one fixed size and any batch size.
        :meth:`forward` itself is unchanged (it is what training and the mask cache use); the module reproduces it
        up to float rounding, so a mask cell whose score nearly ties with another may differ.

        Args:
            image_size: Height and width of the images the module will see.

        Returns:
            nn.Module | None: ``images (B, 3, H, W) -> masks (B, P, H, W)`` in eval mode (:class:`ConstantMasks`
            for :attr:`image_independent` methods), or ``None`` when the masks cannot be computed by a fixed graph
            (:attr:`graph_masks_unavailable` says why).
        """
        return ConstantMasks.of(self, image_size) if self.image_independent else None

    def training_masks(self, images: Tensor) -> Tensor:
        """Masks of one training mini-batch; the same as :meth:`forward` unless a method trains on a subset.

        Args:
            images: Images ``(B, 3, H, W)``, float in ``[0, 1]``.

        Returns:
            Masks ``(B, P', H, W)`` whose passes form whole partition groups.
        """
        return self(images)

    @property
    def num_passes(self) -> int:
        """int: Number of masks ``P`` produced per image."""
        return 1

    @property
    def group_size(self) -> int:
        """int: Passes per partition group (equal to :attr:`num_passes` for methods that do not partition)."""
        return self.num_passes

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Return the settings that change the mask, as JSON-serialisable values.

        Returns:
            Setting name to value.
        """

    def config_key(self) -> str:
        """Return a stable string of the method name and the settings that change the mask.

        Returns:
            Canonical JSON text, usable as part of a cache key.
        """
        return json.dumps({"method": self.name, **self.settings()}, sort_keys=True, separators=(",", ":"))

    def extra_repr(self) -> str:
        """Return the settings shown by ``repr``.

        Returns:
            Comma-separated ``name=value`` pairs.
        """
        return ", ".join(f"{key}={value!r}" for key, value in self.settings().items())


class ConstantMasks(nn.Module):
    """Graph module of the methods whose masks do not depend on the image: the same masks for every image.

    Args:
        masks: Masks ``(1, P, H, W)`` of the fixed image size.
    """

    masks: Tensor

    def __init__(self, masks: Tensor) -> None:
        super().__init__()
        self.register_buffer("masks", masks.detach().to(torch.float32).contiguous())

    @classmethod
    def of(cls, generator: MaskGenerator, image_size: tuple[int, int]) -> ConstantMasks:
        """The constant masks of an image-independent generator at one image size.

        Args:
            generator: A generator whose masks depend on the image size only.
            image_size: Height and width.

        Returns:
            The module, in eval mode.
        """
        with torch.no_grad():
            return cls(generator(torch.zeros(1, 3, *image_size))).eval()

    def forward(self, images: Tensor) -> Tensor:
        """Return the masks for every image of the batch.

        Args:
            images: Images ``(B, 3, H, W)``.

        Returns:
            Masks ``(B, P, H, W)``.
        """
        return self.masks.expand(images.shape[0], *self.masks.shape[1:])


def check_images(images: Tensor) -> None:
    """Check that a batch has the ``(B, 3, H, W)`` floating-point layout the generators expect.

    Args:
        images: Batch to check.

    Raises:
        ValueError: If the batch is not a 4-D floating-point tensor with 3 channels.
    """
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"mask generators expect float images of shape (B, 3, H, W), got {tuple(images.shape)} {images.dtype}"
        )


def positive_int(key: str, value: Any) -> int:
    """Validate a positive integer setting.

    Args:
        key: Parameter name, reported in the error (e.g. ``"cell_size"``).
        value: Value to check.

    Returns:
        The value as ``int``.

    Raises:
        ConfigError: If the value is not an integer >= 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} is invalid; use an integer >= 1")
    return int(value)


def unit_fraction(key: str, value: Any, *, allow_zero: bool = True) -> float:
    """Validate a fraction setting in ``[0, 1]`` (or ``(0, 1]``).

    Args:
        key: Config key, reported in the error.
        value: Value to check.
        allow_zero: Whether ``0`` is accepted.

    Returns:
        The value as ``float``.

    Raises:
        ConfigError: If the value is not a finite number in the accepted range.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    low_ok = ok and (value >= 0 if allow_zero else value > 0)
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ConfigError(f"{key}={value!r} is invalid; use a number in {interval}")
    return float(value)


def upsample_cells(cells: Tensor, cell_size: int, height: int, width: int) -> Tensor:
    """Expand a per-cell grid to pixels (nearest), cropping the partial cells at the bottom/right border.

    Args:
        cells: Grid ``(..., ceil(H / cell_size), ceil(W / cell_size))``.
        cell_size: Side of a cell in pixels.
        height: Output height ``H``.
        width: Output width ``W``.

    Returns:
        ``(..., H, W)`` with every pixel holding the value of its cell.
    """
    pixels = cells.repeat_interleave(cell_size, dim=-2).repeat_interleave(cell_size, dim=-1)
    return pixels[..., :height, :width]


def to_mask(binary: Tensor) -> Tensor:
    """Convert a boolean / {0, 1} tensor to the float32 mask dtype.

    Args:
        binary: Boolean or numeric tensor holding only 0 and 1.

    Returns:
        Same values as float32, contiguous.
    """
    return binary.to(torch.float32).contiguous()

"""Weight-free suspected-defect mask from spectral residual saliency (Hou & Zhang, CVPR 2007)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fader_lightning.errors import ConfigError
from fader_lightning.masking.base import (
    MaskGenerator,
    check_images,
    positive_int,
    to_mask,
    unit_fraction,
    upsample_cells,
)
from fader_lightning.masking.registry import register

_LUMA = (0.299, 0.587, 0.114)


@register("saliency")
class SpectralResidualSaliencyMask(MaskGenerator):
    """Mask the most salient cells of each image, saliency being the spectral residual of the grayscale image.

    The grayscale image is resized to ``work_size`` x ``work_size``; the saliency map is
    ``|IFFT(exp(R + i * phase))|^2`` with ``R`` the log amplitude spectrum minus its 3 x 3 (circular) mean, blurred with
    a Gaussian of ``blur_sigma`` work pixels and resized back to the image. The map is averaged over
    ``cell_size`` x ``cell_size`` cells and the ``round(fraction * cells)`` cells with the highest mean are masked,
    so the mask is blocky like ViT patches and covers ``fraction`` of the image up to rounding and partial border
    cells. Everything runs in torch (``torch.fft``), on the images' device.

    Args:
        fraction (float): Fraction of cells to mask, in ``[0, 1]``.
        cell_size (int): Side of a mask cell in pixels (``1`` masks single pixels).
        work_size (int): Side of the square grayscale image the spectrum is computed on.
        blur_sigma (float): Standard deviation of the Gaussian smoothing, in work pixels (``0`` disables it).

    Raises:
        ConfigError: If a setting is out of range.
    """

    deterministic = True
    partitions = False

    def __init__(self, fraction: float = 0.3, cell_size: int = 8, work_size: int = 64, blur_sigma: float = 2.5) -> None:
        super().__init__()
        self.fraction = unit_fraction("masking.fraction", fraction)
        self.cell_size = positive_int("masking.cell_size", cell_size)
        self.work_size = positive_int("masking.work_size", work_size)
        if self.work_size < 3:
            raise ConfigError(f"masking.work_size must be at least 3, got {work_size!r}; set masking.work_size=64")
        if isinstance(blur_sigma, bool) or not isinstance(blur_sigma, (int, float)) or not 0 <= blur_sigma < math.inf:
            raise ConfigError(
                f"masking.blur_sigma must be a finite number >= 0, got {blur_sigma!r}; set e.g. masking.blur_sigma=2.5"
            )
        self.blur_sigma = float(blur_sigma)
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)

    def saliency_map(self, images: Tensor) -> Tensor:
        """Compute the spectral residual saliency at image resolution.

        Args:
            images (Tensor): Images ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            Tensor: Non-negative saliency ``(B, 1, H, W)``, float32.
        """
        check_images(images)
        height, width = images.shape[-2:]
        gray = (images.float() * self.luma.to(images.device)).sum(dim=1, keepdim=True)
        gray = F.interpolate(gray, size=(self.work_size, self.work_size), mode="bilinear", antialias=True)
        spectrum = torch.fft.fft2(gray)
        log_amplitude = torch.log(spectrum.abs() + 1e-8)
        smoothed = F.avg_pool2d(F.pad(log_amplitude, (1, 1, 1, 1), mode="circular"), kernel_size=3, stride=1)
        residual = torch.polar(torch.exp(log_amplitude - smoothed), torch.angle(spectrum))
        saliency = torch.fft.ifft2(residual).abs().square()
        saliency = self._blur(saliency)
        return F.interpolate(saliency, size=(height, width), mode="bilinear", align_corners=False).clamp_min(0)

    def _blur(self, maps: Tensor) -> Tensor:
        """Separable Gaussian blur with reflected borders.

        Args:
            maps (Tensor): ``(B, 1, S, S)`` maps.

        Returns:
            Tensor: Blurred maps, same shape.
        """
        if self.blur_sigma == 0:
            return maps
        radius = min(math.ceil(3 * self.blur_sigma), maps.shape[-1] - 1)
        offsets = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
        kernel = torch.exp(-0.5 * (offsets / self.blur_sigma) ** 2)
        kernel = kernel / kernel.sum()
        padded = F.pad(maps, (radius, radius, radius, radius), mode="reflect")
        blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
        return F.conv2d(blurred, kernel.view(1, 1, -1, 1))

    def forward(self, images: Tensor) -> Tensor:
        """Mask the most salient cells of every image.

        Args:
            images (Tensor): Images ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            Tensor: Masks ``(B, 1, H, W)``, float32 in ``{0, 1}``.
        """
        saliency = self.saliency_map(images)
        batch, _, height, width = saliency.shape
        cell_scores = F.avg_pool2d(saliency, kernel_size=self.cell_size, stride=self.cell_size, ceil_mode=True)
        grid_h, grid_w = cell_scores.shape[-2:]
        flat = cell_scores.view(batch, grid_h * grid_w)
        num_masked = round(self.fraction * grid_h * grid_w)
        cells = torch.zeros_like(flat, dtype=torch.bool)
        cells.scatter_(1, flat.topk(num_masked, dim=1).indices, True)
        return to_mask(upsample_cells(cells.view(batch, 1, grid_h, grid_w), self.cell_size, height, width))

    def settings(self) -> dict[str, Any]:
        """Return the settings that change the mask.

        Returns:
            dict[str, Any]: ``fraction``, ``cell_size``, ``work_size`` and ``blur_sigma``.
        """
        return {
            "fraction": self.fraction,
            "cell_size": self.cell_size,
            "work_size": self.work_size,
            "blur_sigma": self.blur_sigma,
        }

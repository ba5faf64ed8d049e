"""Weight-free suspected-defect mask from spectral residual saliency (Hou & Zhang, CVPR 2007).

:class:`SpectralResidualSaliencyMask` computes it with ``torch.fft`` (training, the mask cache);
:class:`SaliencyGraphMasks` computes the same masks with operators an exported ONNX graph supports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fader_lightning.errors import ConfigError
from fader_lightning.masking.base import (
    MaskGenerator,
    check_images,
    positive_int,
    to_mask,
    unit_fraction,
    upsample_cells,
)

_LUMA = (0.299, 0.587, 0.114)


class SpectralResidualSaliencyMask(MaskGenerator):
    """Mask the most salient cells of each image, saliency being the spectral residual of the grayscale image.

    The grayscale image is resized to ``work_size`` x ``work_size``; the saliency map is
    ``|IFFT(exp(R + i * phase))|^2`` with ``R`` the log amplitude spectrum minus its 3 x 3 (circular) mean, blurred with
    a Gaussian of ``blur_sigma`` work pixels and resized back to the image. The map is averaged over
    ``cell_size`` x ``cell_size`` cells and the ``round(fraction * cells)`` cells with the highest mean are masked,
    so the mask is blocky like ViT patches and covers ``fraction`` of the image up to rounding and partial border
    cells. Everything runs in torch (``torch.fft``), on the images' device.

    Args:
        fraction: Fraction of cells to mask, in ``[0, 1]``.
        cell_size: Side of a mask cell in pixels (``1`` masks single pixels).
        work_size: Side of the square grayscale image the spectrum is computed on.
        blur_sigma: Standard deviation of the Gaussian smoothing, in work pixels (``0`` disables it).

    Raises:
        ConfigError: If a setting is out of range.
    """

    name: ClassVar[str] = "saliency"

    deterministic = True
    partitions = False

    def __init__(self, fraction: float = 0.3, cell_size: int = 8, work_size: int = 64, blur_sigma: float = 2.5) -> None:
        super().__init__()
        self.fraction = unit_fraction("fraction", fraction)
        self.cell_size = positive_int("cell_size", cell_size)
        self.work_size = positive_int("work_size", work_size)
        if self.work_size < 3:
            raise ConfigError(f"work_size={work_size!r} is invalid; use at least 3, such as 64")
        if isinstance(blur_sigma, bool) or not isinstance(blur_sigma, (int, float)) or not 0 <= blur_sigma < math.inf:
            raise ConfigError(f"blur_sigma={blur_sigma!r} is invalid; use a finite number >= 0 such as 2.5")
        self.blur_sigma = float(blur_sigma)
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)

    def saliency_map(self, images: Tensor) -> Tensor:
        """Compute the spectral residual saliency at image resolution.

        Args:
            images: Images ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            Non-negative saliency ``(B, 1, H, W)``, float32.
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
            maps: ``(B, 1, S, S)`` maps.

        Returns:
            Blurred maps, same shape.
        """
        if self.blur_sigma == 0:
            return maps
        kernel = self.blur_kernel(maps.dtype, maps.device)
        radius = (kernel.numel() - 1) // 2
        padded = F.pad(maps, (radius, radius, radius, radius), mode="reflect")
        blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
        return F.conv2d(blurred, kernel.view(1, 1, -1, 1))

    def blur_kernel(self, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
        """The normalised 1-D Gaussian of the blur, cut at ``3 * blur_sigma`` (at most ``work_size - 1``).

        Args:
            dtype: Its dtype.
            device: Its device.

        Returns:
            Weights ``(2 * radius + 1,)`` summing to one.
        """
        radius = min(math.ceil(3 * self.blur_sigma), self.work_size - 1)
        offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
        kernel = torch.exp(-0.5 * (offsets / self.blur_sigma) ** 2)
        return kernel / kernel.sum()

    def forward(self, images: Tensor) -> Tensor:
        """Mask the most salient cells of every image.

        Args:
            images: Images ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            Masks ``(B, 1, H, W)``, float32 in ``{0, 1}``.
        """
        saliency = self.saliency_map(images)
        batch, _, height, width = saliency.shape
        cell_scores = F.avg_pool2d(saliency, kernel_size=self.cell_size, stride=self.cell_size, ceil_mode=True)
        grid_h, grid_w = cell_scores.shape[-2:]
        flat = cell_scores.view(batch, grid_h * grid_w)
        num_masked = self.num_masked(grid_h * grid_w)
        cells = torch.zeros_like(flat, dtype=torch.bool)
        cells.scatter_(1, flat.topk(num_masked, dim=1).indices, True)
        return to_mask(upsample_cells(cells.view(batch, 1, grid_h, grid_w), self.cell_size, height, width))

    def num_masked(self, num_cells: int) -> int:
        """Number of cells masked per image.

        Args:
            num_cells: Cells of the image, partial border cells included.

        Returns:
            ``round(fraction * num_cells)``.
        """
        return round(self.fraction * num_cells)

    def graph_masks(self, image_size: tuple[int, int]) -> nn.Module:
        """Return the export-friendly computation of the same masks (see :class:`SaliencyGraphMasks`).

        Args:
            image_size: Height and width.

        Returns:
            nn.Module: The :class:`SaliencyGraphMasks` of this generator and size.
        """
        return SaliencyGraphMasks(self, image_size)

    def settings(self) -> dict[str, Any]:
        """Return the settings that change the mask.

        Returns:
            ``fraction``, ``cell_size``, ``work_size`` and ``blur_sigma``.
        """
        return {
            "fraction": self.fraction,
            "cell_size": self.cell_size,
            "work_size": self.work_size,
            "blur_sigma": self.blur_sigma,
        }


def axis_matrix(operator: Callable[[Tensor], Tensor], size: int) -> Tensor:
    """The matrix of a linear operator that acts on the height axis alone, read off the operator's own output.

    The operator is applied to the ``size`` basis vectors, as ``(size, 1, size, 2)`` maps that are constant along
    the width, so the matrix holds exactly the weights the operator uses (for ``F.interpolate``: the same kernel,
    antialiasing included). The maps are two pixels wide because torch's antialiased resize mishandles maps one
    pixel wide.

    Args:
        operator: Linear map of ``(N, 1, size, W)`` to ``(N, 1, M, W)`` tensors that
            leaves the width axis alone.
        size: Length of the axis it reads.

    Returns:
        ``(M, size)`` float32 matrix ``A`` with ``operator(x)[n, 0, :, w] == A @ x[n, 0, :, w]``.
    """
    basis = torch.eye(size, dtype=torch.float32).view(size, 1, size, 1).expand(size, 1, size, 2)
    with torch.no_grad():
        return operator(basis.contiguous())[:, 0, :, 0].T.contiguous()


def along_axes(maps: Tensor, rows: Tensor, cols_t: Tensor) -> Tensor:
    """Apply one matrix along the height and one along the width of ``(..., H, W)`` maps.

    Args:
        maps: ``(..., H, W)``.
        rows: ``(H', H)``.
        cols_t: ``(W, W')``, the width matrix transposed.

    Returns:
        ``rows @ maps @ cols_t``, ``(..., H', W')``.
    """
    return rows @ maps @ cols_t


Complex = tuple[Tensor, Tensor | None]
"""A complex tensor as its real and imaginary parts (``None``: zero)."""


def complex_matmul(left: Complex, right: Complex) -> Complex:
    """Matrix product of two complex tensors kept as real and imaginary parts.

    Args:
        left: ``(real, imag)`` of the left factor.
        right: ``(real, imag)`` of the right factor.

    Returns:
        Real and imaginary parts of ``left @ right`` (imaginary ``None`` when both factors are real).
    """
    (left_real, left_imag), (right_real, right_imag) = left, right
    real, imag = left_real @ right_real, None
    if right_imag is not None:
        imag = left_real @ right_imag
    if left_imag is not None:
        cross = left_imag @ right_real
        imag = cross if imag is None else imag + cross
        if right_imag is not None:
            real = real - left_imag @ right_imag
    return real, imag


class SaliencyGraphMasks(nn.Module):
    """The masks of :class:`SpectralResidualSaliencyMask` for one image size, from export-friendly operators only.

    Every linear step is a product with fixed matrices along the height and the width, read off the eager
    operators themselves (:func:`axis_matrix`) so that they hold the same weights: the antialiased bilinear
    downscale to ``work_size``, the circular 3 x 3 mean of the log amplitude, the reflect-padded Gaussian blur
    followed by the bilinear upscale back to the image (one matrix per axis), the cell averages and the nearest
    cell upsampling. The 2-D DFT and its inverse are products with the cosine and sine matrices
    (``F = cos - i sin``, so the transform of ``x`` is ``F @ x @ F``), real and imaginary parts kept apart; the
    image mean is taken out before the transform and added back to the DC term, which keeps float32 cancellation
    off the other frequencies. The phase enters as ``spectrum / |spectrum|`` (``1`` where the amplitude is exactly
    zero, where ``torch.angle`` gives 0). The cells are picked with ``topk`` and ``scatter``.

    The saliency agrees with the eager one to float32 rounding (about ``1e-5`` relative), so a mask differs only
    where two cells' scores nearly tie at the masking threshold. An image without any structure (constant) is the
    exception: its spectrum is rounding noise in both computations, and so are its masks.

    Args:
        generator: The eager generator whose settings to use.
        image_size: Height and width of the images.
    """

    def __init__(self, generator: SpectralResidualSaliencyMask, image_size: tuple[int, int]) -> None:
        super().__init__()
        height, width = image_size
        size, cell = generator.work_size, generator.cell_size
        grid_h, grid_w = -(-height // cell), -(-width // cell)
        self.work_size, self.grid = size, (grid_h, grid_w)
        self.num_masked = generator.num_masked(grid_h * grid_w)

        def resize(length: int) -> Callable[[Tensor], Tensor]:
            return lambda maps: F.interpolate(maps, size=(length, maps.shape[-1]), mode="bilinear", antialias=True)

        def upscale(length: int) -> Callable[[Tensor], Tensor]:
            return lambda maps: F.interpolate(maps, size=(length, maps.shape[-1]), mode="bilinear", align_corners=False)

        def circular_mean(maps: Tensor) -> Tensor:
            return F.avg_pool2d(F.pad(maps, (0, 0, 1, 1), mode="circular"), kernel_size=(3, 1), stride=1)

        def blur(maps: Tensor) -> Tensor:
            if not generator.blur_sigma:
                return maps
            kernel = generator.blur_kernel()
            radius = (kernel.numel() - 1) // 2
            return F.conv2d(F.pad(maps, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))

        def cell_mean(maps: Tensor) -> Tensor:
            return F.avg_pool2d(maps, kernel_size=(cell, 1), stride=(cell, 1), ceil_mode=True)

        def spread(length: int) -> Callable[[Tensor], Tensor]:
            return lambda cells: upsample_cells(cells, cell, length, cells.shape[-1])

        def blur_then_upscale(length: int) -> Tensor:
            return (axis_matrix(upscale(length), size).double() @ axis_matrix(blur, size).double()).float()

        frequencies = torch.arange(size, dtype=torch.float64)
        angles = 2 * math.pi * (torch.outer(frequencies, frequencies) % size) / size
        dc = torch.zeros(size, size)
        dc[0, 0] = size * size
        mean_rows = axis_matrix(circular_mean, size)
        buffers = {
            "luma": torch.tensor(_LUMA).view(1, 3, 1, 1),
            "down_rows": axis_matrix(resize(size), height),
            "down_cols_t": axis_matrix(resize(size), width).T,
            "cos": torch.cos(angles).float(),
            "sin": torch.sin(angles).float(),
            "minus_sin": -torch.sin(angles).float(),
            "dc": dc,
            "mean_rows": mean_rows,
            "mean_cols_t": mean_rows.T,
            "up_rows": blur_then_upscale(height),
            "up_cols_t": blur_then_upscale(width).T,
            "cell_rows": axis_matrix(cell_mean, height),
            "cell_cols_t": axis_matrix(cell_mean, width).T,
            "spread_rows": axis_matrix(spread(height), grid_h),
            "spread_cols_t": axis_matrix(spread(width), grid_w).T,
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.contiguous(), persistent=False)
        self.eval()

    def saliency_map(self, images: Tensor) -> Tensor:
        """The spectral residual saliency at image resolution, as :meth:`SpectralResidualSaliencyMask.saliency_map`.

        Args:
            images: Images ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            Non-negative saliency ``(B, 1, H, W)``, float32.
        """
        gray = (images.float() * self.luma).sum(dim=1, keepdim=True)
        gray = along_axes(gray, self.down_rows, self.down_cols_t)
        mean = gray.mean(dim=(-2, -1), keepdim=True)
        dft, inverse = (self.cos, self.minus_sin), (self.cos, self.sin)
        real, imag = complex_matmul(complex_matmul(dft, (gray - mean, None)), dft)
        real = real + mean * self.dc
        amplitude = torch.sqrt(real.square() + imag.square())
        log_amplitude = torch.log(amplitude + 1e-8)
        magnitude = torch.exp(log_amplitude - along_axes(log_amplitude, self.mean_rows, self.mean_cols_t))
        nonzero = amplitude > 0
        safe = torch.where(nonzero, amplitude, torch.ones_like(amplitude))
        residual = (
            magnitude * torch.where(nonzero, real / safe, torch.ones_like(real)),
            magnitude * torch.where(nonzero, imag / safe, torch.zeros_like(imag)),
        )
        real, imag = complex_matmul(complex_matmul(inverse, residual), inverse)
        saliency = (real.square() + imag.square()) / float(self.work_size**4)
        return along_axes(saliency, self.up_rows, self.up_cols_t).clamp_min(0)

    def forward(self, images: Tensor) -> Tensor:
        """Mask the most salient cells of every image.

        Args:
            images: Images ``(B, 3, H, W)`` in ``[0, 1]`` of the module's size.

        Returns:
            Masks ``(B, 1, H, W)``, float32 in ``{0, 1}``.
        """
        cell_scores = along_axes(self.saliency_map(images), self.cell_rows, self.cell_cols_t)
        flat = cell_scores.flatten(1)
        # zeros and ones derived from the batch: zeros_like / ones_like would be traced as constants of batch size 1
        cells = flat * 0
        if self.num_masked:
            values, top = flat.topk(self.num_masked, dim=1)
            cells = cells.scatter(1, top, values * 0 + 1)
        return along_axes(cells.view(-1, 1, *self.grid), self.spread_rows, self.spread_cols_t)

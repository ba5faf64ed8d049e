"""Image similarity measures and the inpainting training loss.

* :func:`ssim` is torchmetrics' ``structural_similarity_index_measure`` (Gaussian window, reflection padding,
  mean over every pixel, ``K1 = 0.01``, ``K2 = 0.03``).
* :func:`gms_map` / :func:`msgms_map` are the (multi-scale) gradient magnitude similarity maps of RIAD, computed per
  channel with 3x3 Prewitt kernels.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure

from fader_lightning.errors import ConfigError

log = logging.getLogger(__name__)

_GMS_EPS = 1e-12


def _check_pair(x: Tensor, y: Tensor, name: str) -> None:
    """Checks that two image batches are 4-D and of equal shape.

    Args:
        x: First batch.
        y: Second batch.
        name: Name of the calling function, for the error message.

    Raises:
        ValueError: If the shapes differ or are not ``(B, C, H, W)``.
    """
    if x.dim() != 4 or x.shape != y.shape:
        raise ValueError(
            f"{name} expects two tensors of equal shape (B, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def ssim(
    x: Tensor,
    y: Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    reduction: Literal["mean", "none"] = "mean",
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity index with a Gaussian window: torchmetrics' ``structural_similarity_index_measure``.

    Both images are reflection-padded by ``window_size // 2``, local statistics come from a depthwise Gaussian
    convolution and the SSIM map is averaged over all channels and pixels. The window size is given explicitly
    (torchmetrics would otherwise derive it from sigma).

    Args:
        x: Images of shape ``(B, C, H, W)``.
        y: Images of the same shape.
        window_size: Odd side length of the Gaussian window; reflection padding needs
            ``window_size // 2 < min(H, W)``.
        sigma: Standard deviation of the Gaussian window.
        data_range: Value range of the images (``1.0`` for ``[0, 1]``).
        reduction: ``"mean"`` returns a scalar, ``"none"`` one value per image.
        k1: SSIM luminance constant.
        k2: SSIM contrast constant.

    Returns:
        Scalar SSIM, or SSIM per image of shape ``(B,)``.

    Raises:
        ValueError: If the inputs do not fit, the window is not odd and positive, sigma is not positive, the
            images are too small for the window or ``reduction`` is unknown.
    """
    _check_pair(x, y, "ssim")
    if window_size <= 0 or window_size % 2 == 0:
        raise ValueError(f"ssim window_size must be an odd positive integer, got {window_size}")
    if sigma <= 0:
        raise ValueError(f"ssim sigma must be positive, got {sigma}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"ssim reduction must be 'mean' or 'none', got {reduction!r}")
    if window_size // 2 >= min(x.shape[-2:]):
        raise ValueError(
            f"ssim window_size {window_size} is too large for images of size {tuple(x.shape[-2:])}; "
            f"use an odd window of at most {2 * min(x.shape[-2:]) - 1}"
        )
    return structural_similarity_index_measure(
        x, y, gaussian_kernel=True, sigma=sigma, kernel_size=window_size, data_range=data_range,
        reduction="elementwise_mean" if reduction == "mean" else "none", k1=k1, k2=k2,
    )  # fmt: skip


def _prewitt_kernels(channels: int, like: Tensor) -> Tensor:
    """Builds depthwise Prewitt kernels (x then y for every channel), divided by 3.

    Args:
        channels: Number of channels.
        like: Tensor whose device and dtype the kernels take.

    Returns:
        Kernels of shape ``(2 * channels, 1, 3, 3)``.
    """
    kx = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=like.dtype, device=like.device) / 3.0
    return torch.stack((kx, kx.t())).unsqueeze(1).repeat(channels, 1, 1, 1)


def _gradient_magnitude(x: Tensor) -> Tensor:
    """Per-channel Prewitt gradient magnitude with zero padding.

    Args:
        x: Images of shape ``(B, C, H, W)``.

    Returns:
        Gradient magnitude of shape ``(B, C, H, W)``.
    """
    channels = x.shape[1]
    grad = F.conv2d(x, _prewitt_kernels(channels, x), padding=1, groups=channels)
    grad = grad.unflatten(1, (channels, 2))
    # The epsilon keeps the square root differentiable where the gradient vanishes.
    return torch.sqrt(grad[:, :, 0] ** 2 + grad[:, :, 1] ** 2 + _GMS_EPS)


def gms_map(x: Tensor, y: Tensor, c: float = 0.0026) -> Tensor:
    """Gradient magnitude similarity map.

    ``GMS = (2 g_x g_y + c) / (g_x^2 + g_y^2 + c)`` where ``g`` is the magnitude of the 3x3 Prewitt gradient (kernels
    divided by 3, zero padding) of each channel. Identical inputs give exactly 1 everywhere.

    Args:
        x: Images of shape ``(B, C, H, W)``.
        y: Images of the same shape.
        c: Stabilising constant.

    Returns:
        Similarity map of shape ``(B, C, H, W)`` in ``(0, 1]``.

    Raises:
        ValueError: If the shapes differ or are not 4-D.
    """
    _check_pair(x, y, "gms_map")
    gx = _gradient_magnitude(x)
    gy = _gradient_magnitude(y)
    return (2 * gx * gy + c) / (gx * gx + gy * gy + c)


def msgms_map(x: Tensor, y: Tensor, num_scales: int = 4, c: float = 0.0026) -> Tensor:
    """Multi-scale gradient magnitude similarity map.

    At scale ``s`` (``0 .. num_scales-1``) both images are average-pooled by 2 ``s`` times, the GMS map is
    computed and bilinearly up-sampled (``align_corners=False``) to the input size; the maps are averaged.

    Args:
        x: Images of shape ``(B, C, H, W)``.
        y: Images of the same shape.
        num_scales: Number of scales; ``H`` and ``W`` must be at least ``2 ** (num_scales - 1)``.
        c: Stabilising constant of :func:`gms_map`.

    Returns:
        Similarity map of shape ``(B, C, H, W)``.

    Raises:
        ValueError: If the shapes differ, ``num_scales < 1`` or the images are too small for ``num_scales``.
    """
    _check_pair(x, y, "msgms_map")
    if num_scales < 1:
        raise ValueError(f"msgms_map num_scales must be >= 1, got {num_scales}")
    size = tuple(x.shape[-2:])
    if min(size) < 2 ** (num_scales - 1):
        raise ValueError(
            f"msgms_map with num_scales={num_scales} needs images of at least {2 ** (num_scales - 1)} pixels per "
            f"side, got {size}"
        )
    total = gms_map(x, y, c)
    for _ in range(num_scales - 1):
        x = F.avg_pool2d(x, kernel_size=2, stride=2)
        y = F.avg_pool2d(y, kernel_size=2, stride=2)
        total = total + F.interpolate(gms_map(x, y, c), size=size, mode="bilinear", align_corners=False)
    return total / num_scales


def msgms_loss(x: Tensor, y: Tensor, num_scales: int = 4, c: float = 0.0026) -> Tensor:
    """Multi-scale GMS loss ``mean(1 - msgms_map(x, y))``.

    Args:
        x: Images of shape ``(B, C, H, W)``.
        y: Images of the same shape.
        num_scales: Number of scales.
        c: Stabilising constant.

    Returns:
        Scalar loss.
    """
    return (1 - msgms_map(x, y, num_scales, c)).mean()


def ssim_loss(x: Tensor, y: Tensor, window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """SSIM loss ``1 - ssim(x, y)``.

    Args:
        x: Images of shape ``(B, C, H, W)``.
        y: Images of the same shape.
        window_size: Odd Gaussian window size.
        sigma: Gaussian standard deviation.
        data_range: Value range of the images.

    Returns:
        Scalar loss.
    """
    return 1 - ssim(x, y, window_size=window_size, sigma=sigma, data_range=data_range)


def l2_loss(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error.

    Args:
        x: Images of shape ``(B, C, H, W)``.
        y: Images of the same shape.

    Returns:
        Scalar loss.
    """
    _check_pair(x, y, "l2_loss")
    return F.mse_loss(x, y)


class InpaintingLoss(nn.Module):
    """Weighted sum of L2, SSIM and multi-scale GMS losses between a reconstruction and its target.

    Args:
        l2: Weight of the mean squared error.
        ssim: Weight of ``1 - SSIM``.
        msgms: Weight of ``mean(1 - MSGMS)``.
        ssim_window: Odd SSIM Gaussian window size.
        ssim_sigma: SSIM Gaussian standard deviation.
        msgms_scales: Number of MSGMS scales.

    Raises:
        ConfigError: If a weight is negative, all weights are zero, the SSIM window is not odd and positive or
            ``msgms_scales < 1``.
    """

    def __init__(
        self,
        l2: float = 1.0,
        ssim: float = 1.0,
        msgms: float = 1.0,
        ssim_window: int = 11,
        ssim_sigma: float = 1.5,
        msgms_scales: int = 4,
    ) -> None:
        super().__init__()
        weights = {"l2": float(l2), "ssim": float(ssim), "msgms": float(msgms)}
        for name, weight in weights.items():
            if weight < 0:
                raise ConfigError(f"{name}={weight} is negative; use a value >= 0 (0 disables the term)")
        if not any(weights.values()):
            raise ConfigError(
                "l2, ssim and msgms are all 0; set at least one of these loss weights to a positive value"
            )
        if ssim_window <= 0 or ssim_window % 2 == 0:
            raise ConfigError(f"ssim_window={ssim_window} is invalid; use an odd positive size such as 11")
        if msgms_scales < 1:
            raise ConfigError(f"msgms_scales={msgms_scales} is invalid; use an integer >= 1 such as 4")
        self.weights = weights
        self.ssim_window = ssim_window
        self.ssim_sigma = ssim_sigma
        self.msgms_scales = msgms_scales

    def forward(self, recon: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Computes the weighted loss and its unweighted terms.

        Args:
            recon: Reconstructions of shape ``(B, C, H, W)``.
            target: Target images of the same shape.

        Returns:
            ``"loss"`` (the weighted sum) and the unweighted terms ``"l2"``, ``"ssim"`` and
            ``"msgms"``; a term whose weight is 0 is not computed and reported as 0.
        """
        terms = {
            "l2": lambda: l2_loss(recon, target),
            "ssim": lambda: ssim_loss(recon, target, window_size=self.ssim_window, sigma=self.ssim_sigma),
            "msgms": lambda: msgms_loss(recon, target, num_scales=self.msgms_scales),
        }
        out: dict[str, Tensor] = {}
        total = recon.new_zeros(())
        for name, compute in terms.items():
            weight = self.weights[name]
            if weight == 0:
                out[name] = recon.new_zeros(())
                continue
            value = compute()
            out[name] = value
            total = total + weight * value
        out["loss"] = total
        return out

"""Anomaly maps and image-level anomaly scores from an image and its reconstruction.

The raw map is ``1 - MSGMS(image, recon)`` averaged over channels. The smoothed map applies a box (mean) filter
whose size scales with the image height: ``reference_kernel`` pixels at ``reference_size`` pixels, i.e. by default
21 at 256, 11 at 128, 43 at 512 (see :func:`scaled_kernel_size`).
"""

from __future__ import annotations

import logging
import math

import torch.nn.functional as F
from torch import Tensor, nn

from fader_lightning.errors import ConfigError
from fader_lightning.models.losses import msgms_map

logger = logging.getLogger(__name__)

POOLINGS: tuple[str, ...] = ("max", "mean", "topk_mean")


def _check_odd_positive(value: int, key: str) -> None:
    """Checks that a kernel size is an odd positive integer.

    Args:
        value (int): The kernel size.
        key (str): Name of the setting, for the error message.

    Raises:
        ConfigError: If ``value`` is not odd and positive.
    """
    if value < 1 or value % 2 == 0:
        raise ConfigError(f"{key}={value} is invalid; use an odd positive integer such as 21")


def _check_reference(reference_size: int, reference_kernel: int) -> None:
    """Validates the reference resolution and kernel size of the kernel scaling rule.

    Args:
        reference_size (int): Image height at which ``reference_kernel`` applies.
        reference_kernel (int): Kernel size at ``reference_size``.

    Raises:
        ConfigError: If ``reference_size`` is not positive or ``reference_kernel`` is not odd and positive.
    """
    if reference_size < 1:
        raise ConfigError(f"reference_size={reference_size} is invalid; use a positive image size such as 256")
    _check_odd_positive(reference_kernel, "reference_kernel")


def scaled_kernel_size(height: int, reference_size: int = 256, reference_kernel: int = 21) -> int:
    """Scales a smoothing kernel size with the image height and rounds it to an odd integer.

    With ``x = reference_kernel * height / reference_size`` the result is ``2 * floor(x / 2) + 1``, the odd
    integer in ``(x - 1, x + 1]`` (at least 1): 21 at 256, 11 at 128, 43 at 512, 5 at 64.

    Args:
        height (int): Image height in pixels.
        reference_size (int): Image height at which ``reference_kernel`` applies.
        reference_kernel (int): Odd kernel size at ``reference_size``.

    Returns:
        int: Odd kernel size ``>= 1``.

    Raises:
        ConfigError: If ``reference_size`` is not positive or ``reference_kernel`` is not odd and positive.
    """
    _check_reference(reference_size, reference_kernel)
    scaled = reference_kernel * height / reference_size
    return 2 * math.floor(scaled / 2) + 1


def box_filter(amap: Tensor, kernel_size: int) -> Tensor:
    """Mean-filters a map with a square window, keeping its size (replicate padding).

    Args:
        amap (Tensor): Maps of shape ``(B, C, H, W)``.
        kernel_size (int): Odd window side.

    Returns:
        Tensor: Filtered maps of shape ``(B, C, H, W)``.

    Raises:
        ConfigError: If ``kernel_size`` is not odd and positive.
    """
    _check_odd_positive(kernel_size, "kernel_size")
    if kernel_size == 1:
        return amap
    pad = kernel_size // 2
    return F.avg_pool2d(F.pad(amap, (pad, pad, pad, pad), mode="replicate"), kernel_size=kernel_size, stride=1)


def raw_anomaly_map(image: Tensor, recon: Tensor, num_scales: int = 4) -> Tensor:
    """Unsmoothed anomaly map ``1 - MSGMS`` averaged over channels.

    Args:
        image (Tensor): Images of shape ``(B, C, H, W)`` in ``[0, 1]``.
        recon (Tensor): Reconstructions of the same shape.
        num_scales (int): Number of MSGMS scales.

    Returns:
        Tensor: Map of shape ``(B, 1, H, W)``; 0 where the reconstruction is exact, larger is more anomalous.
    """
    return (1 - msgms_map(image, recon, num_scales=num_scales)).mean(dim=1, keepdim=True)


def anomaly_map(
    image: Tensor,
    recon: Tensor,
    kernel_size: int | None = None,
    num_scales: int = 4,
    reference_size: int = 256,
    reference_kernel: int = 21,
    smooth: bool = True,
    offset: Tensor | None = None,
) -> Tensor:
    """Anomaly map ``1 - MSGMS`` averaged over channels, minus an optional offset, and (optionally) mean-filtered.

    Args:
        image (Tensor): Images of shape ``(B, C, H, W)`` in ``[0, 1]``.
        recon (Tensor): Reconstructions of the same shape.
        kernel_size (int | None): Odd box-filter size; ``None`` scales ``reference_kernel`` with ``H`` (see
            :func:`scaled_kernel_size`).
        num_scales (int): Number of MSGMS scales.
        reference_size (int): Image height at which ``reference_kernel`` applies.
        reference_kernel (int): Odd box-filter size at ``reference_size``.
        smooth (bool): Apply the box filter; ``False`` returns :func:`raw_anomaly_map` minus ``offset``.
        offset (Tensor | None): Expected raw error of normal content, broadcastable to ``(B, 1, H, W)``, subtracted
            before smoothing (FADeR's residual use); ``None`` subtracts nothing.

    Returns:
        Tensor: Map of shape ``(B, 1, H, W)``.

    Raises:
        ConfigError: If a kernel size is not odd and positive.
    """
    amap = raw_anomaly_map(image, recon, num_scales=num_scales)
    if offset is not None:
        amap = amap - offset
    if not smooth:
        return amap
    if kernel_size is None:
        kernel_size = scaled_kernel_size(image.shape[-2], reference_size, reference_kernel)
    return box_filter(amap, kernel_size)


def _check_pooling(pooling: str, topk_fraction: float) -> None:
    """Validates image-score pooling settings.

    Args:
        pooling (str): Pooling name.
        topk_fraction (float): Fraction of pixels for ``"topk_mean"``.

    Raises:
        ConfigError: If ``pooling`` is unknown or ``topk_fraction`` is outside ``(0, 1]``.
    """
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling={pooling!r} is unknown; use one of {', '.join(POOLINGS)}")
    if not 0 < topk_fraction <= 1:
        raise ConfigError(f"topk_fraction={topk_fraction} is invalid; use a fraction in (0, 1] such as 0.01")


def image_score(amap: Tensor, pooling: str = "max", topk_fraction: float = 0.01) -> Tensor:
    """Pools anomaly maps into one score per image.

    Args:
        amap (Tensor): Maps of shape ``(B, ...)`` (typically ``(B, 1, H, W)``).
        pooling (str): ``"max"``, ``"mean"`` or ``"topk_mean"`` (mean of the ``ceil(topk_fraction * N)`` largest
            of the ``N`` values per image, at least one).
        topk_fraction (float): Fraction of values for ``"topk_mean"``, in ``(0, 1]``.

    Returns:
        Tensor: Scores of shape ``(B,)``.

    Raises:
        ConfigError: If ``pooling`` is unknown or ``topk_fraction`` is outside ``(0, 1]``.
    """
    _check_pooling(pooling, topk_fraction)
    flat = amap.flatten(1)
    if pooling == "max":
        return flat.amax(dim=1)
    if pooling == "mean":
        return flat.mean(dim=1)
    k = max(1, math.ceil(topk_fraction * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)


class AnomalyScorer(nn.Module):
    """Module computing the smoothed anomaly map and the image score of an image/reconstruction pair.

    All settings are fixed at construction; ``forward`` has no data-dependent control flow (the kernel size only
    depends on the input height), so the module can be traced or exported to ONNX for a fixed image size.

    Args:
        kernel_size (int | None): Odd box-filter size; ``None`` scales ``reference_kernel`` with the input height.
        num_scales (int): Number of MSGMS scales.
        reference_size (int): Image height at which ``reference_kernel`` applies.
        reference_kernel (int): Odd box-filter size at ``reference_size``.
        smooth (bool): Apply the box filter.
        pooling (str): Image-score pooling, one of ``"max"``, ``"mean"``, ``"topk_mean"``.
        topk_fraction (float): Fraction of pixels for ``"topk_mean"``.

    Raises:
        ConfigError: If a kernel size, the pooling or ``topk_fraction`` is invalid.
    """

    def __init__(
        self,
        kernel_size: int | None = None,
        num_scales: int = 4,
        reference_size: int = 256,
        reference_kernel: int = 21,
        smooth: bool = True,
        pooling: str = "max",
        topk_fraction: float = 0.01,
    ) -> None:
        super().__init__()
        if kernel_size is not None:
            _check_odd_positive(kernel_size, "kernel_size")
        _check_reference(reference_size, reference_kernel)
        _check_pooling(pooling, topk_fraction)
        self.kernel_size = kernel_size
        self.num_scales = num_scales
        self.reference_size = reference_size
        self.reference_kernel = reference_kernel
        self.smooth = smooth
        self.pooling = pooling
        self.topk_fraction = topk_fraction

    def forward(self, image: Tensor, recon: Tensor, offset: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Computes anomaly maps and image scores.

        Args:
            image (Tensor): Images of shape ``(B, C, H, W)`` in ``[0, 1]``.
            recon (Tensor): Reconstructions of the same shape.
            offset (Tensor | None): Raw-map offset subtracted before smoothing (see :func:`anomaly_map`).

        Returns:
            tuple[Tensor, Tensor]: Maps of shape ``(B, 1, H, W)`` and scores of shape ``(B,)``.
        """
        amap = anomaly_map(
            image,
            recon,
            kernel_size=self.kernel_size,
            num_scales=self.num_scales,
            reference_size=self.reference_size,
            reference_kernel=self.reference_kernel,
            smooth=self.smooth,
            offset=offset,
        )
        return amap, image_score(amap, self.pooling, self.topk_fraction)

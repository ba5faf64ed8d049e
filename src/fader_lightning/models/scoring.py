"""Anomaly maps and image-level anomaly scores from an image and its reconstruction.

The raw map is ``1 - MSGMS(image, recon)`` averaged over channels. The smoothed map applies a box (mean) filter
whose size scales with the image height: ``reference_kernel`` pixels at ``reference_size`` pixels, i.e. by default
21 at 256, 11 at 128, 43 at 512 (see :func:`scaled_kernel_size`).

Optionally the smoothed map is normalised by per-pixel statistics of normal images (:class:`MapStatistics`):
``mean`` subtracts the expected map of a normal image, ``zscore`` also divides by its per-pixel standard deviation
(floored at ``std_floor`` times the mean standard deviation, so that pixels that never vary on normals do not
explode). Both take away what a model reconstructs badly on every normal image (edges, specular highlights, the
border of an aligned object), which the maximum would otherwise pick up before the defect.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fader_lightning.errors import ConfigError
from fader_lightning.models.losses import msgms_map

log = logging.getLogger(__name__)

POOLINGS: tuple[str, ...] = ("max", "mean", "topk_mean")
NORMALIZATIONS: tuple[str, ...] = ("none", "mean", "zscore")


def _check_odd_positive(value: int, key: str) -> None:
    """Checks that a kernel size is an odd positive integer.

    Args:
        value: The kernel size.
        key: Name of the setting, for the error message.

    Raises:
        ConfigError: If ``value`` is not odd and positive.
    """
    if value < 1 or value % 2 == 0:
        raise ConfigError(f"{key}={value} is invalid; use an odd positive integer such as 21")


def _check_reference(reference_size: int, reference_kernel: int) -> None:
    """Validates the reference resolution and kernel size of the kernel scaling rule.

    Args:
        reference_size: Image height at which ``reference_kernel`` applies.
        reference_kernel: Kernel size at ``reference_size``.

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
        height: Image height in pixels.
        reference_size: Image height at which ``reference_kernel`` applies.
        reference_kernel: Odd kernel size at ``reference_size``.

    Returns:
        Odd kernel size ``>= 1``.

    Raises:
        ConfigError: If ``reference_size`` is not positive or ``reference_kernel`` is not odd and positive.
    """
    _check_reference(reference_size, reference_kernel)
    scaled = reference_kernel * height / reference_size
    return 2 * math.floor(scaled / 2) + 1


def box_filter(amap: Tensor, kernel_size: int) -> Tensor:
    """Mean-filters a map with a square window, keeping its size (replicate padding).

    Args:
        amap: Maps of shape ``(B, C, H, W)``.
        kernel_size: Odd window side.

    Returns:
        Filtered maps of shape ``(B, C, H, W)``.

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
        image: Images of shape ``(B, C, H, W)`` in ``[0, 1]``.
        recon: Reconstructions of the same shape.
        num_scales: Number of MSGMS scales.

    Returns:
        Map of shape ``(B, 1, H, W)``; 0 where the reconstruction is exact, larger is more anomalous.
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
        image: Images of shape ``(B, C, H, W)`` in ``[0, 1]``.
        recon: Reconstructions of the same shape.
        kernel_size: Odd box-filter size; ``None`` scales ``reference_kernel`` with ``H`` (see
            :func:`scaled_kernel_size`).
        num_scales: Number of MSGMS scales.
        reference_size: Image height at which ``reference_kernel`` applies.
        reference_kernel: Odd box-filter size at ``reference_size``.
        smooth: Apply the box filter; ``False`` returns :func:`raw_anomaly_map` minus ``offset``.
        offset: Expected raw error of normal content, broadcastable to ``(B, 1, H, W)``, subtracted
            before smoothing (FADeR's residual use); ``None`` subtracts nothing.

    Returns:
        Map of shape ``(B, 1, H, W)``.

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
        pooling: Pooling name.
        topk_fraction: Fraction of pixels for ``"topk_mean"``.

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
        amap: Maps of shape ``(B, ...)`` (typically ``(B, 1, H, W)``).
        pooling: ``"max"``, ``"mean"`` or ``"topk_mean"`` (mean of the ``ceil(topk_fraction * N)`` largest
            of the ``N`` values per image, at least one).
        topk_fraction: Fraction of values for ``"topk_mean"``, in ``(0, 1]``.

    Returns:
        Scores of shape ``(B,)``.

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


def _check_normalization(normalize: str, std_floor: float) -> None:
    """Validates map-normalisation settings.

    Args:
        normalize: Normalisation name.
        std_floor: Floor of the standard deviation, as a fraction of its mean.

    Raises:
        ConfigError: If ``normalize`` is unknown or ``std_floor`` is not positive.
    """
    if normalize not in NORMALIZATIONS:
        raise ConfigError(f"normalize={normalize!r} is unknown; use one of {', '.join(NORMALIZATIONS)}")
    if not std_floor > 0:
        raise ConfigError(f"std_floor={std_floor} is invalid; use a positive fraction such as 1.0")


class MapStatistics:
    """Running per-pixel mean and standard deviation of anomaly maps of normal images (float64 sums).

    Args:
        shape: Map height and width.
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        self.count = 0
        self.total = torch.zeros(shape, dtype=torch.float64)
        self.squares = torch.zeros(shape, dtype=torch.float64)

    def update(self, amap: Tensor) -> None:
        """Adds a batch of maps.

        Args:
            amap: Maps of shape ``(B, 1, H, W)``.
        """
        values = amap.detach().squeeze(1).to("cpu", torch.float64)
        self.count += values.shape[0]
        self.total += values.sum(0)
        self.squares += values.square().sum(0)

    def compute(self) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation (population) per pixel.

        Returns:
            Both of shape ``(1, 1, H, W)``, float32.

        Raises:
            ValueError: If no map was added.
        """
        if self.count == 0:
            raise ValueError("no normal maps were added; the statistics need at least one image")
        mean = self.total / self.count
        var = (self.squares / self.count - mean.square()).clamp_min(0)
        return mean.float()[None, None], var.sqrt().float()[None, None]


class AnomalyScorer(nn.Module):
    """Module computing the smoothed anomaly map and the image score of an image/reconstruction pair.

    All settings are fixed at construction; ``forward`` has no data-dependent control flow (the kernel size only
    depends on the input height), so the module can be traced or exported to ONNX for a fixed image size. The
    normal-map statistics of ``normalize`` are buffers (saved in checkpoints, constants in an export); until
    :meth:`set_statistics` gives them, maps are not normalised.

    Args:
        kernel_size: Odd box-filter size; ``None`` scales ``reference_kernel`` with the input height.
        num_scales: Number of MSGMS scales.
        reference_size: Image height at which ``reference_kernel`` applies.
        reference_kernel: Odd box-filter size at ``reference_size``.
        smooth: Apply the box filter.
        pooling: Image-score pooling, one of ``"max"``, ``"mean"``, ``"topk_mean"``.
        topk_fraction: Fraction of pixels for ``"topk_mean"``.
        normalize: ``"none"``, ``"mean"`` (subtract the normal mean map) or ``"zscore"`` (and divide by the
            normal standard deviation map).
        std_floor: Floor of the standard deviation of ``"zscore"``, as a fraction of its spatial mean.

    Raises:
        ConfigError: If a kernel size, the pooling, ``topk_fraction`` or the normalisation is invalid.
    """

    map_mean: Tensor
    map_std: Tensor
    thresholds: Tensor

    def __init__(
        self,
        kernel_size: int | None = None,
        num_scales: int = 4,
        reference_size: int = 256,
        reference_kernel: int = 21,
        smooth: bool = True,
        pooling: str = "max",
        topk_fraction: float = 0.01,
        normalize: str = "none",
        std_floor: float = 1.0,
    ) -> None:
        super().__init__()
        if kernel_size is not None:
            _check_odd_positive(kernel_size, "kernel_size")
        _check_reference(reference_size, reference_kernel)
        _check_pooling(pooling, topk_fraction)
        _check_normalization(normalize, std_floor)
        self.kernel_size = kernel_size
        self.num_scales = num_scales
        self.reference_size = reference_size
        self.reference_kernel = reference_kernel
        self.smooth = smooth
        self.pooling = pooling
        self.topk_fraction = topk_fraction
        self.normalize = normalize
        self.std_floor = std_floor
        self.register_buffer("map_mean", torch.zeros(0))
        self.register_buffer("map_std", torch.zeros(0))
        # image and pixel thresholds calibrated on normal images, on this scorer's scale (empty: not calibrated)
        self.register_buffer("thresholds", torch.zeros(0))

    @property
    def needs_statistics(self) -> bool:
        """bool: ``True`` when maps are to be normalised but no statistics were given yet."""
        return self.normalize != "none" and self.map_mean.numel() == 0

    def set_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Stores the per-pixel statistics of normal maps (see :class:`MapStatistics`).

        Args:
            mean: Mean map ``(1, 1, H, W)``.
            std: Standard deviation map of the same shape.
        """
        self.map_mean = mean.to(self.map_mean.device, torch.float32)
        self.map_std = std.to(self.map_std.device, torch.float32)

    @property
    def image_threshold(self) -> float | None:
        """The calibrated image threshold, ``None`` before :meth:`set_thresholds`."""
        return float(self.thresholds[0]) if self.thresholds.numel() else None

    @property
    def pixel_threshold(self) -> float | None:
        """The calibrated pixel threshold, ``None`` before :meth:`set_thresholds`."""
        return float(self.thresholds[1]) if self.thresholds.numel() else None

    @property
    def normal_lows(self) -> tuple[float, float] | None:
        """The smallest image score and map value of the calibration images, ``None`` when not stored.

        Checkpoints calibrated before they were stored hold thresholds only.
        """
        return (float(self.thresholds[2]), float(self.thresholds[3])) if self.thresholds.numel() == 4 else None

    def set_thresholds(self, image: float, pixel: float, image_low: float, pixel_low: float) -> None:
        """Stores the image and pixel thresholds and lows (calibrated on normal images, on this scorer's scale).

        Args:
            image: Image-score threshold (the largest score of the calibration images).
            pixel: Anomaly-map threshold (their largest map value).
            image_low: Their smallest score, which :func:`calibrated_scale` maps to 0.1.
            pixel_low: Their smallest map value.
        """
        values = [image, pixel, image_low, pixel_low]
        self.thresholds = torch.tensor(values, dtype=torch.float32, device=self.thresholds.device)

    def clear_thresholds(self) -> None:
        """Forgets the thresholds, so that they are calibrated again (e.g. with other calibration settings)."""
        self.thresholds = torch.zeros(0, device=self.thresholds.device)

    def clear_statistics(self) -> None:
        """Forgets the statistics, so that maps come out unnormalised (to measure new ones)."""
        self.set_statistics(torch.zeros(0), torch.zeros(0))

    def calibrated_state(self) -> dict[str, Tensor]:
        """A copy of what was measured on normal images (statistics and thresholds), for :meth:`restore`."""
        return {name: getattr(self, name).clone() for name in ("map_mean", "map_std", "thresholds")}

    def restore(self, state: dict[str, Tensor]) -> None:
        """Put back what :meth:`calibrated_state` copied.

        Args:
            state: The copy.
        """
        for name, value in state.items():
            setattr(self, name, value.to(getattr(self, name).device))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Takes the calibrated buffers' shapes from the checkpoint; checkpoints without them load as uncalibrated.

        Every buffer measured after fitting is empty until measured, so checkpoints of either kind fit any model.
        """
        for name in ("map_mean", "map_std", "thresholds"):
            saved = state_dict.setdefault(prefix + name, torch.zeros(0))
            setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def smoothed(self, image: Tensor, recon: Tensor, offset: Tensor | None = None) -> Tensor:
        """The smoothed, unnormalised anomaly map (see :func:`anomaly_map`).

        Args:
            image: Images of shape ``(B, C, H, W)`` in ``[0, 1]``.
            recon: Reconstructions of the same shape.
            offset: Raw-map offset subtracted before smoothing.

        Returns:
            Maps of shape ``(B, 1, H, W)``.
        """
        return anomaly_map(
            image,
            recon,
            kernel_size=self.kernel_size,
            num_scales=self.num_scales,
            reference_size=self.reference_size,
            reference_kernel=self.reference_kernel,
            smooth=self.smooth,
            offset=offset,
        )

    def finish(self, amap: Tensor) -> tuple[Tensor, Tensor]:
        """Normalises smoothed maps (once statistics are set) and pools them into image scores.

        Args:
            amap: Smoothed maps of shape ``(B, 1, H, W)``.

        Returns:
            Maps of shape ``(B, 1, H, W)`` and scores of shape ``(B,)``.

        Raises:
            ConfigError: If the statistics were measured at another map size.
        """
        if self.normalize != "none" and self.map_mean.numel():
            if self.map_mean.shape[-2:] != amap.shape[-2:]:
                raise ConfigError(
                    f"the normal-map statistics are {tuple(self.map_mean.shape[-2:])} px but the maps are "
                    f"{tuple(amap.shape[-2:])} px; use the image size the model was trained at (data.image_size)"
                )
            amap = amap - self.map_mean
            if self.normalize == "zscore":
                amap = amap / (self.map_std + self.std_floor * self.map_std.mean())
        return amap, image_score(amap, self.pooling, self.topk_fraction)

    def forward(self, image: Tensor, recon: Tensor, offset: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Computes anomaly maps and image scores.

        Args:
            image: Images of shape ``(B, C, H, W)`` in ``[0, 1]``.
            recon: Reconstructions of the same shape.
            offset: Raw-map offset subtracted before smoothing (see :func:`anomaly_map`).

        Returns:
            Maps of shape ``(B, 1, H, W)`` and scores of shape ``(B,)``.
        """
        return self.finish(self.smoothed(image, recon, offset))


MAP_SETTINGS: tuple[str, ...] = ("kernel_size", "num_scales", "reference_size", "reference_kernel", "smooth")
"""tuple[str, ...]: The scorer settings that change the unnormalised map, and so invalidate its statistics."""
SCALE_SETTINGS: tuple[str, ...] = ("normalize", "std_floor", "pooling", "topk_fraction")
"""tuple[str, ...]: The other settings that change the scale of maps and scores, and so invalidate thresholds."""


CALIBRATED_GAIN = 4.0
"""How far from 0.5 the calibration range reaches on the calibrated scale: their lowest score maps to 0.1."""
CALIBRATED_FORMULA = "0.5 + 0.5 * x / (1 + abs(x)), x = 4 * (value - threshold) / (threshold - low)"
""":func:`calibrated_scale` as the export side-car states it."""


def calibrated_scale(values: Tensor, low: float, threshold: float) -> Tensor:
    """Put scores on a ``(0, 1)`` scale where the threshold is 0.5 and every difference in score is kept.

    ``0.5 + 0.5 * x / (1 + |x|)`` with ``x = 4 * (value - threshold) / (threshold - low)``: the threshold maps to
    0.5, the calibration images' lowest score to 0.1, a score as far above the threshold as their range reaches to
    0.9, and ten ranges above to 0.988. The function is strictly increasing and never reaches 0 or 1, so the order of
    scores survives over the whole range (a clipped scale would read 1.0 for most anomalies), and
    ``calibrated_scale(value) > 0.5`` exactly when ``value > threshold``.

    Args:
        values: Scores or maps.
        low: Smallest score of the calibration images.
        threshold: The threshold.

    Returns:
        The values on the calibrated scale, float32 (computed in float64, so that far-apart large scores stay apart).
    """
    spread = max(threshold - low, 1e-12)
    x = CALIBRATED_GAIN * (values.double() - threshold) / spread
    return (0.5 + 0.5 * x / (1.0 + x.abs())).float()


def rebuild_scorer(old: AnomalyScorer, settings: dict[str, Any]) -> AnomalyScorer:
    """A scorer with new settings that keeps what the old one measured while it still applies.

    The normal-map statistics stay while the unnormalised map is the same (:data:`MAP_SETTINGS`); the thresholds
    stay only while every setting is the same, since normalisation and pooling change the scale of the scores.

    Args:
        old: The scorer being replaced.
        settings: Keyword arguments of the new :class:`AnomalyScorer`.

    Returns:
        The new scorer.
    """
    new = AnomalyScorer(**settings).to(old.map_mean.device)
    if old.map_mean.numel() and all(getattr(old, key) == getattr(new, key) for key in MAP_SETTINGS):
        new.set_statistics(old.map_mean, old.map_std)
    if all(getattr(old, key) == getattr(new, key) for key in (*MAP_SETTINGS, *SCALE_SETTINGS)):
        new.thresholds = old.thresholds.clone()
    return new

"""FADeR: feature attenuation on the skip connections of a frozen inpainting U-Net (stage 2).

A small per-patch MLP (:class:`PatchErrorPredictor`) predicts, from the obfuscated image ``I'`` (by default from
the frozen encoder's skip features of ``I'``), a score per patch (see :mod:`fader_lightning.models.fader.targets`
for what it learns). A soft mask
``s = 1 - sigmoid((pred - tau) / T)`` (:class:`SoftMask`) turns high predicted errors into small weights, and
:func:`attenuate` multiplies the skip tensors by ``s`` so that the decoder rebuilds suspicious patches from the
bottleneck (normal context) instead of copying them through the skips. The predictor is trained with the
Learning-Loss ranking loss (:func:`ranking_loss`) on normal images only.

How the prediction is used is a setting (``use``): ``attenuate`` (the paper's soft mask on the skips),
``residual`` (the expected normal error, mapped by a line fitted on training normals, is subtracted from the raw
anomaly map) or ``both``; each use reads its own output channel of the MLP. With ``attenuate_masked=False`` patches
that the binary mask ``M`` hid keep their skips: they hold no defect to copy, only the mosaic hint.

Everything here is pure torch; :meth:`FADeRModel.detect` is the whole one-pass inference shared by the Lightning module
and the ONNX export.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fader_lightning.errors import ConfigError
from fader_lightning.models.scoring import raw_anomaly_map
from fader_lightning.models.unet import attenuate

if TYPE_CHECKING:
    from fader_lightning.models.ear.model import EARModel

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("skip_features", "pixels")
ACTIVATIONS: dict[str, type[nn.Module]] = {"leaky_relu": nn.LeakyReLU, "relu": nn.ReLU, "gelu": nn.GELU}
MAPPINGS: tuple[str, ...] = ("calibrated", "literal")
USES: tuple[str, ...] = ("attenuate", "residual", "both")
HEADS: tuple[str, ...] = ("attenuate", "residual")
RESIDUAL_REGIONS: tuple[str, ...] = ("all", "masked")
PATCH_ERRORS: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "msgms": lambda image, recon, num_scales: raw_anomaly_map(image, recon, num_scales=num_scales),
    "mse": lambda image, recon, num_scales: (image - recon).pow(2).mean(dim=1, keepdim=True),
}
"""Pixel error maps ``(B, 1, H, W)`` of :func:`gt_patch_targets` by ``measure`` (``num_scales``: MSGMS only)."""
QUANTILE_MAX_ELEMENTS: int = 16_000_000
"""Largest tensor :meth:`SoftMask.calibrate` hands to :func:`torch.quantile` (which rejects inputs past 2**24)."""


def _check_choice(value: str, choices: Sequence[str], key: str) -> None:
    """Checks that a string setting is one of its valid values.

    Args:
        value: The setting.
        choices: Valid values.
        key: Config key, for the error message.

    Raises:
        ConfigError: If ``value`` is not in ``choices``.
    """
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is unknown; use one of {', '.join(choices)}")


def check_patch_grid(height: int, width: int, patch_size: int) -> None:
    """Checks that an image of ``height x width`` pixels splits into whole ``patch_size`` patches.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        patch_size: Patch side in pixels.

    Raises:
        ConfigError: If ``patch_size`` is not positive or does not divide both sides.
    """
    if patch_size < 1:
        raise ConfigError(f"patch_size={patch_size} is invalid; use a positive integer such as 8")
    if height % patch_size or width % patch_size:
        raise ConfigError(
            f"patch_size={patch_size} does not divide the image size {height}x{width}; use a patch size "
            f"that divides both sides (for example {math.gcd(height, width, 8)})"
        )


def _check_levels(levels: Sequence[int], num_levels: int) -> tuple[int, ...]:
    """Validates the skip levels to attenuate.

    Args:
        levels: Skip level indices, ``0`` being the highest resolution.
        num_levels: Number of skip tensors.

    Returns:
        The levels as a tuple of ints.

    Raises:
        ConfigError: If ``levels`` is empty, has duplicates, or an entry is not an index in ``[0, num_levels)``.
    """
    valid = list(range(num_levels))
    try:
        checked = tuple(int(level) for level in levels)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"levels={levels!r} is invalid; give a list of skip level indices from {valid}") from error
    if not checked or len(set(checked)) != len(checked) or any(level not in valid for level in checked):
        raise ConfigError(
            f"levels={list(checked)} is invalid; give distinct skip level indices from {valid} "
            "(or disable the attenuation altogether)"
        )
    return checked


def feature_dim(source: str, skip_channels: Sequence[int], patch_size: int, in_channels: int = 3) -> int:
    """Channel count of the predictor input that :func:`patch_features` produces.

    Args:
        source: ``"skip_features"`` or ``"pixels"``.
        skip_channels: Channels of each skip tensor (used by ``"skip_features"``).
        patch_size: Patch side in pixels (used by ``"pixels"``).
        in_channels: Channels of the obfuscated image (used by ``"pixels"``).

    Returns:
        ``sum(skip_channels)`` for ``"skip_features"``, ``in_channels * patch_size**2`` for ``"pixels"``.

    Raises:
        ConfigError: If ``source`` is unknown.
    """
    _check_choice(source, SOURCES, "source")
    if source == "skip_features":
        return int(sum(skip_channels))
    return in_channels * patch_size * patch_size


def patch_features(
    skips: Sequence[Tensor], obfuscated: Tensor, patch_size: int, source: str = "skip_features"
) -> Tensor:
    """Per-patch predictor input on the ``(H / P, W / P)`` patch grid.

    Args:
        skips: Skip tensors of the obfuscated image, highest resolution first (before any
            attenuation).
        obfuscated: Obfuscated images of shape ``(B, C, H, W)``.
        patch_size: Patch side ``P`` in pixels; must divide ``H`` and ``W``.
        source: ``"skip_features"``: every skip tensor adaptive-average-pooled to the patch grid and
            concatenated along channels; ``"pixels"``: the ``P x P x C`` pixels of each patch
            (:func:`torch.nn.functional.pixel_unshuffle`).

    Returns:
        Features of shape ``(B, D, H / P, W / P)`` with ``D`` given by :func:`feature_dim`.

    The settings are trusted: :class:`FADeRModel` checks ``source``, and the module checks that ``patch_size``
    divides the data's image size (:func:`check_patch_grid`).
    """
    height, width = obfuscated.shape[-2:]
    if source == "pixels":
        return F.pixel_unshuffle(obfuscated, patch_size)
    grid = (height // patch_size, width // patch_size)
    return torch.cat([F.adaptive_avg_pool2d(skip, grid) for skip in skips], dim=1)


class PatchErrorPredictor(nn.Module):
    """Two-layer MLP applied to every patch, as two ``1x1`` convolutions on the patch grid.

    ``Conv2d(d_in, hidden, 1) -> activation -> Conv2d(hidden, outputs, 1)``; each output channel is one predicted
    patch error (FADeR's heads).

    Args:
        d_in: Feature channels per patch.
        hidden: Hidden width.
        activation: ``"leaky_relu"`` (negative slope 0.01), ``"relu"`` or ``"gelu"``.
        outputs: Output channels.

    Raises:
        ConfigError: If ``activation`` is unknown or a width is not positive.
    """

    def __init__(self, d_in: int, hidden: int = 128, activation: str = "leaky_relu", outputs: int = 1) -> None:
        super().__init__()
        _check_choice(activation, tuple(ACTIVATIONS), "activation")
        if hidden < 1:
            raise ConfigError(f"hidden={hidden} is invalid; use a positive width such as 128")
        if d_in < 1:
            raise ConfigError(f"FADeR predictor input width {d_in} is invalid; it must be positive")
        self.net = nn.Sequential(
            nn.Conv2d(d_in, hidden, kernel_size=1), ACTIVATIONS[activation](), nn.Conv2d(hidden, outputs, kernel_size=1)
        )

    def forward(self, features: Tensor) -> Tensor:
        """Predicts the error of every patch.

        Args:
            features: Patch features of shape ``(B, d_in, h, w)``.

        Returns:
            Predicted patch errors of shape ``(B, outputs, h, w)``.
        """
        return self.net(features)


def check_calibration(
    quantile: float | str, median_quantile: float, temperature_scale: float, min_temperature: float
) -> None:
    """Check the settings of :meth:`SoftMask.calibrate`.

    Args:
        quantile: Quantile giving ``tau``, in ``(0, 1]``, or ``"max"``.
        median_quantile: Reference quantile of the temperature, in ``[0, quantile]``.
        temperature_scale: Positive factor of the quantile spread.
        min_temperature: Positive floor of ``T``.

    Raises:
        ConfigError: If a setting is out of range.
    """
    quantile = 1.0 if quantile == "max" else quantile
    if isinstance(quantile, str) or not 0 < quantile <= 1:
        raise ConfigError(f"quantile={quantile} is invalid; use a value in (0, 1] such as 0.99, or max")
    if not 0 <= median_quantile <= quantile:
        raise ConfigError(
            f"median_quantile={median_quantile} is invalid; use a value in [0, quantile={quantile}] such as 0.5"
        )
    if temperature_scale <= 0:
        raise ConfigError(f"temperature_scale={temperature_scale} is invalid; use a positive value like 0.1")
    if min_temperature <= 0:
        raise ConfigError(f"min_temperature={min_temperature} is invalid; use a positive value like 1e-6")


class SoftMask(nn.Module):
    """Maps predicted patch errors to skip weights ``s = 1 - sigmoid((pred - tau) / T)``.

    ``tau``, ``temperature`` and ``calibrated`` are persistent buffers, so checkpoints and exports carry the
    calibration. Until :meth:`calibrate` runs (and always with ``mapping="literal"``, the ablation) ``tau = 0`` and
    ``T = 1``. :meth:`forward` has no data-dependent control flow.

    Args:
        mapping: ``"calibrated"`` (``tau`` and ``T`` from :meth:`calibrate`) or ``"literal"`` (fixed
            ``tau = 0``, ``T = 1``).

    Raises:
        ConfigError: If ``mapping`` is unknown.
    """

    tau: Tensor
    temperature: Tensor
    calibrated: Tensor

    def __init__(self, mapping: str = "calibrated") -> None:
        super().__init__()
        _check_choice(mapping, MAPPINGS, "mapping")
        self.mapping = mapping
        self.register_buffer("tau", torch.tensor(0.0))
        self.register_buffer("temperature", torch.tensor(1.0))
        self.register_buffer("calibrated", torch.tensor(False))

    @property
    def is_calibrated(self) -> bool:
        """bool: Whether :meth:`calibrate` has set ``tau`` and ``T`` (always ``False`` for ``"literal"``)."""
        return bool(self.calibrated)

    def forward(self, pred: Tensor) -> Tensor:
        """Computes the soft mask.

        Args:
            pred: Predicted patch errors, any shape.

        Returns:
            Weights of the same shape in ``(0, 1]``: computed as ``sigmoid(-(pred - tau) / T)`` (equal to
            ``1 - sigmoid((pred - tau) / T)``) and clamped below at the smallest positive normal number of the dtype.
        """
        weights = torch.sigmoid((self.tau - pred) / self.temperature)
        return weights.clamp(min=torch.finfo(weights.dtype).tiny)

    @torch.no_grad()
    def calibrate(
        self,
        preds: Tensor,
        quantile: float | str = "max",
        median_quantile: float = 0.5,
        temperature_scale: float = 0.1,
        min_temperature: float = 1e-6,
    ) -> tuple[float, float]:
        """Sets ``tau`` and ``T`` from predicted errors of normal (training) images.

        ``tau = Q(quantile)`` and ``T = max(temperature_scale * (Q(quantile) - Q(median_quantile)),
        min_temperature)``, ``Q`` being the empirical quantile of ``preds``. Inputs with more than
        :data:`QUANTILE_MAX_ELEMENTS` values are subsampled with an even stride (deterministic). With
        ``mapping="literal"`` this is a no-op that returns the fixed ``(0, 1)``.

        Args:
            preds: Predicted patch errors of normal images, any shape.
            quantile: Quantile giving ``tau``, in ``(0, 1]``; ``"max"`` is ``1.0``.
            median_quantile: Reference quantile of the temperature, in ``[0, quantile]``.
            temperature_scale: Positive factor of the quantile spread.
            min_temperature: Positive floor of ``T`` (reached, with a warning, for near-constant
                predictions).

        Returns:
            The ``(tau, T)`` in use.

        Raises:
            ValueError: If ``preds`` is empty or not finite.

        The settings are trusted; :func:`check_calibration` checks them once.
        """
        quantile = 1.0 if quantile == "max" else quantile
        if self.mapping == "literal":
            log.info("SoftMask mapping 'literal' keeps tau=0, T=1; calibration skipped")
            return float(self.tau), float(self.temperature)
        flat = preds.detach().reshape(-1).float()
        if flat.numel() == 0:
            raise ValueError("SoftMask.calibrate needs at least one prediction, got an empty tensor")
        if not torch.isfinite(flat).all():
            raise ValueError("SoftMask.calibrate got non-finite predictions; check the predictor's training")
        if flat.numel() > QUANTILE_MAX_ELEMENTS:
            flat = flat[:: math.ceil(flat.numel() / QUANTILE_MAX_ELEMENTS)]
        levels = torch.quantile(flat, torch.tensor([quantile, median_quantile], device=flat.device))
        tau = float(levels[0])
        temperature = temperature_scale * (tau - float(levels[1]))
        if temperature < min_temperature:
            log.warning(
                "SoftMask calibration: predictions are (nearly) constant (q%g - q%g = %g); flooring T at %g",
                quantile,
                median_quantile,
                tau - float(levels[1]),
                min_temperature,
            )
            temperature = min_temperature
        self.tau.fill_(tau)
        self.temperature.fill_(temperature)
        self.calibrated.fill_(True)
        log.debug("SoftMask calibrated on %d predictions: tau=%g, T=%g", preds.numel(), tau, temperature)
        return tau, temperature

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"mapping={self.mapping!r}"


class FADeRModel(nn.Module):
    """Predictor + soft mask + attenuation (+ residual map): the stage-2 model around a frozen EAR model.

    :meth:`detect` runs the whole one-pass inference. The predictor sees the skips of ``I'`` before attenuation;
    only skips are changed, never the bottleneck. The encoder must be frozen by the caller (the predictor's input is
    not detached).

    Args:
        skip_channels: Channels of each skip tensor (``UNet.skip_channels``).
        patch_size: Patch side ``P`` in pixels.
        source: Predictor input, ``"skip_features"`` or ``"pixels"`` (see :func:`patch_features`).
        hidden: Hidden width of the predictor.
        activation: Predictor activation, ``"leaky_relu"``, ``"relu"`` or ``"gelu"``.
        levels: Skip levels to attenuate (``0`` = highest resolution).
        mapping: Soft-mask mapping, ``"calibrated"`` or ``"literal"``.
        enabled: When ``False``, :meth:`forward` returns the skips unchanged and :meth:`detect` equals the
            stage-1 model.
        in_channels: Channels of the obfuscated image (for ``source="pixels"``).
        use: ``"attenuate"``, ``"residual"`` or ``"both"`` (see the module docstring). Each use has its own
            output of the MLP (:attr:`heads`): the attenuation score is trained on ``fader.target``, the expected
            normal error on the stage-1 error of the clean image.
        attenuate_masked: Whether patches hidden by ``M`` may be attenuated.
        residual_region: Where the expected normal error is subtracted: ``"all"`` pixels, or only the
            ``"masked"`` ones (inpainted regions, whose normal error the predictor models; visible pixels keep their
            copy error).

    Raises:
        ConfigError: If a setting is invalid.
    """

    residual_fit: Tensor

    def __init__(
        self,
        skip_channels: Sequence[int],
        patch_size: int = 8,
        source: str = "skip_features",
        hidden: int = 128,
        activation: str = "leaky_relu",
        levels: Sequence[int] = (0, 1, 2),
        mapping: str = "calibrated",
        enabled: bool = True,
        in_channels: int = 3,
        use: str = "attenuate",
        attenuate_masked: bool = False,
        residual_region: str = "all",
    ) -> None:
        super().__init__()
        _check_choice(use, USES, "use")
        _check_choice(residual_region, RESIDUAL_REGIONS, "residual_region")
        if patch_size < 1:
            raise ConfigError(f"patch_size={patch_size} is invalid; use a positive integer such as 8")
        self.skip_channels = [int(c) for c in skip_channels]
        self.patch_size = patch_size
        self.source = source
        self.levels = _check_levels(levels, len(self.skip_channels))
        self.enabled = enabled
        # one output per use of the prediction: the attenuation score first, then the expected normal error
        self.heads = tuple(head for head in HEADS if use in (head, "both"))
        self.predictor = PatchErrorPredictor(
            feature_dim(source, self.skip_channels, patch_size, in_channels), hidden, activation, len(self.heads)
        )
        self.soft_masker = SoftMask(mapping)
        self.use = use
        self.attenuate_masked = attenuate_masked
        self.residual_region = residual_region
        # (slope, intercept) of the normal raw error as a function of the prediction (see fit_residual)
        self.register_buffer("residual_fit", torch.zeros(2))

    @property
    def attenuates(self) -> bool:
        """bool: Whether the skips are attenuated (``use`` is ``attenuate`` or ``both``)."""
        return self.enabled and self.use != "residual"

    @property
    def subtracts_residual(self) -> bool:
        """bool: Whether the expected normal error is subtracted from the map (``use`` is ``residual`` or ``both``)."""
        return self.enabled and self.use != "attenuate"

    def restrict(self, weights: Tensor, masks: Tensor) -> Tensor:
        """Keeps the skips of hidden patches when ``attenuate_masked`` is ``False``.

        Args:
            weights: Soft mask ``(B, 1, h, w)`` on the patch grid.
            masks: Binary masks ``(B, 1, H, W)``, ``1`` = hidden.

        Returns:
            ``1 - (1 - weights) * (1 - m)``, ``m`` being each patch's hidden fraction (``weights`` itself
            when hidden patches may be attenuated).
        """
        if self.attenuate_masked:
            return weights
        hidden = patch_mask_fraction(masks, self.patch_size).to(weights.dtype)
        return 1 - (1 - weights) * (1 - hidden)

    @torch.no_grad()
    def fit_residual(self, preds: Tensor, errors: Tensor) -> tuple[float, float]:
        """Least-squares line ``error ~ slope * pred + intercept`` on training normals (for ``use=residual``).

        Args:
            preds: Predicted patch errors, any shape.
            errors: Raw patch errors (``1 - MSGMS`` patch means) of the same shape.

        Returns:
            ``(slope, intercept)``, also kept in the ``residual_fit`` buffer.

        Raises:
            ValueError: If the shapes differ or there are fewer than two values.
        """
        if preds.shape != errors.shape or preds.numel() < 2:
            raise ValueError(
                f"fit_residual needs two tensors of one shape with >= 2 values, got {tuple(preds.shape)} "
                f"and {tuple(errors.shape)}"
            )
        x, y = preds.reshape(-1).double(), errors.reshape(-1).double()
        variance = (x - x.mean()).pow(2).mean()
        slope = ((x - x.mean()) * (y - y.mean())).mean() / variance if variance > 0 else x.new_zeros(())
        intercept = y.mean() - slope * x.mean()
        self.residual_fit.copy_(torch.stack([slope, intercept]).to(self.residual_fit))
        return float(slope), float(intercept)

    def expected_error(self, pred: Tensor, size: Sequence[int]) -> Tensor:
        """Raw error that normal content is expected to have, from the fitted line, at pixel resolution.

        Args:
            pred: Predicted patch errors ``(B, 1, h, w)``.
            size: Image size ``(H, W)``.

        Returns:
            ``(B, 1, H, W)`` offset for :func:`~fader_lightning.models.scoring.anomaly_map`.
        """
        line = self.residual_fit.to(pred.dtype)
        return F.interpolate(line[0] * pred + line[1], size=tuple(size), mode="nearest")

    def detect(self, ear: EARModel, images: Tensor, masks: Tensor) -> dict[str, Tensor]:
        """One-pass inference of EAR + FADeR: obfuscate, encode, predict, attenuate, decode, score.

        Args:
            ear: The frozen stage-1 model (single mask).
            images: Images ``(B, 3, H, W)`` in ``[0, 1]``.
            masks: Their masks ``(B, 1, H, W)``, ``1`` = hidden.

        Returns:
            ``recon``, ``anomaly_map`` ``(B, 1, H, W)``, ``score`` ``(B,)``, ``pred_error`` (the
            first head: the attenuation score, or the expected normal error for ``use=residual``) and ``soft`` (the
            weights applied, ``(B, 1, H / P, W / P)``; all ones when nothing is attenuated).
        """
        obfuscated = ear.obfuscation(images, masks)
        skips, bottleneck = ear.unet.encode(obfuscated)
        pred = self.predict(skips, obfuscated)
        first = pred[:, :1]  # slices with fixed bounds: the ONNX export needs static channel indices
        if self.attenuates:
            weights = self.restrict(self.soft_mask(first), masks)
            skips = attenuate(skips, weights, self.levels)
        else:
            weights = torch.ones_like(first)
        recon = ear.unet.decode(bottleneck, skips)
        offset = None
        if self.subtracts_residual:
            last = len(self.heads) - 1
            offset = self.expected_error(pred[:, last : last + 1], images.shape[-2:])
            offset = offset * masks if self.residual_region == "masked" else offset
        amap, score = ear.scorer(images, recon, offset)
        return {"recon": recon, "anomaly_map": amap, "score": score, "pred_error": first, "soft": weights}

    def predict(self, skips: Sequence[Tensor], obfuscated: Tensor) -> Tensor:
        """Predicts the error of every patch.

        Args:
            skips: Encoder skips of ``obfuscated``, before attenuation.
            obfuscated: Obfuscated images of shape ``(B, C, H, W)``.

        Returns:
            Predictions of shape ``(B, len(heads), H / P, W / P)``, one channel per head.

        Raises:
            ConfigError: If ``patch_size`` does not divide the image size.
        """
        return self.predictor(patch_features(skips, obfuscated, self.patch_size, self.source))

    def soft_mask(self, pred: Tensor) -> Tensor:
        """Soft mask of predicted patch errors (see :class:`SoftMask`).

        Args:
            pred: Predicted patch errors of shape ``(B, 1, h, w)``.

        Returns:
            Weights of the same shape in ``(0, 1]``.
        """
        return self.soft_masker(pred)

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"patch_size={self.patch_size}, source={self.source!r}, levels={self.levels}, enabled={self.enabled}, "
            f"use={self.use!r}, attenuate_masked={self.attenuate_masked}"
        )


def patch_mask_fraction(masks: Tensor, patch_size: int) -> Tensor:
    """Hidden fraction of every patch.

    Args:
        masks: Binary masks ``(B, 1, H, W)``, ``1`` = hidden.
        patch_size: Patch side ``P``; must divide ``H`` and ``W``.

    Returns:
        Fractions in ``[0, 1]`` of shape ``(B, 1, H / P, W / P)``.
    """
    return F.avg_pool2d(masks.float(), patch_size)


@torch.no_grad()
def gt_patch_targets(
    image: Tensor, recon: Tensor, patch_size: int, measure: str = "msgms", num_scales: int = 4
) -> Tensor:
    """Per-patch reconstruction error used as the predictor's ranking target (no gradient).

    Args:
        image: Images of shape ``(B, C, H, W)`` in ``[0, 1]``.
        recon: Reconstructions of the same shape.
        patch_size: Patch side ``P``; must divide ``H`` and ``W``.
        measure: ``"msgms"``: patch mean of the unsmoothed ``1 - MSGMS`` map
            (:func:`~fader_lightning.models.scoring.raw_anomaly_map`); ``"mse"``: patch mean of the squared
            error averaged over channels.
        num_scales: MSGMS scales (``"msgms"`` only).

    Returns:
        Targets of shape ``(B, 1, H / P, W / P)``.
    """
    _check_choice(measure, tuple(PATCH_ERRORS), "measure")
    return F.avg_pool2d(PATCH_ERRORS[measure](image, recon, num_scales), patch_size)


def ranking_loss_pairs(
    pred_i: Tensor, pred_j: Tensor, target_i: Tensor, target_j: Tensor, margin: float = 1.0
) -> Tensor:
    """Learning-Loss ranking loss of explicit pairs (Yoo & Kweon, 2019).

    ``L = max(0, -sign(t_i - t_j) * (p_i - p_j) + margin)`` averaged over the pairs with ``t_i != t_j``; targets
    carry no gradient.

    Args:
        pred_i: Predictions of the first members, shape ``(N,)``.
        pred_j: Predictions of the second members, shape ``(N,)``.
        target_i: Targets of the first members, shape ``(N,)``.
        target_j: Targets of the second members, shape ``(N,)``.
        margin: Margin ``xi``, non-negative.

    Returns:
        Scalar loss; a zero connected to the predictions' graph when no pair has distinct targets.
    """
    sign = torch.sign(target_i.detach() - target_j.detach())
    valid = (sign != 0).to(pred_i.dtype)
    losses = torch.clamp(-sign * (pred_i - pred_j) + margin, min=0)
    return (losses * valid).sum() / valid.sum().clamp(min=1)


def ranking_loss(pred: Tensor, target: Tensor, margin: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Ranking loss over random pairs of all patches of a batch.

    The patches are flattened and patch ``i`` is paired with patch ``perm[i]`` for a random permutation ``perm``
    (self-pairs dropped); see :func:`ranking_loss_pairs`.

    Args:
        pred: Predicted patch errors, e.g. ``(B, 1, h, w)``.
        target: Target patch errors of the same shape.
        margin: Margin ``xi``, non-negative.
        generator: Random generator of the pairing (for reproducibility).

    Returns:
        Scalar loss.

    Raises:
        ValueError: If ``pred`` and ``target`` differ in shape.
        ConfigError: If ``margin`` is negative.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"ranking_loss needs pred and target of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    flat_pred = pred.reshape(-1)
    flat_target = target.reshape(-1)
    count = flat_pred.numel()
    device = generator.device if generator is not None else flat_pred.device
    perm = torch.randperm(count, generator=generator, device=device).to(flat_pred.device)
    index = torch.arange(count, device=flat_pred.device)
    keep = perm != index
    first, second = index[keep], perm[keep]
    return ranking_loss_pairs(flat_pred[first], flat_pred[second], flat_target[first], flat_target[second], margin)

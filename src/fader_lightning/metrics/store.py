"""One compact, shared store of per-image scores, labels, anomaly maps and masks for every metric.

It is a ``torchmetrics.Metric`` whose states are concatenated lists: under DDP each rank stores the test images it
saw, and :meth:`AnomalyScoreStore.compute` gathers every rank's images before computing, so every rank returns the
metrics of the whole test set.
"""

import logging
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from fader_lightning.errors import ConfigError, DataError
from fader_lightning.keys import (
    AT_THRESHOLD,
    AUPRO,
    IMAGE_AUROC,
    IMAGE_F1MAX_ORACLE,
    IMAGE_THRESHOLD_ORACLE,
    PIXEL_AUROC,
    PIXEL_F1MAX_ORACLE,
    PIXEL_THRESHOLD_ORACLE,
)
from fader_lightning.metrics.functional import (
    aupro,
    f1_max,
    image_auroc,
    image_operating_point,
    pixel_auroc,
    pixel_operating_point,
)
from fader_lightning.metrics.sync import gather_on_cpu, state_batches

log = logging.getLogger(__name__)

_MODES = ("exact", "binned")
_MAP_DTYPES = {"float16": torch.float16, "float32": torch.float32}
_MAX_BINS = 65536


class AnomalyScoreStore(Metric):
    """Accumulates evaluation outputs on the CPU and computes all anomaly-detection metrics from them.

    Maps are stored once, compactly, and every metric reads the same copy:

    * ``mode="exact"``: maps are kept as ``map_dtype`` (float16 by default, half the memory of float32; float16
      keeps about three significant digits and overflows above 65504, which ``update`` rejects).
    * ``mode="binned"``: maps are quantised into ``num_bins`` equal bins between the bounds ``map_range`` and kept
      as uint8 (``num_bins <= 256``) or uint16. This trades exactness for memory: scores in one bin become ties
      and scores outside ``map_range`` are clipped to its ends (a warning says how many), so pixel metrics are
      approximations whose quality depends on how well ``map_range`` fits the scores.

    Masks are kept as bool, image scores as float32 and image labels as bool. The states stay on the CPU whatever
    the module's device, and are gathered from every rank before :meth:`compute` (see
    :func:`~fader_lightning.metrics.sync.gather_on_cpu`); they are never saved in checkpoints.

    Args:
        mode: ``"exact"`` or ``"binned"``.
        map_dtype: Storage dtype of maps in exact mode, ``"float16"`` or ``"float32"``.
        map_range: ``(low, high)`` score bounds of the bins; required in binned mode,
            unused in exact mode.
        num_bins: Number of quantisation bins in binned mode, 2 to 65536.
        fpr_limit: FPR integration limit of AUPRO.

    Raises:
        ConfigError: If an argument is unknown or out of range.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True
    scores: list[Tensor]
    labels: list[Tensor]
    maps: list[Tensor]
    masks: list[Tensor]

    def __init__(
        self,
        mode: str = "exact",
        map_dtype: str = "float16",
        map_range: tuple[float, float] | None = None,
        num_bins: int = 256,
        fpr_limit: float = 0.3,
    ) -> None:
        super().__init__(dist_sync_fn=gather_on_cpu)
        if mode not in _MODES:
            raise ConfigError(f"AnomalyScoreStore mode={mode!r} is unknown; valid values: {', '.join(_MODES)}.")
        if map_dtype not in _MAP_DTYPES:
            raise ConfigError(
                f"AnomalyScoreStore map_dtype={map_dtype!r} is unknown; valid values: {', '.join(_MAP_DTYPES)}."
            )
        self.mode = mode
        self.map_dtype = map_dtype
        self.num_bins = num_bins
        self.map_range = map_range
        if mode == "binned":
            if map_range is None or len(map_range) != 2 or not float(map_range[0]) < float(map_range[1]):
                raise ConfigError(
                    f"AnomalyScoreStore map_range={map_range!r} is invalid; binned mode needs (low, high), low < high."
                )
            if not 2 <= num_bins <= _MAX_BINS:
                raise ConfigError(
                    f"AnomalyScoreStore num_bins={num_bins} is out of range; valid values: 2 to {_MAX_BINS}."
                )
            self.map_range = (float(map_range[0]), float(map_range[1]))
        self.fpr_limit = fpr_limit
        self._storage_dtype = (
            _MAP_DTYPES[map_dtype] if mode == "exact" else torch.uint8 if num_bins <= 256 else torch.uint16
        )
        for name in ("scores", "labels", "maps", "masks"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._has_maps: bool | None = None
        self._clip_warned = False

    def reset(self) -> None:
        """Drop everything stored so far."""
        super().reset()
        self._has_maps = None
        self._clip_warned = False

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "AnomalyScoreStore":
        """Moving the module moves nothing: the stored batches stay on the CPU."""
        return self

    def __len__(self) -> int:
        return sum(chunk.numel() for chunk in state_batches(self.scores))

    @property
    def nbytes(self) -> int:
        """int: Bytes held by the stored scores, labels, maps and masks."""
        states = (self.scores, self.labels, self.maps, self.masks)
        return sum(chunk.numel() * chunk.element_size() for state in states for chunk in state_batches(state))

    def update(self, scores: Tensor, labels: Tensor, maps: Tensor | None = None, masks: Tensor | None = None) -> None:
        """Add one batch.

        Args:
            scores: Image anomaly scores, shape ``[B]``.
            labels: Image labels, shape ``[B]``; nonzero/True means anomalous.
            maps: Anomaly maps ``[B, H, W]`` or ``[B, 1, H, W]``, or None for image metrics only.
            masks: Ground-truth masks shaped like ``maps`` (nonzero/True means anomalous); given
                exactly when ``maps`` is.

        Raises:
            DataError: If shapes disagree, maps and masks are not given together, some batches have maps and
                others not, or a map value overflows float16 storage.
        """
        scores, labels = scores.detach().reshape(-1), labels.detach().reshape(-1)
        if scores.numel() != labels.numel():
            raise DataError(f"AnomalyScoreStore.update: {scores.numel()} scores but {labels.numel()} labels.")
        if (maps is None) != (masks is None):
            raise DataError("AnomalyScoreStore.update: maps and masks must be given together (both or neither).")
        has_maps = maps is not None
        if self._has_maps is not None and has_maps != self._has_maps:
            raise DataError("AnomalyScoreStore.update: every batch must have maps and masks, or none may.")
        if maps is not None and masks is not None:
            maps, masks = self._check_maps(maps, masks, batch_size=scores.numel())
            self.maps.append(self._encode(maps))
            self.masks.append((masks if masks.dtype == torch.bool else masks > 0.5).cpu())
        self._has_maps = has_maps
        self.scores.append(scores.to(device="cpu", dtype=torch.float32))
        self.labels.append((labels if labels.dtype == torch.bool else labels != 0).cpu())

    def compute(self, image_threshold: float | None = None, pixel_threshold: float | None = None) -> dict[str, float]:
        """Compute every metric over all stored batches (of every rank, under DDP).

        Pixel metrics share one float32 copy of the maps, converted once and computed one after another.

        Args:
            image_threshold: The calibrated image threshold (chosen on normal images); ``None`` leaves out the image
                metrics at it.
            pixel_threshold: The calibrated pixel threshold; ``None`` leaves out the pixel metrics at it.

        Returns:
            ``image_auroc``, ``image_f1max_oracle``, ``image_threshold_oracle`` and, when maps
            were stored, ``pixel_auroc``, ``aupro``, ``pixel_f1max_oracle`` and ``pixel_threshold_oracle``. The
            F1-max values and their thresholds are ORACLE numbers (picked on the test labels; never deploy
            them). With thresholds, the deployable figures at them: ``image_{fpr,tpr,precision,f1,
            balanced_accuracy}_at_threshold`` and ``{pixel_fpr,pixel_tpr,pro}_at_threshold`` (see
            :data:`~fader_lightning.keys.IMAGE_OPERATING_POINT`). Undefined metrics (one class only) are NaN.

        Raises:
            DataError: If nothing was stored.
        """
        if not state_batches(self.scores):
            raise DataError("AnomalyScoreStore.compute: no samples were stored; call update() first.")
        scores, labels = dim_zero_cat(self.scores), dim_zero_cat(self.labels)
        image_f1, oracle_threshold = f1_max(scores, labels)
        results = {
            IMAGE_AUROC: image_auroc(scores, labels),
            IMAGE_F1MAX_ORACLE: image_f1,
            IMAGE_THRESHOLD_ORACLE: oracle_threshold,
        }
        if image_threshold is not None:
            point = image_operating_point(scores, labels, image_threshold)
            results.update({f"image_{name}{AT_THRESHOLD}": value for name, value in point.items()})
        if state_batches(self.maps):
            maps, masks = self._decoded_maps(), dim_zero_cat(self.masks)
            results[PIXEL_AUROC] = pixel_auroc(maps, masks)
            results[AUPRO] = aupro(maps, masks, fpr_limit=self.fpr_limit)
            results[PIXEL_F1MAX_ORACLE], results[PIXEL_THRESHOLD_ORACLE] = f1_max(maps, masks)
            if pixel_threshold is not None:
                point = pixel_operating_point(maps, masks, pixel_threshold)
                results.update({
                    f"pixel_fpr{AT_THRESHOLD}": point["fpr"],
                    f"pixel_tpr{AT_THRESHOLD}": point["tpr"],
                    f"pro{AT_THRESHOLD}": point["pro"],
                })  # fmt: skip
        return results

    def _check_maps(self, maps: Tensor, masks: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
        """Squeeze a channel dimension of 1 and check shapes against the batch and earlier batches."""
        maps, masks = _squeeze_channel(maps.detach(), "maps"), _squeeze_channel(masks.detach(), "masks")
        if maps.shape != masks.shape:
            raise DataError(
                f"AnomalyScoreStore.update: maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ."
            )
        if maps.shape[0] != batch_size:
            raise DataError(f"AnomalyScoreStore.update: {maps.shape[0]} maps for {batch_size} scores.")
        if self.maps and maps.shape[1:] != self.maps[0].shape[1:]:
            raise DataError(
                f"AnomalyScoreStore.update: map size {tuple(maps.shape[1:])} differs from the earlier "
                f"{tuple(self.maps[0].shape[1:])}; resize maps to one size before storing."
            )
        return maps, masks

    def _encode(self, maps: Tensor) -> Tensor:
        """Convert maps to the compact storage dtype (on their device, then move them to the CPU)."""
        if self.mode == "exact":
            if self._storage_dtype == torch.float16 and bool(maps.abs().max() > torch.finfo(torch.float16).max):
                raise DataError(
                    "AnomalyScoreStore.update: map values exceed the float16 range; use map_dtype='float32' "
                    "or mode='binned'."
                )
            return maps.to(self._storage_dtype).cpu()
        low, high = self.map_range
        outside = int(((maps < low) | (maps > high)).sum())
        if outside and not self._clip_warned:
            log.warning(
                "AnomalyScoreStore: %d map values fall outside map_range=(%g, %g) and are clipped; "
                "binned pixel metrics lose accuracy (widen map_range).",
                outside,
                low,
                high,
            )
            self._clip_warned = True
        scale = (self.num_bins - 1) / (high - low)
        bins = ((maps.to(torch.float32) - low) * scale).round_().clamp_(0, self.num_bins - 1)
        return bins.to(self._storage_dtype).cpu()

    def _decoded_maps(self) -> Tensor:
        """All maps as one float32 tensor, filled chunk by chunk so that no second full copy exists."""
        chunks = state_batches(self.maps)
        total = sum(chunk.shape[0] for chunk in chunks)
        out = torch.empty((total, *chunks[0].shape[1:]), dtype=torch.float32)
        start = 0
        for chunk in chunks:
            view = out[start : start + chunk.shape[0]]
            view.copy_(chunk)
            if self.mode == "binned":
                low, high = self.map_range
                view.mul_((high - low) / (self.num_bins - 1)).add_(low)
            start += chunk.shape[0]
        return out


def _squeeze_channel(tensor: Tensor, name: str) -> Tensor:
    """Return ``[B, H, W]`` from ``[B, H, W]`` or ``[B, 1, H, W]``."""
    if tensor.dim() == 4 and tensor.shape[1] == 1:
        return tensor[:, 0]
    if tensor.dim() != 3:
        raise DataError(
            f"AnomalyScoreStore.update: {name} must be [B, H, W] or [B, 1, H, W], got {tuple(tensor.shape)}."
        )
    return tensor

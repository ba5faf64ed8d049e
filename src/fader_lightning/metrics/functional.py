"""Anomaly-detection metrics on raw scores: image/pixel AUROC, AUPRO, oracle F1-max, and the error rates at a threshold.

All functions take CPU tensors of raw anomaly scores (any real range; higher means more anomalous) together with
binary ground truth, and return plain Python floats. When the ground truth holds a single class the metric is
undefined: the functions log a warning and return NaN instead of raising, so one odd evaluation split does not
abort a run.
"""

import logging
import math

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc

from fader_lightning.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_EIGHT_CONNECTIVITY = np.ones((3, 3), dtype=bool)


def image_auroc(scores: Tensor, labels: Tensor) -> float:
    """Image-level area under the ROC curve.

    Args:
        scores: Anomaly score per image, shape ``[N]``.
        labels: Ground truth per image, shape ``[N]``; nonzero/True means anomalous.

    Returns:
        AUROC in ``[0, 1]``, or NaN (with a warning) when only one class is present.

    Raises:
        DataError: If shapes differ or a score is not finite.
    """
    return _auroc(scores, labels, name="image AUROC")


def pixel_auroc(maps: Tensor, masks: Tensor) -> float:
    """Pixel-level area under the ROC curve over all pixels of all images pooled together.

    Args:
        maps: Anomaly maps, any shape (e.g. ``[N, H, W]``); float16 input is computed in float32.
        masks: Ground-truth masks of the same shape; nonzero/True means anomalous.

    Returns:
        AUROC in ``[0, 1]``, or NaN (with a warning) when only one class is present.

    Raises:
        DataError: If shapes differ or a map value is not finite.
    """
    return _auroc(maps, masks, name="pixel AUROC")


def aupro(maps: Tensor, masks: Tensor, fpr_limit: float = 0.3, num_thresholds: int | None = None) -> float:
    """Normalised area under the per-region-overlap (PRO) curve, as in MVTec AD (Bergmann et al.).

    Each 8-connected component of a ground-truth mask is one region. For a threshold ``t`` (a pixel is predicted
    anomalous when its score is ``>= t``), PRO is the mean over all regions of all images of the fraction of the
    region's pixels predicted anomalous, and FPR is the fraction of all normal pixels (mask == 0, pooled over all
    images) predicted anomalous. The curve starts at (0, 0) (threshold above every score) and joins its points
    linearly; its area over FPR in ``[0, fpr_limit]`` (interpolated exactly at ``fpr_limit``) is divided by
    ``fpr_limit``, so the result lies in ``[0, 1]``.

    The computation sorts all pixels once and accumulates per-region overlaps with cumulative sums, so with
    ``num_thresholds=None`` every distinct score is a threshold and the result is exact.

    Args:
        maps: Anomaly maps, shape ``[N, H, W]``.
        masks: Ground-truth masks, shape ``[N, H, W]``; nonzero/True means anomalous.
        fpr_limit: Upper FPR integration limit, in ``(0, 1]``.
        num_thresholds: None for the exact curve over all distinct scores; otherwise the number of
            thresholds evenly spaced between the highest and the lowest score (at least 2).

    Returns:
        AUPRO in ``[0, 1]``, or NaN (with a warning) when there is no anomalous region or no normal pixel.

    Raises:
        ConfigError: If ``fpr_limit`` or ``num_thresholds`` is out of range.
        DataError: If shapes differ, maps are not 3-D or a map value is not finite.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ConfigError(f"aupro fpr_limit={fpr_limit} is out of range; valid values lie in (0, 1].")
    if num_thresholds is not None and num_thresholds < 2:
        raise ConfigError(f"aupro num_thresholds={num_thresholds} is invalid; use None (exact) or an integer >= 2.")
    if maps.dim() != 3:
        raise DataError(f"aupro expects maps of shape [N, H, W], got {tuple(maps.shape)}.")
    scores = _as_numpy_scores(maps, masks, name="AUPRO")
    mask_np = _as_bool(masks).numpy()

    region_ids, num_regions = _label_regions(mask_np)
    num_normal = int(mask_np.size - np.count_nonzero(mask_np))
    if num_regions == 0 or num_normal == 0:
        log.warning(
            "AUPRO is undefined (%d anomalous regions, %d normal pixels); returning NaN.", num_regions, num_normal
        )
        return math.nan

    # Weight of an anomalous pixel = 1 / size of its region, so the cumulative weight over the pixels above a
    # threshold, divided by its total (the number of regions), is the mean per-region overlap.
    region_sizes = np.bincount(region_ids, minlength=num_regions + 1).astype(np.float64)
    inverse_sizes = np.zeros_like(region_sizes)
    inverse_sizes[1:] = 1.0 / region_sizes[1:]
    order, sorted_scores = _sort_descending(scores)
    pro = inverse_sizes[region_ids[order]]
    np.cumsum(pro, out=pro)
    pro /= pro[-1]
    fpr = np.cumsum(~mask_np.reshape(-1)[order], dtype=np.int64) / num_normal

    cut = _cut_points(sorted_scores, num_thresholds)
    fpr_curve = np.concatenate(([0.0], fpr[cut]))
    pro_curve = np.concatenate(([0.0], pro[cut]))
    return _truncated_area(fpr_curve, pro_curve, fpr_limit) / fpr_limit


def f1_max(scores: Tensor, labels: Tensor) -> tuple[float, float]:
    """ORACLE best F1 score over all thresholds, and the threshold reaching it.

    The threshold is chosen on the evaluated labels themselves, so this is an optimistic upper bound for
    comparing methods, never a deployable operating point. A sample is predicted anomalous when its score is
    ``>= threshold``; every distinct score is tried (exact, one sort).

    Args:
        scores: Anomaly scores, any shape (images ``[N]`` or pixel maps ``[N, H, W]``).
        labels: Ground truth of the same shape; nonzero/True means anomalous.

    Returns:
        ``(best_f1, threshold)``; both NaN (with a warning) when only one class is present.

    Raises:
        DataError: If shapes differ or a score is not finite.
    """
    score_np = _as_numpy_scores(scores, labels, name="F1-max")
    label_np = _as_bool(labels).numpy().reshape(-1)
    num_positive = int(np.count_nonzero(label_np))
    if num_positive in (0, label_np.size):
        log.warning("F1-max is undefined: only one class among %d samples; returning NaN.", label_np.size)
        return math.nan, math.nan
    order, sorted_scores = _sort_descending(score_np)
    cut = _cut_points(sorted_scores, None)
    true_positives = np.cumsum(label_np[order], dtype=np.int64)[cut]
    # F1 = 2 TP / (predicted positives + actual positives); predicted positives at cut index i is i + 1.
    f1 = 2.0 * true_positives / (cut + 1 + num_positive)
    best = int(np.argmax(f1))
    return float(f1[best]), float(sorted_scores[cut[best]])


def image_operating_point(scores: Tensor, labels: Tensor, threshold: float) -> dict[str, float]:
    """Error rates of the deployed decision ``score > threshold`` on images.

    Unlike :func:`f1_max`, the threshold is given (calibrated on normal images), so these are the figures a user
    meets in production.

    Args:
        scores: Image anomaly scores, shape ``[N]``.
        labels: Ground truth per image, shape ``[N]``; nonzero/True means anomalous.
        threshold: The decision threshold; an image is flagged when its score exceeds it.

    Returns:
        ``fpr`` (flagged normal images / normal images), ``tpr`` (flagged anomalous / anomalous), ``precision``,
        ``f1`` and ``balanced_accuracy`` (mean of TPR and 1 - FPR). A rate without images to count is NaN, and so
        is precision when nothing is flagged.

    Raises:
        DataError: If shapes differ or a score is not finite.
    """
    flagged = _as_numpy_scores(scores, labels, name="image operating point") > threshold
    anomalous = _as_bool(labels).numpy().reshape(-1)
    true_pos = int(np.count_nonzero(flagged & anomalous))
    false_pos = int(np.count_nonzero(flagged & ~anomalous))
    positives = int(np.count_nonzero(anomalous))
    negatives = anomalous.size - positives
    tpr, fpr = _ratio(true_pos, positives), _ratio(false_pos, negatives)
    return {
        "fpr": fpr,
        "tpr": tpr,
        "precision": _ratio(true_pos, true_pos + false_pos),
        "f1": _ratio(2 * true_pos, true_pos + false_pos + positives),
        "balanced_accuracy": (tpr + 1.0 - fpr) / 2.0,
    }


def pixel_operating_point(maps: Tensor, masks: Tensor, threshold: float) -> dict[str, float]:
    """Error rates of the deployed pixel decision ``map > threshold``, and the per-region overlap there.

    Args:
        maps: Anomaly maps, shape ``[N, H, W]``.
        masks: Ground-truth masks of the same shape; nonzero/True means anomalous.
        threshold: The pixel threshold.

    Returns:
        ``fpr`` and ``tpr`` over all pixels pooled, and ``pro``: the mean over every 8-connected defect region of
        the fraction of its pixels flagged (the PRO curve of :func:`aupro` read at this threshold). NaN where there
        is nothing to count.

    Raises:
        DataError: If shapes differ, maps are not 3-D or a value is not finite.
    """
    if maps.dim() != 3:
        raise DataError(f"pixel operating point expects maps of shape [N, H, W], got {tuple(maps.shape)}.")
    flagged = _as_numpy_scores(maps, masks, name="pixel operating point") > threshold
    defect = _as_bool(masks).numpy().reshape(-1)
    region_ids, num_regions = _label_regions(defect.reshape(maps.shape))
    positives = int(np.count_nonzero(defect))
    overlap = np.bincount(region_ids[flagged], minlength=num_regions + 1)[1:]
    sizes = np.bincount(region_ids, minlength=num_regions + 1)[1:]
    return {
        "fpr": _ratio(int(np.count_nonzero(flagged & ~defect)), defect.size - positives),
        "tpr": _ratio(int(np.count_nonzero(flagged & defect)), positives),
        "pro": float(np.mean(overlap / sizes)) if num_regions else math.nan,
    }


def _ratio(count: int, total: int) -> float:
    """``count / total``, NaN when there is nothing to count."""
    return count / total if total else math.nan


def _auroc(preds: Tensor, labels: Tensor, name: str) -> float:
    """Exact binary AUROC through torchmetrics, robust to raw (non-probability) scores."""
    _check_inputs(preds, labels, name)
    target = _as_bool(labels).reshape(-1)
    num_positive = int(target.sum())
    if num_positive in (0, target.numel()):
        log.warning("%s is undefined: only one class among %d samples; returning NaN.", name, target.numel())
        return math.nan
    # torchmetrics applies a sigmoid to inputs outside [0, 1], which saturates large raw scores into ties;
    # mapping them into [0, 1] first keeps the ranking intact.
    unit = _to_unit_interval(_as_float(preds).detach().cpu().reshape(-1))
    # the trapezoid sum of a float32 ROC curve can land an ulp above 1
    return min(max(float(binary_auroc(unit, target, thresholds=None, validate_args=False)), 0.0), 1.0)


def _to_unit_interval(values: Tensor) -> Tensor:
    """Map values strictly monotonically into [0, 1] (no copy when they already lie there).

    Float32 values are rescaled affinely in float64, whose extra precision keeps distinct values distinct. Float64
    values a few ulps apart could round together that way, so they are replaced by their dense ranks instead.
    """
    low, high = values.min(), values.max()
    if low >= 0 and high <= 1:
        return values
    if low == high:
        return torch.zeros_like(values)
    if values.dtype == torch.float64:
        unique, ranks = torch.unique(values, sorted=True, return_inverse=True)
        return ranks.to(torch.float64).div_(max(unique.numel() - 1, 1))
    low, high = low.double(), high.double()
    return (values.double() - low).div_(high - low).clamp_(0.0, 1.0)


def _check_inputs(scores: Tensor, labels: Tensor, name: str) -> None:
    """Raise DataError when shapes differ or scores hold NaN/inf."""
    if scores.shape != labels.shape:
        raise DataError(f"{name}: scores shape {tuple(scores.shape)} differs from labels shape {tuple(labels.shape)}.")
    if scores.numel() == 0:
        raise DataError(f"{name}: no samples to evaluate.")
    if not bool(torch.isfinite(scores).all()):
        raise DataError(f"{name}: scores contain NaN or inf values; check the model outputs.")


def _as_numpy_scores(scores: Tensor, labels: Tensor, name: str) -> np.ndarray:
    """Validate and return scores as a flat float32/float64 numpy array (a view when possible)."""
    _check_inputs(scores, labels, name)
    return _as_float(scores).detach().cpu().reshape(-1).numpy()


def _as_float(scores: Tensor) -> Tensor:
    """Scores as float32 or float64 without losing precision (float16/bfloat16 widen, integers go to float64)."""
    if scores.dtype in (torch.float32, torch.float64):
        return scores
    return scores.to(torch.float32 if scores.is_floating_point() else torch.float64)


def _as_bool(labels: Tensor) -> Tensor:
    """Binary ground truth as a CPU bool tensor (nonzero means anomalous)."""
    labels = labels.detach().cpu()
    return labels if labels.dtype == torch.bool else labels != 0


def _label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat global region id per pixel (0 = normal, 1..R = 8-connected regions over all images) and R."""
    region_ids = np.zeros(masks.shape, dtype=np.int32)
    num_regions = 0
    for index, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTIVITY, output=np.int32)
        region_ids[index] = np.where(labels > 0, labels + num_regions, 0)
        num_regions += count
    return region_ids.reshape(-1), num_regions


def _sort_descending(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permutation sorting scores from highest to lowest, and the sorted scores."""
    order = np.argsort(scores)[::-1]
    return order, scores[order]


def _cut_points(sorted_scores: np.ndarray, num_thresholds: int | None) -> np.ndarray:
    """Indices of the last sample at or above each threshold, for scores sorted descending.

    With ``num_thresholds=None`` the thresholds are all distinct scores (the last index of each run of ties);
    otherwise they are evenly spaced from the highest to the lowest score.
    """
    if num_thresholds is None:
        is_last = np.ones(sorted_scores.size, dtype=bool)
        is_last[:-1] = sorted_scores[1:] != sorted_scores[:-1]
        return np.flatnonzero(is_last)
    thresholds = np.linspace(sorted_scores[0], sorted_scores[-1], num_thresholds)
    ascending = sorted_scores[::-1]
    counts = sorted_scores.size - np.searchsorted(ascending, thresholds, side="left")
    return counts - 1


def _truncated_area(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Trapezoid area under a curve with non-decreasing ``fpr`` (reaching 1), over ``[0, fpr_limit]``."""
    stop = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:stop], pro[:stop]
    if x[-1] < fpr_limit:
        x0, x1, y0, y1 = fpr[stop - 1], fpr[stop], pro[stop - 1], pro[stop]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1])) / 2.0)

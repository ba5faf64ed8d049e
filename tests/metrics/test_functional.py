import logging
import math

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from fader_lightning.errors import ConfigError, DataError
from fader_lightning.metrics import (
    aupro,
    f1_max,
    image_auroc,
    image_operating_point,
    pixel_auroc,
    pixel_operating_point,
)

EIGHT = np.ones((3, 3), dtype=bool)


def reference_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney U with average ranks for ties."""
    scores, labels = scores.ravel().astype(np.float64), labels.ravel().astype(bool)
    ranks = stats.rankdata(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def reference_aupro(maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Straightforward PRO curve: loop over thresholds, per-region overlap via ndimage.label."""
    regions = []
    for i, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=EIGHT)
        regions.extend((i, labelled == k) for k in range(1, count + 1))
    normal = ~masks
    fprs, pros = [0.0], [0.0]
    for t in thresholds:
        pred = maps >= t
        fprs.append((pred & normal).sum() / normal.sum())
        overlaps = [(pred[i] & region).sum() / region.sum() for i, region in regions]
        pros.append(float(np.mean(overlaps)))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= fpr_limit
    x, y = fprs[keep], pros[keep]
    if x[-1] < fpr_limit:
        nxt = np.argmax(fprs > fpr_limit)
        y_lim = pros[nxt - 1] + (pros[nxt] - pros[nxt - 1]) * (fpr_limit - fprs[nxt - 1]) / (fprs[nxt] - fprs[nxt - 1])
        x, y = np.append(x, fpr_limit), np.append(y, y_lim)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / fpr_limit)


def blob_data(seed: int, n: int = 4, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Noisy maps with a few rectangular blobs of different sizes, partly detected."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        for _ in range(rng.integers(0, 3)):
            h, w = rng.integers(1, 7, size=2)
            r, c = rng.integers(0, size - h), rng.integers(0, size - w)
            masks[i, r : r + h, c : c + w] = True
    masks[0, 2:5, 2:5] = True  # at least one region
    maps = rng.random((n, size, size)).astype(np.float32) + masks * rng.uniform(0.0, 0.8, size=(n, 1, 1))
    return maps.astype(np.float32), masks


def brute_force_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    best, best_t = -1.0, math.nan
    for t in np.unique(scores)[::-1]:
        pred = scores >= t
        tp = (pred & labels).sum()
        f1 = 2 * tp / (pred.sum() + labels.sum())
        if f1 > best:
            best, best_t = f1, t
    return float(best), float(best_t)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_auroc_matches_mann_whitney_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    labels = rng.random(200) < 0.3
    scores[labels] += 0.5
    got = image_auroc(torch.from_numpy(scores), torch.from_numpy(labels))
    assert got == pytest.approx(reference_auroc(scores, labels), abs=1e-6)


def test_image_auroc_is_not_saturated_by_large_raw_scores():
    # A sigmoid on scores around 100 would make every score 1.0 in float32 and the AUROC 0.5.
    rng = np.random.default_rng(3)
    labels = rng.random(100) < 0.5
    scores = (100.0 + rng.normal(size=100) + labels).astype(np.float32)
    got = image_auroc(torch.from_numpy(scores), torch.from_numpy(labels.astype(np.int64)))
    assert got == pytest.approx(reference_auroc(scores, labels), abs=1e-6)
    assert got > 0.6


def test_pixel_auroc_matches_mann_whitney():
    maps, masks = blob_data(4)
    maps = np.round(maps * 20) + 3  # ties and values outside [0, 1]
    got = pixel_auroc(torch.from_numpy(maps).half(), torch.from_numpy(masks))
    assert got == pytest.approx(reference_auroc(maps, masks), abs=1e-6)


def test_one_class_gives_nan_with_warning(caplog):
    scores = torch.rand(10)
    with caplog.at_level(logging.WARNING):
        assert math.isnan(image_auroc(scores, torch.zeros(10)))
        assert math.isnan(pixel_auroc(torch.rand(2, 4, 4), torch.ones(2, 4, 4, dtype=torch.bool)))
        assert math.isnan(aupro(torch.rand(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool)))
        assert all(math.isnan(v) for v in f1_max(scores, torch.ones(10)))
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 4


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_aupro_exact_matches_fine_grid_reference(seed):
    maps, masks = blob_data(seed)
    thresholds = np.linspace(maps.max(), maps.min(), 3000)
    expected = reference_aupro(maps, masks, thresholds)
    got = aupro(torch.from_numpy(maps), torch.from_numpy(masks))
    assert got == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("seed", [5, 6])
def test_aupro_grid_matches_reference_on_same_thresholds(seed):
    maps, masks = blob_data(seed)
    thresholds = np.linspace(maps.max(), maps.min(), 50)
    expected = reference_aupro(maps, masks, thresholds, fpr_limit=0.2)
    got = aupro(torch.from_numpy(maps), torch.from_numpy(masks), fpr_limit=0.2, num_thresholds=50)
    assert got == pytest.approx(expected, abs=1e-9)


def test_aupro_uses_eight_connectivity():
    # Diagonal neighbours form one region of 3 pixels; the top-scoring pixel covers a third of it.
    masks = np.zeros((1, 5, 5), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = True
    maps = np.full((1, 5, 5), 0.5, dtype=np.float32)
    maps[0, 0, 0] = 1.0
    maps[0, 1, 1] = maps[0, 1, 2] = 0.0
    assert aupro(torch.from_numpy(maps), torch.from_numpy(masks)) == pytest.approx(1 / 3, abs=1e-12)


def test_aupro_perfect_and_inverted_maps():
    _, masks = blob_data(7)
    mask_t = torch.from_numpy(masks)
    assert aupro(mask_t.float(), mask_t) == 1.0
    assert aupro(mask_t.float() * 7 - 3, mask_t, fpr_limit=0.05) == 1.0
    assert aupro(1.0 - mask_t.float(), mask_t) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_aupro_in_unit_interval_and_chance_level_on_noise(seed):
    rng = np.random.default_rng(seed)
    masks = torch.from_numpy(rng.random((6, 32, 32)) < 0.05)
    maps = torch.from_numpy(rng.random((6, 32, 32)))
    value = aupro(maps, masks)
    assert 0.0 <= value <= 1.0
    # Pure noise: PRO ~ FPR, so the normalised area over [0, 0.3] is ~0.15.
    assert value == pytest.approx(0.15, abs=0.03)


def test_aupro_rejects_bad_arguments():
    maps, masks = torch.rand(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool)
    with pytest.raises(ConfigError, match="fpr_limit"):
        aupro(maps, masks, fpr_limit=0.0)
    with pytest.raises(ConfigError, match="num_thresholds"):
        aupro(maps, masks, num_thresholds=1)
    with pytest.raises(DataError):
        aupro(maps[0], masks[0])
    with pytest.raises(DataError, match="NaN"):
        aupro(torch.full((1, 4, 4), math.nan), masks)


def test_f1_max_hand_example():
    scores, labels = torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 0, 1, 0])
    best, threshold = f1_max(scores, labels)
    assert best == pytest.approx(0.8)
    assert threshold == pytest.approx(0.3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_max_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.2
    scores = np.round(rng.normal(size=300) + labels, 1).astype(np.float32)
    best, threshold = f1_max(torch.from_numpy(scores), torch.from_numpy(labels))
    ref_best, ref_threshold = brute_force_f1(scores, labels)
    assert best == pytest.approx(ref_best, abs=1e-12)
    assert threshold == ref_threshold


def test_shape_mismatch_raises():
    with pytest.raises(DataError, match="shape"):
        image_auroc(torch.rand(3), torch.ones(4))


def test_perfectly_separated_scores_give_auroc_at_most_one():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        scores = torch.rand(37, generator=generator)
        labels = (scores > 0.5).long()
        if labels.min() == labels.max():
            continue
        assert 0.0 <= image_auroc(scores, labels) <= 1.0
        assert image_auroc(scores, labels) == pytest.approx(1.0)


def test_image_operating_point_matches_a_count_by_hand() -> None:
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=200), rng.random(200) < 0.3
    scores[labels] += 1.0
    threshold = 0.8
    got = image_operating_point(torch.from_numpy(scores), torch.from_numpy(labels), threshold)
    tp = sum(1 for s, y in zip(scores, labels, strict=True) if y and s > threshold)
    fp = sum(1 for s, y in zip(scores, labels, strict=True) if not y and s > threshold)
    fn = sum(1 for s, y in zip(scores, labels, strict=True) if y and s <= threshold)
    tn = sum(1 for s, y in zip(scores, labels, strict=True) if not y and s <= threshold)
    expected = {
        "fpr": fp / (fp + tn),
        "tpr": tp / (tp + fn),
        "precision": tp / (tp + fp),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "balanced_accuracy": (tp / (tp + fn) + tn / (tn + fp)) / 2,
    }
    assert got == pytest.approx(expected)


def test_image_operating_point_at_the_extremes() -> None:
    scores, labels = torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0, 0, 1])
    above_all = image_operating_point(scores, labels, 1.0)  # nothing flagged: precision undefined, F1 0
    assert above_all["fpr"] == 0 and above_all["tpr"] == 0 and math.isnan(above_all["precision"])
    assert above_all["f1"] == 0 and above_all["balanced_accuracy"] == 0.5
    assert image_operating_point(scores, labels, 0.2) == {"fpr": 0.0, "tpr": 1.0, "precision": 1.0, "f1": 1.0,
                                                          "balanced_accuracy": 1.0}  # fmt: skip
    normals_only = image_operating_point(scores[:2], labels[:2], 0.15)
    assert normals_only["fpr"] == 0.5 and math.isnan(normals_only["tpr"])


def test_pixel_operating_point_matches_a_count_by_hand() -> None:
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True  # region A: 4 px
    masks[0, 5:7, 5:8] = True  # region B: 6 px
    masks[1, 0:2, 6:8] = True  # region C: 4 px
    maps = torch.zeros(2, 8, 8)
    maps[0, 1:3, 1:3] = 1.0  # all of A
    maps[0, 5, 5:8] = 1.0  # half of B
    maps[1, 7, 0:4] = 1.0  # 4 normal pixels
    got = pixel_operating_point(maps, masks, 0.5)
    defect, normal = 14, 128 - 14
    assert got == pytest.approx({"fpr": 4 / normal, "tpr": 7 / defect, "pro": (1 + 0.5 + 0) / 3})
    assert pixel_operating_point(maps, masks, 1.0)["pro"] == 0.0  # a pixel equal to the threshold is not flagged

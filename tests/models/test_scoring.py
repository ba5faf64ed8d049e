import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from fader_lightning.errors import ConfigError
from fader_lightning.models.losses import msgms_map
from fader_lightning.models.scoring import (
    AnomalyScorer,
    MapStatistics,
    anomaly_map,
    box_filter,
    calibrated_scale,
    image_score,
    raw_anomaly_map,
    rebuild_scorer,
    scaled_kernel_size,
)


@pytest.mark.parametrize(
    ("height", "expected"), [(256, 21), (128, 11), (512, 43), (64, 5), (32, 3), (16, 1), (224, 19)]
)
def test_scaled_kernel_size(height: int, expected: int) -> None:
    assert scaled_kernel_size(height) == expected


def test_scaled_kernel_size_is_odd_and_close() -> None:
    for height in range(8, 1025, 8):
        k = scaled_kernel_size(height)
        assert k % 2 == 1 and k >= 1
        assert abs(k - 21 * height / 256) <= 1
    assert scaled_kernel_size(100, reference_size=100, reference_kernel=7) == 7


def test_scaled_kernel_size_validation() -> None:
    with pytest.raises(ConfigError, match="reference_kernel=20"):
        scaled_kernel_size(256, reference_kernel=20)
    with pytest.raises(ConfigError, match="reference_size=0"):
        scaled_kernel_size(256, reference_size=0)


def test_identical_gives_zero_map() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(raw_anomaly_map(x, x), torch.zeros(2, 1, 32, 32))
    assert torch.equal(anomaly_map(x, x), torch.zeros(2, 1, 32, 32))


def test_raw_map_is_channel_mean_of_one_minus_msgms() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    expected = (1 - msgms_map(x, y)).mean(dim=1, keepdim=True)
    torch.testing.assert_close(raw_anomaly_map(x, y), expected)
    torch.testing.assert_close(anomaly_map(x, y, smooth=False), expected)
    torch.testing.assert_close(anomaly_map(x, y, num_scales=2, smooth=False), raw_anomaly_map(x, y, num_scales=2))


def test_box_filter_matches_scipy_uniform_filter() -> None:
    amap = torch.rand(2, 1, 20, 28, dtype=torch.float64)
    for k in (1, 3, 7, 11):
        expected = np.stack([ndimage.uniform_filter(a[0], size=k, mode="nearest") for a in amap.numpy()])[:, None]
        np.testing.assert_allclose(box_filter(amap, k).numpy(), expected, atol=1e-10)
    with pytest.raises(ConfigError, match="kernel_size=4"):
        box_filter(amap, 4)


def test_anomaly_map_kernel_scaling_and_override() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 3, 64, 48, generator=g), torch.rand(1, 3, 64, 48, generator=g)
    raw = raw_anomaly_map(x, y)
    # 64 px high -> kernel 5 (scaled from 21 at 256); kernel follows the height, not the width
    torch.testing.assert_close(anomaly_map(x, y), box_filter(raw, 5))
    torch.testing.assert_close(anomaly_map(x, y, kernel_size=9), box_filter(raw, 9))
    torch.testing.assert_close(anomaly_map(x, y, reference_size=64, reference_kernel=3), box_filter(raw, 3))


def test_localized_perturbation_peaks_inside_region() -> None:
    g = torch.Generator().manual_seed(2)
    image = 0.5 + 0.02 * torch.randn(1, 3, 64, 64, generator=g)
    recon = image.clone()
    rows, cols = slice(36, 48), slice(12, 24)
    recon[:, :, rows, cols] += 0.3 * torch.randn(1, 3, 12, 12, generator=g)
    for amap in (anomaly_map(image, recon), raw_anomaly_map(image, recon)):
        assert amap.shape == (1, 1, 64, 64)
        peak = int(amap.flatten().argmax())
        r, c = divmod(peak, 64)
        assert rows.start <= r < rows.stop and cols.start <= c < cols.stop
        outside = amap.clone()
        outside[..., rows.start - 8 : rows.stop + 8, cols.start - 8 : cols.stop + 8] = 0
        assert outside.max() < 0.5 * amap.max()


def test_image_score_pooling_variants() -> None:
    g = torch.Generator().manual_seed(3)
    amap = torch.rand(3, 1, 10, 10, generator=g)
    flat = amap.reshape(3, -1).numpy()
    np.testing.assert_allclose(image_score(amap, "max").numpy(), flat.max(axis=1))
    np.testing.assert_allclose(image_score(amap, "mean").numpy(), flat.mean(axis=1), rtol=1e-6)
    top = np.sort(flat, axis=1)[:, ::-1]
    np.testing.assert_allclose(image_score(amap, "topk_mean", 0.05).numpy(), top[:, :5].mean(axis=1), rtol=1e-6)
    # ceil(0.01 * 100) = 1 value -> the max; ceil(0.123 * 100) = 13 values
    np.testing.assert_allclose(image_score(amap, "topk_mean").numpy(), flat.max(axis=1))
    k = math.ceil(0.123 * 100)
    np.testing.assert_allclose(image_score(amap, "topk_mean", 0.123).numpy(), top[:, :k].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(image_score(amap, "topk_mean", 1.0).numpy(), flat.mean(axis=1), rtol=1e-6)


def test_image_score_errors() -> None:
    amap = torch.rand(1, 1, 4, 4)
    with pytest.raises(ConfigError) as info:
        image_score(amap, "median")
    message = str(info.value)
    assert "'median'" in message and all(name in message for name in ("max", "mean", "topk_mean"))
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="topk_fraction"):
            image_score(amap, "topk_mean", bad)


def test_anomaly_scorer_matches_functions() -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    amap, score = AnomalyScorer(pooling="topk_mean", topk_fraction=0.1)(x, y)
    torch.testing.assert_close(amap, anomaly_map(x, y))
    torch.testing.assert_close(score, image_score(anomaly_map(x, y), "topk_mean", 0.1))
    amap, score = AnomalyScorer(kernel_size=7, smooth=True)(x, y)
    torch.testing.assert_close(amap, box_filter(raw_anomaly_map(x, y), 7))
    torch.testing.assert_close(score, amap.flatten(1).amax(1))


def test_anomaly_scorer_exports_with_torch_export() -> None:
    scorer = AnomalyScorer()
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    exported = torch.export.export(scorer, (x, y))
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    for got, want in zip(exported.module()(a, b), scorer(a, b), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"pooling": "sum"}, "pooling='sum'"), ({"kernel_size": 2}, "kernel_size=2"), ({"reference_kernel": 0}, "0")],
)
def test_anomaly_scorer_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AnomalyScorer(**kwargs)


def test_map_statistics_match_numpy_over_batches() -> None:
    maps = torch.rand(7, 1, 5, 6, generator=torch.Generator().manual_seed(1))
    stats = MapStatistics((5, 6))
    for chunk in maps.split(3):  # 3 + 3 + 1: the running sums must not depend on the batching
        stats.update(chunk)
    mean, std = stats.compute()
    values = maps.squeeze(1).double().numpy()
    np.testing.assert_allclose(mean[0, 0].numpy(), values.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std[0, 0].numpy(), values.std(0), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="at least one image"):
        MapStatistics((2, 2)).compute()


@pytest.mark.parametrize("normalize", ["mean", "zscore"])
def test_normalised_map_is_the_smoothed_map_in_units_of_normal_statistics(normalize: str) -> None:
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    mean, std = torch.rand(1, 1, 32, 32, generator=g), torch.rand(1, 1, 32, 32, generator=g)
    scorer = AnomalyScorer(normalize=normalize, pooling="mean", std_floor=0.5)
    assert scorer.needs_statistics
    torch.testing.assert_close(scorer(x, y)[0], anomaly_map(x, y))  # nothing measured yet: unnormalised
    scorer.set_statistics(mean, std)
    assert not scorer.needs_statistics
    expected = anomaly_map(x, y) - mean
    if normalize == "zscore":
        expected = expected / (std + 0.5 * std.mean())
    amap, score = scorer(x, y)
    torch.testing.assert_close(amap, expected)
    torch.testing.assert_close(score, expected.mean(dim=(1, 2, 3)))
    with pytest.raises(ConfigError, match=r"\(32, 32\) px but the maps are \(16, 16\) px.*data.image_size"):
        scorer(x[..., :16, :16], y[..., :16, :16])


def test_normalisation_lifts_a_defect_above_a_structure_every_normal_image_has() -> None:
    """Normals all err on a bright border; the defect is weaker than the border but stands out once normalised."""
    g = torch.Generator().manual_seed(0)
    normal = 0.02 * torch.rand(20, 1, 32, 32, generator=g)
    normal[..., :, :3] += 0.5  # what the model reconstructs badly on every normal image
    test = 0.02 * torch.rand(2, 1, 32, 32, generator=g)
    test[..., :, :3] += 0.5
    test[1, :, 14:18, 14:18] += 0.3  # the defect of the second image
    stats = MapStatistics((32, 32))
    stats.update(normal)
    scorer = AnomalyScorer(normalize="zscore")
    raw = scorer.finish(test)[1]
    scorer.set_statistics(*stats.compute())
    normalised = scorer.finish(test)[1]
    assert raw[1] - raw[0] < 0.05  # unnormalised, the border's maximum hides the defect
    assert normalised[1] > 3 * normalised[0]


def test_statistics_travel_in_the_state_dict_and_old_checkpoints_load() -> None:
    scorer = AnomalyScorer(normalize="zscore")
    scorer.set_statistics(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    fresh = AnomalyScorer(normalize="zscore")
    fresh.load_state_dict(scorer.state_dict())
    torch.testing.assert_close(fresh.map_mean, scorer.map_mean)
    torch.testing.assert_close(fresh.map_std, scorer.map_std)
    old = AnomalyScorer(normalize="zscore")
    old.load_state_dict({})  # a checkpoint from before the statistics existed: strict loading still passes
    assert old.needs_statistics


def test_rebuilt_scorer_keeps_statistics_only_while_the_map_is_the_same() -> None:
    scorer = AnomalyScorer(normalize="zscore")
    scorer.set_statistics(torch.ones(1, 1, 8, 8), torch.ones(1, 1, 8, 8))
    scorer.set_thresholds(2.5, 3.5, 0.5, 0.0)
    assert (scorer.image_threshold, scorer.pixel_threshold) == (2.5, 3.5)
    same_map = rebuild_scorer(scorer, {"normalize": "mean", "pooling": "topk_mean"})
    assert same_map.map_mean.shape == (1, 1, 8, 8) and same_map.pooling == "topk_mean"
    assert same_map.image_threshold is None  # another scale of scores: the thresholds do not carry over
    same_scale = rebuild_scorer(scorer, {"normalize": "zscore"})
    assert (same_scale.image_threshold, same_scale.pixel_threshold) == (2.5, 3.5)
    other_map = rebuild_scorer(scorer, {"normalize": "zscore", "kernel_size": 5})
    assert other_map.needs_statistics and other_map.image_threshold is None


def test_normalised_scores_put_the_threshold_at_one_half() -> None:
    scorer = AnomalyScorer()
    assert scorer.normal_lows is None  # not calibrated
    scorer.set_thresholds(3.0, 5.0, 1.0, 2.0)
    assert scorer.normal_lows == (1.0, 2.0)
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0, 3.5, 5.0, 9.0, 1e4, 1e5])
    # independent arithmetic: x = 4 (s - 3) / (3 - 1), n = 0.5 + 0.5 x / (1 + |x|)
    xs = [4 * (s - 3) / 2 for s in scores.tolist()]
    expected = torch.tensor([0.5 + 0.5 * x / (1 + abs(x)) for x in xs])
    result = calibrated_scale(scores, scorer.normal_lows[0], scorer.image_threshold).float()
    torch.testing.assert_close(result, expected)
    assert result[1] == pytest.approx(0.1) and result[3] == 0.5 and result[5] == pytest.approx(0.9)
    assert torch.equal(result > 0.5, scores > 3.0)
    assert bool((result.diff() > 0).all()) and bool((result < 1).all())  # the order kept, nothing clipped
    maps = calibrated_scale(torch.tensor([2.0, 5.0, 8.0]), scorer.normal_lows[1], scorer.pixel_threshold)  # range 3
    torch.testing.assert_close(maps.float(), torch.tensor([0.1, 0.5, 0.9]))
    older = AnomalyScorer()
    older.load_state_dict({**scorer.state_dict(), "thresholds": torch.tensor([3.0, 5.0])})
    assert older.image_threshold == 3.0 and older.normal_lows is None


@pytest.mark.parametrize(("kwargs", "match"), [({"normalize": "minmax"}, "minmax"), ({"std_floor": 0.0}, "std_floor")])
def test_normalisation_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AnomalyScorer(**kwargs)

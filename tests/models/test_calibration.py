"""Calibration methods against independent computations, their needs, and the target they aim at."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from fader_lightning.data.datamodule import split_train_val
from fader_lightning.errors import ConfigError
from fader_lightning.models.calibration import LEGACY, METHODS, Calibration, ratio_for


def scores(n: int, seed: int, loc: float = 10.0, scale: float = 2.0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(loc, scale, n))


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_each_method_matches_an_independent_computation(margin: float) -> None:
    held, seen = scores(25, 0, loc=12.0), scores(60, 1)
    h, s = held.numpy(), seen.numpy()
    pad = margin * h.std(ddof=1)
    z = norm.ppf(0.9)
    expected = {
        "max": h.max() + pad,
        "quantile": np.sort(h)[22] + 0.4 * (np.sort(h)[23] - np.sort(h)[22]) + pad,  # the 0.9 * 26 = 23.4th smallest
        "gaussian": h.mean() + z * h.std(ddof=1) + pad,
        "seen_gap": np.quantile(s, 0.9) * np.median(h) / np.median(s) + pad,
    }
    for method in METHODS:
        got = Calibration(method, 0.1, margin).threshold(held, seen)
        assert got == pytest.approx(expected[method], rel=1e-9), method


def test_the_fitted_methods_hold_their_target_on_unseen_normals() -> None:
    """On scores drawn from one distribution, the share of fresh normals above each threshold is near the target.

    ``max`` ignores the target: its rate is about 1 / (n + 1) whatever is asked.
    """
    fresh = scores(200_000, 99)
    for target in (0.05, 0.2):
        rates = {method: [] for method in ("quantile", "gaussian", "max")}
        for seed in range(40):
            held = scores(40, seed)
            for method, values in rates.items():
                values.append(float((fresh > Calibration(method, target, 0.0).threshold(held)).double().mean()))
        assert abs(np.mean(rates["quantile"]) - target) < 0.3 * target
        assert abs(np.mean(rates["gaussian"]) - target) < 0.2 * target
        assert np.mean(rates["max"]) == pytest.approx(1 / 41, abs=0.01)


def test_seen_gap_corrects_training_scores_by_the_held_out_gap() -> None:
    """Training scores lower than unseen ones by a factor: scaled back, their quantile is the unseen one's."""
    unseen = scores(100_000, 5)
    training = unseen[:60] * 0.5  # the model fitted them: half the score
    held = unseen[60:66]
    threshold = Calibration("seen_gap", 0.1, 0.0).threshold(held, training)
    rate = float((unseen > threshold).double().mean())
    assert 0.02 < rate < 0.3  # the uncorrected training quantile flags nearly every unseen normal
    assert float((unseen > torch.quantile(training, 0.9)).double().mean()) > 0.9


def test_needs_and_too_few_scores() -> None:
    assert Calibration("max", 0.05, 0.0).held_out_needed == 1
    assert Calibration("max", 0.05, 1.0).held_out_needed == 2  # a margin needs a standard deviation
    assert Calibration("quantile", 0.05, 0.0).held_out_needed == 19
    assert Calibration("quantile", 0.3, 0.0).held_out_needed == 3
    assert Calibration("gaussian", 0.05, 0.0).held_out_needed == 3
    assert Calibration("seen_gap", 0.05, 0.0).training_needed == 20
    assert Calibration("seen_gap", 0.05, 0.0).held_out_needed == 1  # one held-out image measures the gap
    assert Calibration("gaussian", 0.05, 0.0).training_needed == 0
    with pytest.raises(ValueError, match="quantile needs 19 held-out scores, got 6"):
        Calibration("quantile", 0.05, 0.0).threshold(scores(6, 0))
    with pytest.raises(ValueError, match="seen_gap needs 10 training scores, got 4"):
        Calibration("seen_gap", 0.1, 0.0).threshold(scores(6, 0), scores(4, 1))


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"method": "median"}, r"^method='median' is unknown; use one of max, quantile, gaussian, seen_gap, auto"),
        ({"target_fpr": 0.0}, r"^target_fpr=0\.0 is invalid.*in \(0, 1\)"),
        ({"target_fpr": 1.0}, r"^target_fpr=1\.0 is invalid"),
        ({"target_fpr": -0.1}, r"^target_fpr=-0\.1 is invalid"),
        ({"margin": -1.0}, r"^margin=-1\.0 is invalid"),
        ({"margin": math.inf}, r"^margin=inf is invalid"),
        ({"target_fpr": "abc"}, r"^target_fpr='abc' is invalid"),
        ({"target_fpr": True}, r"^target_fpr=True is invalid"),
        ({"target_fpr": 2}, r"^target_fpr=2 is invalid"),
    ],
)
def test_bad_settings_are_named(settings: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Calibration.of(settings)


def test_settings_of_a_mapping_fill_in_what_older_checkpoints_used() -> None:
    assert Calibration.of({}) == Calibration(**LEGACY)
    assert Calibration.of({"method": "gaussian", "target_fpr": None}).as_dict() == {**LEGACY, "method": "gaussian"}
    with pytest.raises(ConfigError, match=r"^target_fpr='x'"):
        Calibration("max", "x", 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("total", [5, 9, 25, 28, 60, 209])
def test_ratio_for_gives_the_split_it_promises(total: int) -> None:
    samples = list(range(total))
    for needed in range(1, total + 2):
        ratio = ratio_for(needed, total)
        if ratio is None:
            assert needed > min(round(total * 0.99), total - 1)  # beyond what a ratio below 1 holds out
            continue
        _, held = split_train_val(samples, ratio, seed=0)
        assert len(held) >= needed
        assert round(total * (ratio - 0.01)) < needed  # the smallest such ratio: a hundredth less holds out fewer


def test_auto_is_seen_gap_where_the_data_allows_it_else_max() -> None:
    auto = Calibration("auto", 0.05, 1.0)
    assert auto.resolved(held_out=6, training=54) == Calibration("seen_gap", 0.05, 1.0)
    assert auto.resolved(held_out=2, training=19) == Calibration("max", 0.05, 1.0)  # 1 / 0.05 = 20 training images
    assert auto.resolved(held_out=0, training=100) == Calibration("max", 0.05, 1.0)  # no held-out normals: no gap
    assert auto.resolved(held_out=1, training=100) == Calibration("seen_gap", 0.05, 0.0)  # one score has no spread
    assert auto.resolved(held_out=1, training=10) == Calibration("max", 0.05, 0.0)
    assert Calibration("gaussian", 0.05, 0.0).resolved(0, 0).method == "gaussian"  # a method asked for stays
    with pytest.raises(ValueError, match="resolve auto first"):
        auto.threshold(scores(6, 0))

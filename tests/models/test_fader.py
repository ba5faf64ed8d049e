import logging

import numpy as np
import pytest
import torch

from fader_lightning.errors import ConfigError
from fader_lightning.masking import Obfuscation, build_mask_generator
from fader_lightning.models.ear.model import EARModel
from fader_lightning.models.fader import model as fader_model
from fader_lightning.models.fader.model import (
    FADeRModel,
    PatchErrorPredictor,
    SoftMask,
    attenuate,
    check_calibration,
    check_patch_grid,
    feature_dim,
    gt_patch_targets,
    patch_features,
    ranking_loss,
    ranking_loss_pairs,
)
from fader_lightning.models.scoring import AnomalyScorer, box_filter, raw_anomaly_map
from fader_lightning.models.unet import UNet

WIDTHS = (8, 16, 32, 64)
SKIP_CHANNELS = [8, 16, 32]


@pytest.fixture(autouse=True)
def single_thread():
    # These tensors are tiny; intra-op threads only add contention on a busy CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def net() -> UNet:
    torch.manual_seed(0)
    return UNet(widths=WIDTHS).eval()


@pytest.fixture
def encoded(net: UNet) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        skips, bottleneck = net.encode(x)
    return x, skips, bottleneck


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    rank_a = np.argsort(np.argsort(a)).astype(float)
    rank_b = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


# --- features, predictor, attenuation ---------------------------------------------------------------------------


def test_patch_features_shapes(encoded) -> None:
    x, skips, _ = encoded
    feats = patch_features(skips, x, 8, "skip_features")
    assert feats.shape == (2, 8 + 16 + 32, 8, 8)
    assert feature_dim("skip_features", SKIP_CHANNELS, 8) == 56
    pixels = patch_features(skips, x, 8, "pixels")
    assert pixels.shape == (2, 192, 8, 8)
    assert feature_dim("pixels", SKIP_CHANNELS, 8) == 192


def test_skip_features_are_patch_means(encoded) -> None:
    x, skips, _ = encoded
    feats = patch_features(skips, x, 8)
    # Level 1 (32x32) covers patch (row 2, col 5) with its 4x4 block rows 8..12, cols 20..24.
    expected = skips[1][0, :, 8:12, 20:24].mean(dim=(-2, -1))
    torch.testing.assert_close(feats[0, 8:24, 2, 5], expected)
    # Pixels of patch (row 1, col 3) of channel 2 are the block rows 8..16, cols 24..32.
    pixels = patch_features(skips, x, 8, "pixels")
    torch.testing.assert_close(pixels[1, 2 * 64 : 3 * 64, 1, 3], x[1, 2, 8:16, 24:32].reshape(-1))


@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "gelu"])
def test_predictor_shape(activation: str) -> None:
    predictor = PatchErrorPredictor(56, hidden=16, activation=activation)
    assert predictor(torch.randn(3, 56, 8, 4)).shape == (3, 1, 8, 4)


def test_attenuate_keeps_shapes_and_untouched_levels(encoded) -> None:
    _, skips, _ = encoded
    mask = torch.rand(2, 1, 8, 8)
    out = attenuate(skips, mask, levels=[1])
    assert [o.shape for o in out] == [s.shape for s in skips]
    assert out[0] is skips[0] and out[2] is skips[2]
    assert out[1] is not skips[1]
    assert not torch.equal(out[1], skips[1])


@pytest.mark.parametrize("levels", [(0, 1, 2), (0, 2)])
def test_zero_mask_patch_zeroes_its_region(encoded, levels: tuple[int, ...]) -> None:
    _, skips, _ = encoded
    mask = torch.ones(2, 1, 8, 8)
    mask[1, 0, 3, 6] = 0.0
    out = attenuate(skips, mask, levels)
    for level, (skip, attenuated) in enumerate(zip(skips, out, strict=True)):
        if level not in levels:
            assert attenuated is skip
            continue
        cell = 8 // 2**level
        rows, cols = slice(3 * cell, 4 * cell), slice(6 * cell, 7 * cell)
        assert skip[1, :, rows, cols].abs().sum() > 0
        assert torch.all(attenuated[1, :, rows, cols] == 0)
        expected = skip.clone()
        expected[1, :, rows, cols] = 0
        assert torch.equal(attenuated, expected)


def tiny_ear(net: UNet) -> EARModel:
    """Checkerboard masks (4 px cells), mosaic fill and the default scorer around ``net``."""
    return EARModel(net, build_mask_generator("checkerboard", cell_size=4), Obfuscation(), AnomalyScorer())


def detect_random(fader: FADeRModel, net: UNet, seed: int) -> tuple[EARModel, torch.Tensor, torch.Tensor, dict]:
    """:meth:`FADeRModel.detect` on two random 64 px images: the EAR model, images, masks and outputs."""
    ear = tiny_ear(net)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    masks = ear.masks(images)
    with torch.no_grad():
        return ear, images, masks, fader.detect(ear, images, masks)


def test_detect_matches_parts(net: UNet) -> None:
    torch.manual_seed(2)
    fader = FADeRModel(net.skip_channels, patch_size=8, hidden=16, levels=(0, 2), attenuate_masked=True)
    ear = tiny_ear(net)
    images = torch.rand(2, 3, 64, 64)
    masks = ear.masks(images)
    with torch.no_grad():
        out = fader.detect(ear, images, masks)
        obfuscated = ear.obfuscation(images, masks)
        skips, bottleneck = net.encode(obfuscated)
        pred = fader.predictor(patch_features(skips, obfuscated, 8))
        weights = fader.soft_mask(pred)
        recon = net.decode(bottleneck, attenuate(skips, weights, (0, 2)))
    assert out["pred_error"].shape == out["soft"].shape == (2, 1, 8, 8)
    torch.testing.assert_close(out["pred_error"], pred)
    torch.testing.assert_close(out["soft"], weights)
    torch.testing.assert_close(out["recon"], recon)
    torch.testing.assert_close(out["anomaly_map"], ear.scorer(images, recon)[0])


def test_disabled_fader_is_identity(net: UNet) -> None:
    ear = tiny_ear(net)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    masks = ear.masks(images)
    with torch.no_grad():
        stage1 = ear.scorer(images, ear.reconstruct(images, masks))
        fader = FADeRModel(net.skip_channels, enabled=False, use="both")
        fader.residual_fit.copy_(torch.tensor([1.0, 0.5]))
        out = fader.detect(ear, images, masks)
    assert torch.equal(out["anomaly_map"], stage1[0]) and torch.equal(out["score"], stage1[1])
    assert torch.equal(out["soft"], torch.ones_like(out["soft"]))


def test_masked_patches_keep_their_skips(net: UNet) -> None:
    fader = FADeRModel(net.skip_channels, patch_size=8, attenuate_masked=False)
    weights = torch.full((1, 1, 2, 2), 0.2)
    masks = torch.zeros(1, 1, 16, 16)
    masks[..., :8, :8] = 1  # patch (0, 0) fully hidden
    masks[..., :4, 8:] = 1  # patch (0, 1) half hidden
    restricted = fader.restrict(weights, masks)
    torch.testing.assert_close(restricted[0, 0], torch.tensor([[1.0, 0.6], [0.2, 0.2]]))
    fader.attenuate_masked = True
    assert torch.equal(fader.restrict(weights, masks), weights)


def test_residual_fit_recovers_a_line_and_is_subtracted(net: UNet) -> None:
    fader = FADeRModel(net.skip_channels, patch_size=8, use="residual")
    preds = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    slope, intercept = fader.fit_residual(preds, 0.3 * preds + 0.05)
    assert slope == pytest.approx(0.3, abs=1e-6) and intercept == pytest.approx(0.05, abs=1e-6)
    offset = fader.expected_error(preds, (64, 64))
    torch.testing.assert_close(offset[:, :, ::8, ::8], 0.3 * preds + 0.05)
    ear, images, masks, out = detect_random(fader, net, 6)
    with torch.no_grad():
        recon = ear.reconstruct(images, masks)
        expected = box_filter(raw_anomaly_map(images, recon) - fader.expected_error(out["pred_error"], (64, 64)), 5)
    assert torch.equal(out["recon"], recon)  # residual alone never touches the skips
    torch.testing.assert_close(out["anomaly_map"], expected)
    with pytest.raises(ValueError, match="one shape"):
        fader.fit_residual(preds, preds[:1])


def test_pixel_source_fader(net: UNet, encoded) -> None:
    x, skips, _ = encoded
    fader = FADeRModel(net.skip_channels, patch_size=16, source="pixels", hidden=8)
    assert fader.predict(skips, x).shape == (2, 1, 4, 4)
    assert fader.predictor.net[0].in_channels == 3 * 16 * 16


# --- soft mask -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mapping", ["calibrated", "literal"])
def test_soft_mask_range(mapping: str) -> None:
    torch.manual_seed(3)
    mask = SoftMask(mapping)
    preds = torch.randn(4, 1, 8, 8) * 5
    mask.calibrate(preds)
    for scale in (1.0, 1e3, 1e6):
        weights = mask(torch.randn(4, 1, 8, 8) * scale)
        assert torch.all(weights > 0) and torch.all(weights <= 1)
    torch.testing.assert_close(mask(torch.tensor([float(mask.tau)])), torch.tensor([0.5]))


def test_literal_mapping_is_fixed() -> None:
    mask = SoftMask("literal")
    assert mask.calibrate(torch.randn(100) + 10) == (0.0, 1.0)
    assert not mask.is_calibrated
    pred = torch.randn(50)
    torch.testing.assert_close(mask(pred), 1 - torch.sigmoid(pred))


def test_calibrate_matches_numpy_quantiles() -> None:
    torch.manual_seed(4)
    preds = torch.randn(16, 1, 16, 16).exp()
    mask = SoftMask()
    assert not mask.is_calibrated
    tau, temperature = mask.calibrate(preds, quantile=0.99)
    values = preds.numpy().ravel().astype(np.float64)
    q99, q50 = np.percentile(values, 99), np.percentile(values, 50)
    assert tau == pytest.approx(q99, rel=1e-5)
    assert temperature == pytest.approx(0.1 * (q99 - q50), rel=1e-4)
    assert float(mask.tau) == pytest.approx(q99, rel=1e-5)
    assert mask.is_calibrated
    state = mask.state_dict()
    assert set(state) == {"tau", "temperature", "calibrated"}
    restored = SoftMask()
    restored.load_state_dict(state)
    assert restored.is_calibrated
    pred = torch.randn(10)
    assert torch.equal(restored(pred), mask(pred))


def test_calibrate_subsamples_large_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fader_model, "QUANTILE_MAX_ELEMENTS", 1000)
    preds = torch.randperm(10_000).float()
    tau, _ = SoftMask().calibrate(preds, quantile=0.99)
    subsample = preds.numpy()[::10].astype(np.float64)
    assert tau == pytest.approx(np.percentile(subsample, 99), rel=1e-6)
    assert tau != pytest.approx(np.percentile(preds.numpy(), 99), rel=1e-6)


def test_calibrate_constant_predictions(caplog: pytest.LogCaptureFixture) -> None:
    mask = SoftMask()
    with caplog.at_level(logging.WARNING, logger="fader_lightning.models.fader.model"):
        tau, temperature = mask.calibrate(torch.full((3, 1, 4, 4), 0.7))
    assert tau == pytest.approx(0.7)
    assert temperature == pytest.approx(1e-6)
    assert any("constant" in record.message for record in caplog.records)
    weights = mask(torch.tensor([0.0, 0.7, 0.7 + 1e-3, 100.0]))
    assert torch.all(torch.isfinite(weights))
    assert torch.all(weights > 0) and torch.all(weights <= 1)


def test_calibrate_max_is_the_largest_prediction() -> None:
    preds = torch.randn(200, generator=torch.Generator().manual_seed(7))
    mask = SoftMask()
    tau, _ = mask.calibrate(preds, quantile="max")
    assert tau == pytest.approx(float(preds.max()))
    assert bool((mask(preds) >= 0.5).all())  # no calibration patch is attenuated


def test_calibrate_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        SoftMask().calibrate(torch.empty(0))
    with pytest.raises(ValueError, match="non-finite"):
        SoftMask().calibrate(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ConfigError, match=r"^quantile=1\.5"):
        check_calibration(quantile=1.5, median_quantile=0.5, temperature_scale=0.1, min_temperature=1e-6)
    with pytest.raises(ConfigError, match=r"^quantile=highest.*or max"):
        check_calibration(quantile="highest", median_quantile=0.5, temperature_scale=0.1, min_temperature=1e-6)
    with pytest.raises(ConfigError, match=r"^median_quantile=0\.9"):
        check_calibration(quantile=0.5, median_quantile=0.9, temperature_scale=0.1, min_temperature=1e-6)


# --- ranking loss --------------------------------------------------------------------------------------------------


def test_ranking_loss_correct_order_is_zero() -> None:
    pred_i = torch.tensor([2.0], requires_grad=True)
    pred_j = torch.tensor([1.0], requires_grad=True)
    loss = ranking_loss_pairs(pred_i, pred_j, torch.tensor([0.9]), torch.tensor([0.1]), margin=1.0)
    assert loss.item() == 0.0
    loss = ranking_loss_pairs(pred_i, pred_j, torch.tensor([0.1]), torch.tensor([0.9]), margin=1.0)
    assert loss.item() == pytest.approx(2.0)


def test_ranking_loss_wrong_order_gradient_signs() -> None:
    pred_i = torch.tensor([0.2], requires_grad=True)
    pred_j = torch.tensor([0.5], requires_grad=True)
    loss = ranking_loss_pairs(pred_i, pred_j, torch.tensor([3.0]), torch.tensor([1.0]), margin=1.0)
    assert loss.item() == pytest.approx(1.3)
    loss.backward()
    assert pred_i.grad.item() < 0  # descent increases p_i
    assert pred_j.grad.item() > 0  # descent decreases p_j


def test_ranking_loss_skips_ties_in_mean() -> None:
    pred_i = torch.tensor([0.0, 0.0])
    pred_j = torch.tensor([0.0, 5.0])
    loss = ranking_loss_pairs(pred_i, pred_j, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0]), margin=1.0)
    assert loss.item() == pytest.approx(1.0)


def test_ranking_loss_all_ties_is_backwardable_zero() -> None:
    pred = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = ranking_loss(pred, torch.ones(2, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert torch.all(pred.grad == 0)


def test_ranking_loss_reproducible_and_shift_invariant() -> None:
    torch.manual_seed(5)
    pred = torch.randn(4, 1, 8, 8)
    target = torch.rand(4, 1, 8, 8)
    first = ranking_loss(pred, target, generator=torch.Generator().manual_seed(11))
    again = ranking_loss(pred, target, generator=torch.Generator().manual_seed(11))
    shifted = ranking_loss(pred, target + 3.0, generator=torch.Generator().manual_seed(11))
    other = ranking_loss(pred, target, generator=torch.Generator().manual_seed(12))
    assert first.item() > 0
    assert torch.equal(first, again)
    torch.testing.assert_close(shifted, first)
    assert other.item() != first.item()


def test_ranking_loss_matches_explicit_pairs() -> None:
    torch.manual_seed(6)
    pred = torch.randn(2, 1, 3, 3)
    target = torch.rand(2, 1, 3, 3)
    perm = torch.randperm(18, generator=torch.Generator().manual_seed(7))
    p, t = pred.reshape(-1), target.reshape(-1)
    pairs = [(i, int(j)) for i, j in enumerate(perm) if i != int(j)]
    manual = np.mean([max(0.0, -np.sign(t[i] - t[j]).item() * (p[i] - p[j]).item() + 0.5) for i, j in pairs])
    loss = ranking_loss(pred, target, margin=0.5, generator=torch.Generator().manual_seed(7))
    assert loss.item() == pytest.approx(manual, rel=1e-6)


def test_ranking_loss_trains_predictor() -> None:
    torch.manual_seed(8)
    train_x = torch.randn(16, 4, 8, 8)
    test_x = torch.randn(8, 4, 8, 8)

    def target_of(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x[:, 1:2]) + 0.1 * torch.randn_like(x[:, 1:2])

    train_t, test_t = target_of(train_x), target_of(test_x)
    predictor = PatchErrorPredictor(4, hidden=32)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(9)
    with torch.no_grad():
        before = spearman(predictor(test_x).numpy().ravel(), test_t.numpy().ravel())
    for _ in range(200):
        optimizer.zero_grad()
        loss = ranking_loss(predictor(train_x), train_t, generator=generator)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = spearman(predictor(test_x).numpy().ravel(), test_t.numpy().ravel())
    assert abs(before) < 0.8
    assert after > 0.8


# --- targets -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("measure", ["msgms", "mse"])
def test_gt_targets_zero_for_exact_recon(measure: str) -> None:
    image = torch.rand(2, 3, 32, 32)
    targets = gt_patch_targets(image, image.clone(), 8, measure)
    assert targets.shape == (2, 1, 4, 4)
    torch.testing.assert_close(targets, torch.zeros_like(targets), atol=1e-6, rtol=0)


@pytest.mark.parametrize("measure", ["msgms", "mse"])
def test_gt_targets_perturbed_patch_is_largest(measure: str) -> None:
    torch.manual_seed(10)
    image = torch.rand(1, 3, 64, 64)
    recon = (image + 0.01 * torch.randn_like(image)).clamp(0, 1)
    recon[:, :, 24:32, 40:48] = torch.rand(1, 3, 8, 8)
    targets = gt_patch_targets(image, recon, 8, measure)
    assert targets.shape == (1, 1, 8, 8)
    assert int(targets.flatten().argmax()) == 3 * 8 + 5


def test_gt_targets_mse_matches_numpy() -> None:
    torch.manual_seed(11)
    image, recon = torch.rand(2, 3, 16, 24), torch.rand(2, 3, 16, 24)
    diff = (image.numpy().astype(np.float64) - recon.numpy()) ** 2
    expected = diff.mean(axis=1).reshape(2, 4, 4, 6, 4).mean(axis=(2, 4))
    targets = gt_patch_targets(image, recon, 4, "mse")
    np.testing.assert_allclose(targets[:, 0].numpy(), expected, rtol=1e-5)


def test_gt_targets_carry_no_gradient() -> None:
    recon = torch.rand(1, 3, 16, 16, requires_grad=True)
    assert not gt_patch_targets(torch.rand(1, 3, 16, 16), recon, 8).requires_grad


# --- settings ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"source": "rgb"}, "^source="),
        ({"activation": "tanh"}, "^activation="),
        ({"mapping": "linear"}, "^mapping="),
        ({"levels": (0, 3)}, "^levels="),
        ({"levels": (1, 1)}, "^levels="),
        ({"levels": ()}, "^levels="),
        ({"levels": ("a",)}, "^levels="),
        ({"hidden": 0}, "^hidden="),
        ({"patch_size": 0}, "^patch_size="),
        ({"use": "add"}, "^use="),
    ],
)
def test_bad_fader_settings(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):  # the parameter's name: the pure-torch model knows no config key
        FADeRModel(SKIP_CHANNELS, **kwargs)


def test_bad_function_settings(encoded) -> None:
    x, _, _ = encoded
    with pytest.raises(ConfigError, match=r"^patch_size=12 does not divide the image size 64x64"):
        check_patch_grid(*x.shape[-2:], 12)
    check_patch_grid(*x.shape[-2:], 8)
    with pytest.raises(ConfigError, match=r"^source='rgb' is unknown"):
        feature_dim("rgb", SKIP_CHANNELS, 8)
    with pytest.raises(ValueError, match="shape"):
        ranking_loss(torch.rand(4), torch.rand(5))


def test_both_reads_one_head_per_use(net: UNet) -> None:
    torch.manual_seed(8)
    fader = FADeRModel(net.skip_channels, patch_size=8, hidden=16, use="both", attenuate_masked=False)
    assert fader.heads == ("attenuate", "residual") and fader.predictor.net[-1].out_channels == 2
    assert FADeRModel(net.skip_channels, use="residual").heads == ("residual",)
    fader.residual_fit.copy_(torch.tensor([0.5, 0.1]))
    ear, images, masks, out = detect_random(fader, net, 9)
    with torch.no_grad():
        obfuscated = ear.obfuscation(images, masks)
        skips, bottleneck = net.encode(obfuscated)
        pred = fader.predict(skips, obfuscated)
        weights = fader.restrict(fader.soft_mask(pred[:, :1]), masks)
        recon = net.decode(bottleneck, attenuate(skips, weights, fader.levels))
        offset = fader.expected_error(pred[:, 1:], (64, 64))
    torch.testing.assert_close(out["soft"], weights)
    torch.testing.assert_close(out["pred_error"], pred[:, :1])
    torch.testing.assert_close(out["anomaly_map"], ear.scorer(images, recon, offset)[0])

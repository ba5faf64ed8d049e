import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from fader_lightning.errors import ConfigError
from fader_lightning.models import losses
from fader_lightning.models.losses import (
    InpaintingLoss,
    gms_map,
    l2_loss,
    msgms_loss,
    msgms_map,
    ssim,
    ssim_loss,
)


def _pair(shape: tuple[int, ...], seed: int = 0, noise: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    y = (x + noise * torch.randn(shape, generator=g)).clamp(0, 1)
    return x, y


def numpy_ssim(x: np.ndarray, y: np.ndarray, window: int, sigma: float, data_range: float) -> np.ndarray:
    """SSIM per image written out with scipy: Gaussian local statistics over a mirrored border."""

    def blur(values: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(values, sigma, mode="mirror", truncate=(window // 2) / sigma)

    per_image = []
    for a, b in zip(x.astype(np.float64), y.astype(np.float64), strict=True):
        maps = []
        for ac, bc in zip(a, b, strict=True):
            mu_a, mu_b = blur(ac), blur(bc)
            var_a, var_b = blur(ac * ac) - mu_a**2, blur(bc * bc) - mu_b**2
            cov = blur(ac * bc) - mu_a * mu_b
            c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
            maps.append((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
        per_image.append(np.mean(maps))
    return np.array(per_image)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 24, 40), (3, 1, 17, 29), (2, 3, 64, 48)])
def test_ssim_matches_an_independent_computation(shape: tuple[int, ...]) -> None:
    x, y = _pair(shape)
    expected = numpy_ssim(x.numpy(), y.numpy(), 11, 1.5, 1.0)
    assert ssim(x, y, reduction="none").shape == (shape[0],)
    np.testing.assert_allclose(ssim(x, y, reduction="none").numpy(), expected, atol=1e-4)
    assert ssim(x, y).item() == pytest.approx(expected.mean(), abs=1e-4)


def test_ssim_other_window_sigma_and_range() -> None:
    x, y = _pair((2, 3, 20, 36), seed=1)
    expected = numpy_ssim(x.numpy() * 255, y.numpy() * 255, 9, 1.0, 255.0)
    got = ssim(x * 255, y * 255, window_size=9, sigma=1.0, data_range=255.0, reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


def test_ssim_identical_and_symmetric() -> None:
    x, y = _pair((2, 3, 32, 32))
    assert torch.allclose(ssim(x, x), torch.tensor(1.0), atol=1e-6)
    assert torch.allclose(ssim(x, y), ssim(y, x), atol=1e-6)
    assert ssim(x, y) < 0.95


def test_ssim_validation() -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, window_size=10)
    with pytest.raises(ValueError, match="too large"):
        ssim(torch.rand(1, 3, 5, 16), torch.rand(1, 3, 5, 16))
    with pytest.raises(ValueError, match="equal shape"):
        ssim(x, torch.rand(1, 3, 16, 15))
    with pytest.raises(ValueError, match="reduction"):
        ssim(x, x, reduction="sum")


def _gms_reference(x: np.ndarray, y: np.ndarray, c: float = 0.0026) -> np.ndarray:
    kx = np.array([[1, 0, -1]] * 3, dtype=np.float64) / 3
    ky = kx.T

    def magnitude(img: np.ndarray) -> np.ndarray:
        gx = ndimage.correlate(img, kx, mode="constant", cval=0.0)
        gy = ndimage.correlate(img, ky, mode="constant", cval=0.0)
        return np.sqrt(gx**2 + gy**2 + 1e-12)

    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for ch in range(x.shape[1]):
            gx, gy = magnitude(x[b, ch]), magnitude(y[b, ch])
            out[b, ch] = (2 * gx * gy + c) / (gx**2 + gy**2 + c)
    return out


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 2, 12, 20)])
def test_gms_matches_scipy_prewitt(shape: tuple[int, ...]) -> None:
    x, y = _pair(shape, noise=0.1)
    expected = _gms_reference(x.double().numpy(), y.double().numpy())
    result = gms_map(x, y)
    assert result.shape == shape
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-5)


def test_gms_is_per_channel() -> None:
    x, y = _pair((1, 3, 16, 16))
    y[:, 1] = x[:, 1]
    result = gms_map(x, y)
    assert torch.equal(result[:, 1], torch.ones_like(result[:, 1]))
    assert result[:, 0].min() < 0.99


def test_gms_identical_is_exactly_one() -> None:
    x = torch.rand(2, 3, 16, 24)
    assert torch.equal(gms_map(x, x), torch.ones_like(x))
    assert torch.equal(msgms_map(x, x), torch.ones_like(x))


def test_gms_range() -> None:
    x, y = _pair((2, 3, 16, 16), noise=0.5)
    result = gms_map(x, y)
    assert result.min() > 0 and result.max() <= 1 + 1e-6


def test_msgms_matches_manual_pyramid() -> None:
    x, y = _pair((2, 3, 32, 24), noise=0.1)
    expected = np.zeros(x.shape)
    xs, ys = x.double(), y.double()
    for scale in range(4):
        if scale:
            xs, ys = F.avg_pool2d(xs, 2), F.avg_pool2d(ys, 2)
        assert xs.shape[-2:] == (32 >> scale, 24 >> scale)
        level = torch.from_numpy(_gms_reference(xs.numpy(), ys.numpy()))
        expected += F.interpolate(level, size=(32, 24), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(msgms_map(x, y).numpy(), expected / 4, atol=1e-5)
    torch.testing.assert_close(msgms_map(x, y, num_scales=1), gms_map(x, y))


def test_msgms_validation() -> None:
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        msgms_map(x, x, num_scales=4)
    with pytest.raises(ValueError, match="num_scales"):
        msgms_map(x, x, num_scales=0)


def test_simple_losses() -> None:
    x, y = _pair((2, 3, 16, 16))
    manual_mse = ((x - y) ** 2).sum() / x.numel()
    assert torch.allclose(l2_loss(x, y), manual_mse, atol=1e-7)
    assert torch.allclose(msgms_loss(x, y), (1 - msgms_map(x, y)).mean())
    assert torch.allclose(ssim_loss(x, y), 1 - ssim(x, y))
    assert msgms_loss(x, x) == 0


def test_inpainting_loss_total_and_terms() -> None:
    x, y = _pair((2, 3, 32, 32))
    out = InpaintingLoss(l2=2.0, ssim=0.5, msgms=3.0)(x, y)
    assert set(out) == {"loss", "l2", "ssim", "msgms"}
    torch.testing.assert_close(out["l2"], l2_loss(x, y))
    torch.testing.assert_close(out["ssim"], ssim_loss(x, y))
    torch.testing.assert_close(out["msgms"], msgms_loss(x, y))
    torch.testing.assert_close(out["loss"], 2 * out["l2"] + 0.5 * out["ssim"] + 3 * out["msgms"])


def test_inpainting_loss_skips_zero_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("term with zero weight was computed")

    monkeypatch.setattr(losses, "ssim_loss", fail)
    x, y = _pair((1, 3, 16, 16))
    out = InpaintingLoss(ssim=0.0)(x, y)
    assert out["ssim"] == 0
    torch.testing.assert_close(out["loss"], out["l2"] + out["msgms"])


def test_inpainting_loss_gradients_finite_at_perfect_reconstruction() -> None:
    target = torch.rand(1, 3, 16, 16)
    recon = target.clone().requires_grad_(True)
    out = InpaintingLoss()(recon, target)
    out["loss"].backward()
    assert torch.isfinite(recon.grad).all()
    assert abs(out["loss"].item()) < 1e-5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"l2": -1.0}, "l2=-1.0"),
        ({"l2": 0, "ssim": 0, "msgms": 0}, "all 0"),
        ({"ssim_window": 4}, "ssim_window=4"),
        ({"msgms_scales": 0}, "msgms_scales=0"),
    ],
)
def test_inpainting_loss_config_errors(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        InpaintingLoss(**kwargs)

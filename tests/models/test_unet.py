import pytest
import torch
from torch import nn

from fader_lightning.errors import ConfigError
from fader_lightning.models.complexity import count_macs, count_parameters
from fader_lightning.models.unet import UNet, check_input_size

WIDTHS = (8, 16, 32, 64)


@pytest.fixture
def net() -> UNet:
    torch.manual_seed(0)
    return UNet(widths=WIDTHS).eval()


def test_forward_shape_and_range(net: UNet) -> None:
    x = torch.rand(2, 3, 32, 48)
    y = net(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1


def test_out_channels() -> None:
    y = UNet(in_channels=1, out_channels=2, widths=(4, 8)).eval()(torch.rand(1, 1, 8, 8))
    assert y.shape == (1, 2, 8, 8)


def test_encode_shapes(net: UNet) -> None:
    skips, bottleneck = net.encode(torch.rand(2, 3, 32, 48))
    assert [tuple(s.shape) for s in skips] == [(2, 8, 32, 48), (2, 16, 16, 24), (2, 32, 8, 12)]
    assert bottleneck.shape == (2, 64, 4, 6)
    assert net.skip_channels == [8, 16, 32]
    assert net.stride == 8
    assert UNet(widths=(4, 8, 16)).stride == 4


def test_forward_equals_decode_of_encode(net: UNet) -> None:
    x = torch.rand(2, 3, 32, 32)
    skips, bottleneck = net.encode(x)
    torch.testing.assert_close(net.decode(bottleneck, skips), net(x))


def test_zeroed_skips_change_output(net: UNet) -> None:
    x = torch.rand(2, 3, 32, 32)
    skips, bottleneck = net.encode(x)
    zeroed = net.decode(bottleneck, [torch.zeros_like(s) for s in skips])
    assert (zeroed - net(x)).abs().max() > 1e-3


@pytest.mark.parametrize("level", [0, 1, 2])
def test_each_modified_skip_is_used(net: UNet, level: int) -> None:
    x = torch.rand(1, 3, 32, 32)
    skips, bottleneck = net.encode(x)
    reference = net.decode(bottleneck, skips)
    modified = list(skips)
    modified[level] = skips[level] + torch.randn_like(skips[level])
    assert (net.decode(bottleneck, modified) - reference).abs().max() > 1e-4

    leaf = skips[level].detach().requires_grad_(True)
    grads = list(skips)
    grads[level] = leaf
    net.decode(bottleneck, grads).sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_check_input_size_message() -> None:
    net = UNet(widths=WIDTHS)
    with pytest.raises(ConfigError) as info:
        net.check_input_size(250, 250)
    assert str(info.value) == "image size 250 is not divisible by the U-Net stride 8; use a multiple of 8 such as 256"
    with pytest.raises(ConfigError, match=r"image size 250 .* stride 16"):
        check_input_size(256, 250, 16)
    net.check_input_size(256, 128)


def test_speed_switches_change_how_it_runs_not_what_it_computes(net: UNet) -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = net(x)
        fast = UNet(widths=WIDTHS).set_speed(channels_last=True, bf16=False).train(net.training)
        fast.load_state_dict(net.state_dict())  # the same weights load into either layout
        assert fast.head.weight.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(fast(x), reference, atol=1e-5)
        fast.set_speed(channels_last=True, bf16=True)
        skips, bottleneck = fast.encode(x)
        low = fast.decode(bottleneck, skips)
    assert low.dtype == torch.float32 and all(skip.dtype == torch.float32 for skip in skips)
    assert 0 < (low - reference).abs().max() < 3e-2  # bfloat16 rounding, no more
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


@pytest.mark.parametrize("widths", [(8,), (), (8, 0)])
def test_invalid_widths(widths: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match=r"^widths=\[.*\] is invalid"):
        UNet(widths=widths)


def _expected_parameters(in_ch: int, out_ch: int, widths: tuple[int, ...]) -> int:
    """3x3 convs without bias + BatchNorm (2 per channel); 2x2 transposed convs and the 1x1 head with bias."""

    def block(cin: int, cout: int) -> int:
        return cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout

    total = 0
    previous = in_ch
    for w in widths:
        total += block(previous, w)
        previous = w
    for level in range(len(widths) - 1):
        deep, skip = widths[level + 1], widths[level]
        total += deep * deep * 4 + deep
        total += block(deep + skip, skip)
    return total + widths[0] * out_ch + out_ch


def test_parameter_count_matches_formula(net: UNet) -> None:
    expected = _expected_parameters(3, 3, WIDTHS)
    assert count_parameters(net) == expected == sum(p.numel() for p in net.parameters())


def test_default_parameter_count() -> None:
    net = UNet()
    assert count_parameters(net) == _expected_parameters(3, 3, (64, 128, 256, 512))
    assert 9.0e6 < count_parameters(net) < 9.5e6


def test_count_parameters_trainable_only() -> None:
    layer = nn.Linear(4, 3)
    layer.bias.requires_grad_(False)
    assert count_parameters(layer) == 15
    assert count_parameters(layer, trainable_only=True) == 12


def test_macs_single_layers() -> None:
    assert count_macs(nn.Conv2d(3, 8, 3, padding=1), (3, 16, 16)) == 8 * 16 * 16 * 3 * 9
    assert count_macs(nn.Conv2d(4, 8, 3, stride=2, groups=2), (2, 4, 11, 11)) == 2 * 8 * 5 * 5 * 2 * 9
    assert count_macs(nn.ConvTranspose2d(4, 6, 2, stride=2), (1, 4, 5, 5)) == 4 * 25 * 6 * 4
    assert count_macs(nn.Linear(10, 7), torch.zeros(3, 10)) == 3 * 7 * 10
    bn = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))
    assert count_macs(bn, (2, 4, 4)) == 2 * 16 * 2  # normalisation is not a multiply-accumulate of a product
    # a product issued outside any layer counts too
    assert count_macs(nn.Identity(), torch.zeros(5, 6), run=lambda _, x: x @ x.T) == 5 * 5 * 6


def test_macs_unet_analytic(net: UNet) -> None:
    h = w = 32
    expected = 0
    previous, size = 3, h * w
    for i, width in enumerate(WIDTHS):
        expected += size * 9 * (previous * width + width * width)
        previous = width
        if i < len(WIDTHS) - 1:
            size //= 4
    for level in reversed(range(len(WIDTHS) - 1)):
        deep, skip = WIDTHS[level + 1], WIDTHS[level]
        size *= 4
        expected += size * deep * deep  # 2x2 stride-2 transposed conv: one input pixel per output pixel
        expected += size * 9 * ((deep + skip) * skip + skip * skip)
    expected += h * w * WIDTHS[0] * 3
    assert count_macs(net, (3, h, w)) == expected


def test_count_macs_run_callable_and_mode_restored() -> None:
    net = UNet(widths=(4, 8)).train()
    calls = []

    def run(module: nn.Module, x: torch.Tensor) -> None:
        calls.append(module.training)
        module.encode(x)

    encoder_only = count_macs(net, (3, 8, 8), run=run)
    assert calls == [False]
    assert net.training
    assert encoder_only == 64 * 9 * (3 * 4 + 4 * 4) + 16 * 9 * (4 * 8 + 8 * 8)

import pytest
import torch

from fader_lightning.errors import ConfigError
from fader_lightning.masking import FILL_MODES, Obfuscation, mosaic, obfuscate


def _block_means(images, block):
    """Reference mosaic with explicit loops over the (possibly partial) blocks."""
    out = torch.empty_like(images)
    height, width = images.shape[-2:]
    for top in range(0, height, block):
        for left in range(0, width, block):
            tile = images[..., top : top + block, left : left + block]
            out[..., top : top + block, left : left + block] = tile.mean(dim=(-2, -1), keepdim=True)
    return out


def _inputs(height=16, width=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, height, width, generator=generator)
    mask = (torch.rand(2, 1, height, width, generator=generator) > 0.5).float()
    return images, mask


@pytest.mark.parametrize(("height", "width", "block"), [(16, 16, 8), (10, 13, 4), (7, 5, 8)])
def test_mosaic_equals_block_means(height, width, block):
    images, _ = _inputs(height, width)
    assert torch.allclose(mosaic(images, block), _block_means(images, block), atol=1e-6)


@pytest.mark.parametrize(("height", "width", "block"), [(16, 16, 8), (10, 13, 4)])
def test_mosaic_fill_keeps_unmasked_and_fills_masked_with_block_mean(height, width, block):
    images, mask = _inputs(height, width)
    out = obfuscate(images, mask, fill="mosaic", block=block)
    keep = mask.expand_as(images) == 0
    assert out.shape == images.shape
    assert torch.equal(out[keep], images[keep])
    assert torch.allclose(out[~keep], _block_means(images, block)[~keep], atol=1e-6)


def test_zero_fill_zeros_masked_pixels():
    images, mask = _inputs()
    out = obfuscate(images, mask, fill="zero")
    keep = mask.expand_as(images) == 0
    assert torch.equal(out[keep], images[keep])
    assert torch.all(out[~keep] == 0)


def test_three_dimensional_mask_is_accepted():
    images, mask = _inputs()
    assert torch.equal(obfuscate(images, mask[:, 0]), obfuscate(images, mask))


def test_empty_and_full_masks():
    images, mask = _inputs()
    assert torch.equal(obfuscate(images, torch.zeros_like(mask)), images)
    assert torch.allclose(obfuscate(images, torch.ones_like(mask), block=8), _block_means(images, 8), atol=1e-6)


def test_module_matches_function_and_validates():
    images, mask = _inputs()
    module = Obfuscation(fill="mosaic", block=4)
    assert (module.fill, module.block) == ("mosaic", 4)
    assert torch.equal(module(images, mask), obfuscate(images, mask, "mosaic", 4))
    assert FILL_MODES == ("mosaic", "zero")
    with pytest.raises(ConfigError, match=r"^fill='blur' is unknown.*mosaic, zero"):
        Obfuscation(fill="blur")
    with pytest.raises(ConfigError, match=r"block"):
        Obfuscation(block=0)


def test_unknown_fill_and_bad_mask_are_refused():
    images, mask = _inputs()
    with pytest.raises(ConfigError, match=r"^fill='noise' is unknown"):
        obfuscate(images, mask, fill="noise")
    with pytest.raises(ValueError, match=r"does not fit"):
        obfuscate(images, mask[:, :, :8])
    with pytest.raises(ValueError, match=r"does not fit"):
        obfuscate(images, mask.expand(2, 2, 16, 16))

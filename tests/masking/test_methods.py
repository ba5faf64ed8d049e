import pytest
import torch

from fader_lightning.errors import ConfigError
from fader_lightning.masking import CheckerboardMask, NoMask, RandomMultiMask, SpectralResidualSaliencyMask


def _images(batch=2, height=64, width=64, seed=0):
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _assert_binary(masks, shape):
    assert masks.shape == shape
    assert masks.dtype == torch.float32
    assert torch.all((masks == 0) | (masks == 1))


def test_none_is_empty_single_pass():
    generator = NoMask()
    masks = generator(_images(3, 20, 30))
    _assert_binary(masks, (3, 1, 20, 30))
    assert masks.sum() == 0
    assert (generator.num_passes, generator.group_size, generator.deterministic) == (1, 1, True)


@pytest.mark.parametrize("phase", [0, 1])
def test_checkerboard_masks_half_in_alternating_cells(phase):
    masks = CheckerboardMask(cell_size=16, phase=phase)(_images(2, 64, 96))
    _assert_binary(masks, (2, 1, 64, 96))
    assert masks.mean().item() == 0.5
    assert masks[0, 0, 0, 0].item() == (1 - phase)
    assert masks[0, 0, 0, 15].item() == masks[0, 0, 15, 0].item() == (1 - phase)
    assert masks[0, 0, 0, 16].item() == masks[0, 0, 16, 0].item() == phase
    assert masks[0, 0, 16, 16].item() == (1 - phase)
    assert torch.equal(masks[0], masks[1])


def test_checkerboard_phases_are_complementary():
    images = _images(1, 40, 40)
    assert torch.equal(CheckerboardMask(8, 0)(images) + CheckerboardMask(8, 1)(images), torch.ones(1, 1, 40, 40))


def test_checkerboard_rejects_bad_settings():
    with pytest.raises(ConfigError, match=r"^phase"):
        CheckerboardMask(phase=2)
    with pytest.raises(ConfigError, match=r"^cell_size"):
        CheckerboardMask(cell_size=0)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (50, 37)])
def test_random_multi_groups_partition_the_image(height, width):
    generator = RandomMultiMask(cell_sizes=(2, 4, 8, 16), n=3, seed=1)
    masks = generator(_images(2, height, width))
    _assert_binary(masks, (2, 12, height, width))
    assert (generator.num_passes, generator.group_size) == (12, 3)
    assert generator.partitions and not generator.deterministic
    groups = masks.view(2, 4, 3, height, width)
    assert torch.equal(groups.sum(dim=2), torch.ones(2, 4, height, width))
    assert torch.equal(masks[0], masks[1])


def test_random_multi_masks_have_equal_cell_counts():
    masks = RandomMultiMask(cell_sizes=(2, 4, 8, 16), n=3, seed=2)(_images(1, 64, 64))[0]
    for group, size in enumerate((2, 4, 8, 16)):
        cells = (64 // size) ** 2
        counts = masks[group * 3 : group * 3 + 3].sum(dim=(-2, -1)) / size**2
        assert set(counts.tolist()) <= {float(cells // 3), float(-(-cells // 3))}, (size, counts)
        assert torch.allclose(counts / cells, torch.full((3,), 1 / 3), atol=1 / cells)


def test_random_multi_masks_are_made_of_whole_cells():
    masks = RandomMultiMask(cell_sizes=(4,), n=2, seed=3)(_images(1, 16, 16))[0]
    cells = masks.view(2, 4, 4, 4, 4)
    assert torch.all(cells.amin(dim=(2, 4)) == cells.amax(dim=(2, 4)))
    counts = masks.sum(dim=(-2, -1)) / 16
    assert counts.tolist() == [8.0, 8.0]


def test_random_multi_seed_reproduces_and_differs():
    images = _images(1, 32, 32)
    first = RandomMultiMask(seed=5)
    second = RandomMultiMask(seed=5)
    other = RandomMultiMask(seed=6)
    draws = [first(images), first(images)]
    assert torch.equal(draws[0], second(images))
    assert torch.equal(draws[1], second(images))
    assert not torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], other(images))
    first.reset_rng()
    assert torch.equal(first(images), draws[0])


def test_random_multi_rejects_bad_settings():
    with pytest.raises(ConfigError, match=r"^n"):
        RandomMultiMask(n=1)
    with pytest.raises(ConfigError, match=r"^cell_sizes"):
        RandomMultiMask(cell_sizes=())
    with pytest.raises(ConfigError, match=r"^cell_sizes"):
        RandomMultiMask(cell_sizes=(4, -2))


def test_saliency_masks_the_configured_fraction():
    masks = SpectralResidualSaliencyMask(fraction=0.3, cell_size=8)(_images(3, 128, 128))
    _assert_binary(masks, (3, 1, 128, 128))
    expected = round(0.3 * 256) / 256
    assert torch.allclose(masks.mean(dim=(1, 2, 3)), torch.full((3,), expected))


def test_saliency_pixel_level_fraction():
    masks = SpectralResidualSaliencyMask(fraction=0.25, cell_size=1)(_images(1, 40, 40))
    assert masks.sum().item() == 400


def test_saliency_mask_is_made_of_whole_cells():
    masks = SpectralResidualSaliencyMask(fraction=0.4, cell_size=8)(_images(1, 64, 64))[0, 0]
    cells = masks.view(8, 8, 8, 8)
    assert torch.all(cells.amin(dim=(1, 3)) == cells.amax(dim=(1, 3)))


@pytest.mark.parametrize(("top", "left", "size"), [(40, 72, 16), (83, 21, 13)])
def test_saliency_finds_a_planted_blob(top, left, size):
    generator = torch.Generator().manual_seed(0)
    images = 0.5 + 0.02 * torch.randn(1, 3, 128, 128, generator=generator)
    images[:, :, top : top + size, left : left + size] = 1.0
    images = images.clamp(0, 1)
    saliency = SpectralResidualSaliencyMask(fraction=0.1, cell_size=8)
    masks = saliency(images)
    assert masks[0, 0, top : top + size, left : left + size].mean().item() == 1.0
    cell_masks = masks[0, 0, ::8, ::8].bool()
    near = torch.zeros(16, 16, dtype=torch.bool)
    near[(top - 16) // 8 : -(-(top + size + 16) // 8), (left - 16) // 8 : -(-(left + size + 16) // 8)] = True
    assert cell_masks.sum() == 26
    assert cell_masks[near].sum() >= 0.8 * 26
    blob = torch.zeros(16, 16, dtype=torch.bool)
    blob[top // 8 : -(-(top + size) // 8), left // 8 : -(-(left + size) // 8)] = True
    cell_saliency = torch.nn.functional.avg_pool2d(saliency.saliency_map(images), 8)[0, 0]
    assert cell_saliency[blob].min() > 3 * cell_saliency[~near].max()


def test_saliency_rejects_bad_settings():
    with pytest.raises(ConfigError, match=r"^fraction"):
        SpectralResidualSaliencyMask(fraction=1.5)
    with pytest.raises(ConfigError, match=r"^blur_sigma"):
        SpectralResidualSaliencyMask(blur_sigma=-1)


@pytest.mark.parametrize(
    "generator",
    [NoMask(), CheckerboardMask(8), SpectralResidualSaliencyMask()],
    ids=["none", "checkerboard", "saliency"],
)
def test_deterministic_methods_repeat_their_masks(generator):
    images = _images(2, 48, 64)
    assert generator.deterministic
    assert torch.equal(generator(images), generator(images))
    assert torch.equal(generator(images[1:]), generator(images)[1:])


def test_random_multi_trains_on_one_cell_size_per_mini_batch():
    generator = RandomMultiMask(cell_sizes=(2, 4, 8, 16), n=3, seed=4)
    images = _images(2, 32, 32)
    seen = set()
    for _ in range(40):
        masks = generator.training_masks(images)
        _assert_binary(masks, (2, 3, 32, 32))
        assert torch.equal(masks.sum(1), torch.ones(2, 32, 32))  # the n masks of one size partition the image
        # the cell size drawn: the largest of the listed sizes whose cells the first mask is made of
        cell = max(size for size in generator.cell_sizes if _made_of_cells(masks[0, 0], size))
        seen.add(cell)
    assert seen == {2, 4, 8, 16}
    first, again = RandomMultiMask(seed=9), RandomMultiMask(seed=9)
    draws = [first.training_masks(images) for _ in range(3)]
    assert all(torch.equal(draw, again.training_masks(images)) for draw in draws)


def _made_of_cells(mask, size):
    cells = mask.unfold(0, size, size).unfold(1, size, size)
    return bool(torch.all(cells.amax((-1, -2)) == cells.amin((-1, -2))))

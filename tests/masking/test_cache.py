import logging

import pytest
import torch

from fader_lightning.errors import ConfigError
from fader_lightning.masking import MaskCache, RandomMultiMask, SpectralResidualSaliencyMask
from fader_lightning.masking.cache import pack_bits, unpack_bits


class CountingSaliency(SpectralResidualSaliencyMask):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def forward(self, images):
        self.calls.append(images.shape[0])
        return super().forward(images)


def _images(batch=3, seed=0):
    return torch.rand(batch, 3, 32, 48, generator=torch.Generator().manual_seed(seed))


def test_pack_roundtrip_with_odd_sizes():
    mask = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(0)) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == 9
    assert torch.equal(unpack_bits(packed, (2, 5, 7)), mask)


def test_second_call_hits_memory_and_returns_the_same_masks():
    generator = CountingSaliency()
    cache = MaskCache(generator)
    images = _images()
    first = cache(images)
    assert torch.equal(first, generator(images))
    assert (cache.hits, cache.misses) == (0, 3)
    second = cache(images)
    assert (cache.hits, cache.misses) == (3, 3)
    assert torch.equal(first, second)
    assert second.dtype == torch.float32 and second.shape == (3, 1, 32, 48)
    assert generator.calls == [3, 3]


def test_only_misses_are_computed():
    generator = CountingSaliency()
    cache = MaskCache(generator)
    images = _images(4)
    cache(images[:2])
    masks = cache(images)
    assert generator.calls == [2, 2]
    assert (cache.hits, cache.misses) == (2, 4)
    assert torch.equal(masks, generator(images))


def test_disk_cache_survives_a_new_instance(tmp_path):
    images = _images()
    reference = MaskCache(CountingSaliency(), cache_dir=tmp_path)(images)
    files = list(tmp_path.glob("*/*.pt"))
    assert len(files) == 3
    assert all(path.parent.name == path.stem[:2] for path in files)
    assert not list(tmp_path.rglob("*.tmp"))
    generator = CountingSaliency()
    fresh = MaskCache(generator, cache_dir=tmp_path)
    assert torch.equal(fresh(images), reference)
    assert (fresh.hits, fresh.misses) == (3, 0)
    assert generator.calls == []


def test_different_config_gives_different_keys(tmp_path):
    images = _images(1)
    narrow = MaskCache(SpectralResidualSaliencyMask(fraction=0.3), cache_dir=tmp_path)
    wide = MaskCache(SpectralResidualSaliencyMask(fraction=0.5), cache_dir=tmp_path)
    assert narrow.keys(images) != wide.keys(images)
    narrow(images)
    masks = wide(images)
    assert (wide.hits, wide.misses) == (0, 1)
    assert masks.mean().item() == pytest.approx(0.5, abs=0.05)


def test_keys_depend_on_pixels_and_shape():
    cache = MaskCache(SpectralResidualSaliencyMask())
    images = _images(2)
    keys = cache.keys(images)
    assert keys[0] != keys[1]
    assert cache.keys(images.clone()) == keys
    assert cache.keys(images.double()) == keys
    assert cache.keys(images[..., :32])[0] != keys[0]


def test_corrupt_disk_entry_is_recomputed(tmp_path, caplog):
    images = _images(1)
    cache = MaskCache(SpectralResidualSaliencyMask(), cache_dir=tmp_path)
    reference = cache(images)
    path = cache.path_for(cache.keys(images)[0])
    path.write_bytes(b"not a tensor file")
    fresh = MaskCache(SpectralResidualSaliencyMask(), cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        masks = fresh(images)
    assert torch.equal(masks, reference)
    assert (fresh.hits, fresh.misses) == (0, 1)
    assert "unreadable mask cache file" in caplog.text
    assert MaskCache(SpectralResidualSaliencyMask(), cache_dir=tmp_path)(images).equal(reference)


def test_memory_lru_is_bounded():
    cache = MaskCache(SpectralResidualSaliencyMask(), max_memory_items=2)
    images = _images(3)
    cache(images)
    cache(images[2:])
    assert (cache.hits, cache.misses) == (1, 3)
    cache(images[:1])
    assert (cache.hits, cache.misses) == (1, 4)
    with pytest.raises(ConfigError, match=r"max_memory_items"):
        MaskCache(SpectralResidualSaliencyMask(), max_memory_items=-1)


def test_non_deterministic_generators_are_not_cached(tmp_path):
    cache = MaskCache(RandomMultiMask(seed=4), cache_dir=tmp_path)
    reference = RandomMultiMask(seed=4)
    images = _images(2)
    for _ in range(2):
        assert torch.equal(cache(images), reference(images))
    assert (cache.hits, cache.misses) == (0, 0)
    assert not list(tmp_path.iterdir())
    assert (cache.num_passes, cache.group_size, cache.partitions, cache.deterministic) == (12, 3, True, False)


def test_unwritable_cache_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"cannot write the mask cache file"):
        MaskCache(SpectralResidualSaliencyMask(), cache_dir=blocker)(_images(1))

import logging
import math
import time

import pytest
import torch

from fader_lightning.errors import ConfigError, DataError
from fader_lightning.metrics import AnomalyScoreStore, aupro, f1_max, image_auroc, pixel_auroc

PIXEL_KEYS = {
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "image_f1max_oracle",
    "pixel_f1max_oracle",
    "image_threshold_oracle",
    "pixel_threshold_oracle",
}


def make_batch(seed: int, batch: int = 8, size: int = 32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(batch, size, size, dtype=torch.bool)
    labels = torch.arange(batch) % 2
    for i in range(batch):
        if labels[i]:
            r, c = torch.randint(0, size - 8, (2,), generator=g).tolist()
            h, w = torch.randint(2, 8, (2,), generator=g).tolist()
            masks[i, r : r + h, c : c + w] = True
    maps = torch.rand(batch, size, size, generator=g) * 2.0 + masks * 1.5
    scores = maps.amax(dim=(1, 2)) + torch.rand(batch, generator=g)
    return scores, labels, maps, masks


def fill(store: AnomalyScoreStore, batches: int = 3, channel: bool = False) -> tuple[torch.Tensor, ...]:
    parts = [make_batch(seed) for seed in range(batches)]
    for scores, labels, maps, masks in parts:
        if channel:
            maps, masks = maps[:, None], masks[:, None].to(torch.uint8)
        store.update(scores, labels, maps, masks)
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))


def test_compute_matches_functional_metrics():
    store = AnomalyScoreStore()
    scores, labels, maps, masks = fill(store)
    result = store.compute()
    assert set(result) == PIXEL_KEYS
    assert result["image_auroc"] == pytest.approx(image_auroc(scores, labels), abs=1e-3)
    assert result["pixel_auroc"] == pytest.approx(pixel_auroc(maps, masks), abs=1e-3)
    assert result["aupro"] == pytest.approx(aupro(maps, masks, fpr_limit=0.3), abs=1e-3)
    assert result["image_f1max_oracle"] == pytest.approx(f1_max(scores, labels)[0], abs=1e-3)
    assert result["pixel_f1max_oracle"] == pytest.approx(f1_max(maps, masks)[0], abs=1e-3)
    assert result["pixel_threshold_oracle"] == pytest.approx(f1_max(maps, masks)[1], abs=1e-2)


def test_channel_dimension_and_uint8_masks_are_accepted():
    flat, channel = AnomalyScoreStore(), AnomalyScoreStore()
    fill(flat)
    fill(channel, channel=True)
    assert channel.compute() == flat.compute()


def test_image_only_store_has_no_pixel_keys():
    store = AnomalyScoreStore()
    scores, labels, _, _ = make_batch(0)
    store.update(scores, labels)
    assert set(store.compute()) == {"image_auroc", "image_f1max_oracle", "image_threshold_oracle"}


def test_float16_maps_take_half_the_memory_of_float32():
    half, full = AnomalyScoreStore(map_dtype="float16"), AnomalyScoreStore(map_dtype="float32")
    _, _, maps, _ = fill(half)
    fill(full)
    n, pixels = maps.shape[0], maps[0].numel()
    fixed = n * (4 + 1) + n * pixels  # float32 scores, bool labels, bool masks
    assert half.nbytes == fixed + 2 * n * pixels
    assert full.nbytes - fixed == 2 * (half.nbytes - fixed)


def test_binned_mode_is_compact_and_close_to_exact():
    exact = AnomalyScoreStore()
    coarse = AnomalyScoreStore(mode="binned", map_range=(0.0, 3.5), num_bins=256)
    fine = AnomalyScoreStore(mode="binned", map_range=(0.0, 3.5), num_bins=65536)
    _, _, maps, _ = fill(exact)
    fill(coarse)
    fill(fine)
    n, pixels = maps.shape[0], maps[0].numel()
    assert coarse.nbytes == n * (4 + 1) + n * pixels * 2  # uint8 maps + bool masks
    assert fine.nbytes == n * (4 + 1) + n * pixels * 3  # uint16 maps + bool masks
    reference, result_coarse, result_fine = exact.compute(), coarse.compute(), fine.compute()
    # F1-max is flat near its peak, so its argmax threshold may jump a few bins; compare the F1 values only.
    for key in PIXEL_KEYS - {"image_threshold_oracle", "pixel_threshold_oracle"}:
        assert result_fine[key] == pytest.approx(reference[key], abs=1e-3), key
        assert result_coarse[key] == pytest.approx(reference[key], abs=2e-2), key


def test_binned_mode_warns_once_about_clipping(caplog):
    store = AnomalyScoreStore(mode="binned", map_range=(0.0, 1.0))
    with caplog.at_level(logging.WARNING):
        fill(store, batches=2)
    assert sum("outside map_range" in r.message for r in caplog.records) == 1


def test_one_class_gives_nan():
    store = AnomalyScoreStore()
    store.update(torch.rand(4), torch.zeros(4), torch.rand(4, 8, 8), torch.zeros(4, 8, 8))
    result = store.compute()
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1max_oracle", "pixel_f1max_oracle"):
        assert math.isnan(result[key]), key


def test_len_and_reset():
    store = AnomalyScoreStore()
    fill(store, batches=2)
    assert len(store) == 16
    store.reset()
    assert len(store) == 0
    assert store.nbytes == 0
    with pytest.raises(DataError, match="no samples"):
        store.compute()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "fast"}, "mode='fast'.*exact, binned"),
        ({"map_dtype": "int8"}, "map_dtype"),
        ({"mode": "binned"}, "map_range"),
        ({"mode": "binned", "map_range": (1.0, 1.0)}, "map_range"),
        ({"mode": "binned", "map_range": (0.0, 1.0), "num_bins": 1}, "num_bins"),
    ],
)
def test_bad_configuration_raises_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AnomalyScoreStore(**kwargs)


def test_inconsistent_updates_raise_data_error():
    store = AnomalyScoreStore()
    scores, labels, maps, masks = make_batch(0)
    with pytest.raises(DataError, match="together"):
        store.update(scores, labels, maps, None)
    with pytest.raises(DataError, match="labels"):
        store.update(scores, labels[:-1])
    with pytest.raises(DataError, match="maps"):
        store.update(scores[:-1], labels[:-1], maps, masks[:-1])
    store.update(scores, labels, maps, masks)
    with pytest.raises(DataError, match="every batch"):
        store.update(scores, labels)
    with pytest.raises(DataError, match="map size"):
        store.update(scores, labels, maps[:, :16], masks[:, :16])
    with pytest.raises(DataError, match="float16"):
        store.update(scores, labels, maps * 1e6, masks)


def test_large_pixel_count_computes_quickly():
    g = torch.Generator().manual_seed(0)
    store = AnomalyScoreStore()
    masks = torch.zeros(83, 256, 256, dtype=torch.bool)
    masks[1::2, 100:140, 60:90] = True
    for start in range(0, 83, 16):
        chunk = slice(start, start + 16)
        maps = torch.randn(masks[chunk].shape, generator=g) + masks[chunk]
        labels = masks[chunk].flatten(1).any(1)
        store.update(maps.flatten(1).amax(1), labels, maps, masks[chunk])
    begin = time.perf_counter()
    result = store.compute()
    assert time.perf_counter() - begin < 15.0
    assert 0.5 < result["pixel_auroc"] < 1.0
    assert 0.0 < result["aupro"] < 1.0

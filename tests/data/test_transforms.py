"""Downscaling without aliasing: a fine periodic texture stays a flat grey, not a moiré."""

import numpy as np
import pytest

from conftest import datamodule
from fader_lightning.data.transforms import build_transform
from fader_lightning.errors import ConfigError


def _stripes(side: int, period: int) -> np.ndarray:
    """Vertical stripes, one bright column in every ``period``: a texture finer than the target grid."""
    row = np.where(np.arange(side) % period == 0, 255, 0).astype(np.uint8)
    return np.repeat(np.tile(row, (side, 1))[..., None], 3, axis=-1)


def test_area_resize_is_the_block_mean() -> None:
    image = _stripes(576, 3)
    out = build_transform(64)(image=image, mask=np.zeros((576, 576), dtype=np.uint8))["image"]
    expected = image.reshape(64, 9, 64, 9, 3).mean(axis=(1, 3))  # an independent block average (factor 9)
    assert np.abs(out.astype(float) - expected).max() <= 1.0


def test_downscaling_a_fine_texture_gives_grey_not_moire() -> None:
    image, mask = _stripes(900, 3), np.zeros((900, 900), dtype=np.uint8)  # 900 -> 64: MVTec-like, not integer
    mask[100:200, 300:420] = 1
    area = build_transform(64)(image=image, mask=mask)
    linear = build_transform(64, interpolation="linear")(image=image, mask=mask)
    assert abs(area["image"].mean() - image.mean()) < 1 and area["image"].std() < 10  # close to flat grey
    assert linear["image"].std() > 5 * area["image"].std()  # bilinear samples a beat of the stripes: moiré
    for out in (area, linear):
        assert set(np.unique(out["mask"])) == {0, 1}  # masks stay binary (nearest)


def test_unknown_interpolation_names_the_key(synthetic_mvtec) -> None:
    with pytest.raises(ConfigError, match=r"data.interpolation='bicubic' is unknown; use one of area, linear, cubic"):
        datamodule("mvtec", synthetic_mvtec, "synth_object", image_size=256, interpolation="bicubic")

"""Images and masks read as a person means them, and headers that would exhaust memory refused."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fader_lightning.data.image_io import MAX_PIXELS_ENV, decode_info, read_image, read_mask
from fader_lightning.errors import DataError


def _defect(size: int = 32) -> np.ndarray:
    truth = np.zeros((size, size), dtype=bool)
    truth[8:20, 10:24] = True
    return truth


def test_palette_mask_is_read_by_colour_not_index(tmp_path: Path) -> None:
    truth = _defect()
    # index 0 is the defect's red, index 1 the black background: reading indices would invert the mask
    image = Image.fromarray(np.where(truth, 0, 1).astype(np.uint8), mode="P")
    image.putpalette([255, 0, 0, 0, 0, 0] + [0, 0, 0] * 254)
    image.save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "P"
    assert np.array_equal(read_mask(tmp_path / "m.png"), truth.astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_mask_in_the_alpha_channel(tmp_path: Path, mode: str) -> None:
    truth = _defect()
    channels = 3 if mode == "RGBA" else 1
    colour = np.zeros((32, 32, channels), dtype=np.uint8)  # constant colour: the defect lives in alpha only
    alpha = (truth * 255).astype(np.uint8)[..., None]
    Image.fromarray(np.concatenate([colour, alpha], axis=-1), mode=mode).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), truth.astype(np.uint8))


def test_opaque_rgba_mask_is_read_from_its_colour(tmp_path: Path) -> None:
    truth = _defect()
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[truth, :3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), truth.astype(np.uint8))


def test_jpeg_mask_is_thresholded_at_mid_grey(tmp_path: Path) -> None:
    truth = _defect(64)
    Image.fromarray((truth * 255).astype(np.uint8)).save(tmp_path / "m.jpg", quality=60)
    raw = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert (raw > 0).sum() > truth.sum()  # compression smears: "> 0" would grow the defect
    mask = read_mask(tmp_path / "m.jpg").astype(bool)
    assert np.array_equal(mask, raw >= 128)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.95
    assert decode_info(tmp_path / "m.jpg").lossy and not decode_info(_png(tmp_path, truth)).lossy


def _png(tmp_path: Path, truth: np.ndarray) -> Path:
    path = tmp_path / "m.png"
    Image.fromarray((truth * 255).astype(np.uint8)).save(path)
    return path


def test_label_valued_png_mask_keeps_every_label(tmp_path: Path) -> None:
    labels = np.zeros((16, 16), dtype=np.uint8)
    labels[2:5, 2:5], labels[9:12, 9:12] = 1, 2  # VisA-style: one value per defect region
    Image.fromarray(labels).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), (labels > 0).astype(np.uint8))


@pytest.mark.parametrize(("top", "expected_scale"), [(1.0, 255.0), (255.0, 1.0), (60000.0, 255.0 / 65535.0)])
def test_float_images_are_scaled_from_their_range(tmp_path: Path, top: float, expected_scale: float) -> None:
    values = np.linspace(0.0, top, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    image = read_image(tmp_path / "f.tif")
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(image[..., 0], (values.astype(np.float64) * expected_scale).round().clip(0, 255))


def test_float_image_outside_known_ranges_uses_its_min_and_max(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    values = np.linspace(-3.0, 5.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    image = read_image(tmp_path / "f.tif")[..., 0]
    assert image.min() == 0 and image.max() == 255
    assert "f.tif" in caplog.text and "own minimum and maximum" in caplog.text


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height but which holds almost no data (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    assert path.stat().st_size < 200
    for read in (read_image, read_mask, decode_info):
        with pytest.raises(DataError) as err:
            read(path)
        assert str(path) in str(err.value) and MAX_PIXELS_ENV in str(err.value)


def test_pixel_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "i.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "500")
    with pytest.raises(DataError, match=r"30x20 = 600 pixels, above the limit of 500") as err:
        read_image(path)
    assert str(path) in str(err.value)
    monkeypatch.setenv(MAX_PIXELS_ENV, "600")
    assert read_image(path).shape == (20, 30, 3)

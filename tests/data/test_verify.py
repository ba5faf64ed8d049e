"""Every file decoded before work, each at most once per (size, mtime), and what is odd reported once."""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import datamodule
from fader_lightning.data import make_mvtec_samples, validate_samples, verify
from fader_lightning.errors import DataError


@pytest.fixture
def category(synthetic_mvtec: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(synthetic_mvtec / "synth_object", root / "synth_object")
    return root


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files fully decoded from now on (the in-process memory starts empty)."""
    seen: list[Path] = []
    real = verify.decode_info

    def counting(path: Path) -> verify.FileInfo:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(verify, "decode_info", counting)
    monkeypatch.setattr(verify, "_CHECKED", {})
    return seen


def test_every_file_is_decoded_once_per_size_and_mtime(category: Path, tmp_path: Path, decodes: list[Path]) -> None:
    samples = make_mvtec_samples(category, "synth_object")
    files = {p for s in samples for p in (s.image_path, s.mask_path) if p is not None}
    cache = tmp_path / "checked.json"
    validate_samples(samples, cache_file=cache)
    assert set(decodes) == files and len(decodes) == len(files)
    validate_samples(samples, cache_file=cache)
    assert len(decodes) == len(files)  # remembered in this process
    verify._CHECKED.clear()
    validate_samples(samples, cache_file=cache)
    assert len(decodes) == len(files)  # remembered across processes, through the cache file
    touched = samples[0].image_path
    os.utime(touched, ns=(0, 10**9))
    validate_samples(samples, cache_file=cache)
    assert decodes[len(files) :] == [touched]  # a changed file is decoded again


def test_truncated_mask_fails_at_setup_naming_it(category: Path) -> None:
    mask = next((category / "synth_object/ground_truth").rglob("*.png"))
    mask.write_bytes(mask.read_bytes()[:60])
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        datamodule("mvtec", category, "synth_object", image_size=32).setup()
    assert str(mask) in str(err.value)


def test_missing_test_folder_is_an_error(category: Path) -> None:
    shutil.rmtree(category / "synth_object/test")
    with pytest.raises(DataError, match="test does not exist") as err:
        make_mvtec_samples(category, "synth_object")
    assert str(category / "synth_object/test") in str(err.value)


def test_empty_test_split_is_an_error(category: Path) -> None:
    for folder in (category / "synth_object/test").iterdir():
        shutil.rmtree(folder)
    with pytest.raises(DataError, match="has no test images"):
        datamodule("mvtec", category, "synth_object", image_size=32).setup()


def test_test_split_without_anomalies_warns_once(category: Path, caplog: pytest.LogCaptureFixture) -> None:
    for folder in (category / "synth_object/test").iterdir():
        if folder.name != "good":
            shutil.rmtree(folder)
    with caplog.at_level(logging.WARNING):
        datamodule("mvtec", category, "synth_object", image_size=32).setup()
    warnings = [r.message for r in caplog.records if "no anomalous image" in r.message]
    assert len(warnings) == 1 and "null" in warnings[0]


def test_mixed_sizes_and_jpeg_masks_are_reported_once(category: Path, caplog: pytest.LogCaptureFixture) -> None:
    images = sorted((category / "synth_object/test/good").glob("*.png"))
    for path in images[:2]:
        Image.open(path).resize((96, 64)).save(path)
    masks = sorted((category / "synth_object/ground_truth").rglob("*_mask.png"))
    for mask in masks:
        Image.open(mask).convert("L").save(mask.with_suffix(".jpg"), quality=90)
        mask.unlink()
    with caplog.at_level(logging.WARNING):
        dm = datamodule("mvtec", category, "synth_object", image_size=32)
        dm.setup()
    mixed = [r.message for r in caplog.records if "mixes" in r.message]
    assert len(mixed) == 1
    assert "test split mixes 2 image sizes" in mixed[0] and "96x64: 2" in mixed[0] and "1.5" in mixed[0]
    jpeg = [r.message for r in caplog.records if "are JPEG" in r.message]
    assert len(jpeg) == 1 and jpeg[0].startswith(f"{len(masks)} masks")
    batch = next(iter(dm.test_dataloader()))
    assert set(np.unique(batch.mask.numpy()).tolist()) == {0.0, 1.0}


def test_foreign_or_corrupt_cache_entries_are_ignored(category: Path, tmp_path: Path, decodes: list[Path]) -> None:
    samples = make_mvtec_samples(category, "synth_object")
    cache = tmp_path / "checked.json"
    validate_samples(samples, cache_file=cache)
    first = len(decodes)
    text = cache.read_text()
    cache.write_text(text.replace('"lossy"', '"other"', 1))  # one entry of another shape
    verify._CHECKED.clear()
    validate_samples(samples, cache_file=cache)
    assert len(decodes) == first + 1  # only that file is decoded again
    cache.write_text("{not json")
    verify._CHECKED.clear()
    validate_samples(samples, cache_file=cache)
    assert len(decodes) == 2 * first + 1

"""Every file decoded before work, each at most once per content, and what is odd reported once."""

import json
import logging
import os
import shutil
import time
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
    monkeypatch.setattr(verify, "_DIGESTS", {})
    return seen


def _same_size_new_pixels(image: Path) -> None:
    """Give an image other pixels in a file of the same size, then restore its times, as ``touch -r`` would."""
    before = image.stat()
    with Image.open(image) as original:
        pixels = np.asarray(original.convert("RGB"))
    Image.fromarray(pixels).save(image, compress_level=0)  # stored, not deflated: the size depends on the shape only
    size = image.stat().st_size
    Image.fromarray(255 - pixels).save(image, compress_level=0)
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert image.stat().st_size == size and image.stat().st_mtime_ns == before.st_mtime_ns


def test_every_file_is_decoded_once_per_content(category: Path, tmp_path: Path, decodes: list[Path]) -> None:
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
    assert len(decodes) == len(files)  # the same bytes with another mtime are known
    changed = samples[1].image_path
    _same_size_new_pixels(changed)
    verify._CHECKED.clear()
    validate_samples(samples, cache_file=cache)
    assert decodes[len(files) :] == [changed]  # new bytes are decoded again, whatever the size and mtime say


@pytest.mark.parametrize("damage", ["truncated", "same size"])
def test_a_damaged_file_with_a_forged_cache_entry_is_checked_again_and_refused(
    category: Path, tmp_path: Path, decodes: list[Path], damage: str
) -> None:
    samples = make_mvtec_samples(category, "synth_object")
    cache = tmp_path / "checked.json"
    validate_samples(samples, cache_file=cache)
    image = samples[0].image_path
    before = image.stat()
    content = image.read_bytes()
    if damage == "truncated":
        image.write_bytes(content[: len(content) // 2])
    else:  # the compressed pixels zeroed past their first bytes (IDAT data starts at 41): the size stays
        image.write_bytes(content[:45] + bytes(len(content) - 57) + content[-12:])
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    stat = image.stat()
    entries = json.loads(cache.read_text())
    verdict = next(iter(entries.values()))
    entries[f"{image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"] = verdict  # what the size-and-mtime key read
    cache.write_text(json.dumps(entries))
    verify._CHECKED.clear()
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        validate_samples(samples, cache_file=cache)
    assert str(image) in str(err.value)
    assert decodes.count(image) == 2  # checked again, not trusted


def test_a_file_digest_is_remembered_until_the_file_changes(
    category: Path, decodes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    image = next((category / "synth_object/train/good").glob("*.png"))
    first = verify.file_digest(image)
    assert not verify._DIGESTS  # a file changed a moment ago is hashed again on every call
    monkeypatch.setattr(verify, "RACY_NS", 0)
    assert verify.file_digest(image) == first and list(verify._DIGESTS.values()) == [first]
    time.sleep(0.05)  # past the granularity of the kernel's file timestamps
    _same_size_new_pixels(image)
    assert verify.file_digest(image) != first  # a restored mtime cannot bring back the remembered digest


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

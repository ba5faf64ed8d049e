import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import datamodule
from fader_lightning.data import datamodule as datamodule_module
from fader_lightning.data import dataset as dataset_module


def _tree(synthetic_mvtec: Path, tmp_path: Path) -> Path:
    """A private copy of the generated tree, so a test may change its files."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_mvtec, root)
    return root


def _test_items(root: Path, cache: Path | None, **settings) -> list[dict]:
    dm = datamodule("mvtec", root, "synth_object", image_size=32, image_cache=str(cache) if cache else None, **settings)
    dm.setup()
    data = dm.test_dataloader().dataset
    return [data[i] for i in range(len(data))]


def _sample_count(root: Path) -> int:
    """Training and test images of the category (setup caches both)."""
    return len(list((root / "synth_object" / "train").rglob("*.png"))) + len(
        list((root / "synth_object" / "test").rglob("*.png"))
    )


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.npy"))


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> np.ndarray:
        raise AssertionError(f"{path} was decoded although it is cached")

    monkeypatch.setattr(dataset_module, "read_image", refuse)
    monkeypatch.setattr(dataset_module, "read_mask", refuse)


def test_a_second_job_reads_what_the_first_decoded_without_decoding(
    synthetic_mvtec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    decoded = _test_items(synthetic_mvtec, None)
    first = _test_items(synthetic_mvtec, cache)
    assert len(_entries(cache)) == _sample_count(synthetic_mvtec)  # setup cached every image, on the job's threads
    _forbid_decoding(monkeypatch)
    second = _test_items(synthetic_mvtec, cache)
    for plain, stored, read in zip(decoded, first, second, strict=True):
        assert plain["path"] == read["path"]
        assert torch.equal(plain["image"], read["image"]) and torch.equal(stored["image"], read["image"])
        assert torch.equal(plain["mask"], read["mask"]) and read["mask"].unique().tolist() in ([0.0], [0.0, 1.0])
    assert any(item["mask"].sum() > 0 for item in second)


def test_the_entry_changes_with_the_file_the_size_and_the_interpolation(synthetic_mvtec: Path, tmp_path: Path) -> None:
    root, cache = _tree(synthetic_mvtec, tmp_path), tmp_path / "cache"
    _test_items(root, cache)
    count = len(_entries(cache))
    assert count == _sample_count(root)
    _test_items(root, cache, interpolation="linear")
    assert len(_entries(cache)) == 2 * count
    dm = datamodule("mvtec", root, "synth_object", image_size=24, image_cache=str(cache))
    dm.setup()
    assert dm.test_dataloader().dataset[0]["image"].shape == (3, 24, 24)
    assert len(_entries(cache)) == 3 * count

    first = next(p for p in sorted((root / "synth_object" / "test").rglob("*.png")) if "good" not in str(p))
    before = {item["path"]: item for item in _test_items(root, cache)}[str(first)]
    Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)).save(first)  # the file is replaced on disk
    os.utime(first, ns=(1, 1))
    after = {item["path"]: item for item in _test_items(root, cache)}[str(first)]
    assert not torch.equal(before["image"], after["image"])
    assert torch.allclose(after["image"], torch.full_like(after["image"], 200 / 255))


def test_new_pixels_with_the_old_size_and_mtime_are_read_again(synthetic_mvtec: Path, tmp_path: Path) -> None:
    root, cache = _tree(synthetic_mvtec, tmp_path), tmp_path / "cache"
    image = sorted((root / "synth_object" / "test" / "good").glob("*.png"))[0]
    with Image.open(image) as original:
        pixels = np.asarray(original.convert("RGB"))
    Image.fromarray(pixels).save(image, compress_level=0)  # stored, not deflated: the size depends on the shape only
    old = image.stat()
    before = {item["path"]: item for item in _test_items(root, cache)}[str(image)]
    Image.fromarray(255 - pixels).save(image, compress_level=0)  # edited in place...
    os.utime(image, ns=(old.st_atime_ns, old.st_mtime_ns))  # ...and its mtime restored, as touch -r or cp -p do
    assert (image.stat().st_size, image.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    after = {item["path"]: item for item in _test_items(root, cache)}[str(image)]
    plain = {item["path"]: item for item in _test_items(root, None)}[str(image)]
    assert torch.equal(after["image"], plain["image"]) and not torch.equal(after["image"], before["image"])
    assert len(_entries(cache)) == _sample_count(root) + 1  # a new entry beside the old image's


def _filled(root: Path, tmp_path: Path) -> tuple[Path, list[dict], Any]:
    """A cache filled by a test pass, the items it served, and a set-up datamodule reading it."""
    cache = tmp_path / "cache"
    reference = _test_items(root, cache)
    dm = datamodule("mvtec", root, "synth_object", image_size=32, image_cache=str(cache))
    dm.setup()
    return cache, reference, dm


def test_an_entry_overwritten_with_another_is_detected_reported_once_and_rewritten(
    synthetic_mvtec: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache, reference, dm = _filled(synthetic_mvtec, tmp_path)
    victim, other = dm.test_samples[:2]
    entry, foreign = dm.disk_cache.entry(victim), dm.disk_cache.entry(other)
    assert not torch.equal(reference[0]["image"], reference[1]["image"])  # serving the other would show
    shutil.copyfile(foreign, entry)  # a well-formed entry, of another image
    with caplog.at_level(logging.WARNING):
        again = _test_items(synthetic_mvtec, cache)
    assert [r.getMessage() for r in caplog.records if "image cache entry" in r.getMessage()] == [
        f"image cache entry {entry} is damaged or holds another image (its check fails); reading "
        f"{victim.image_path} again and rewriting the entry"
    ]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(reference, again, strict=True))
    assert entry.read_bytes() != foreign.read_bytes()  # rewritten with the right pixels
    assert dm.disk_cache.load(victim) is not None
    shutil.copyfile(foreign, entry)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert dm.disk_cache.load(victim) is None and dm.disk_cache.load(victim) is None
    assert caplog.text.count(str(entry)) == 1  # reported once per entry


def test_a_damaged_entry_is_read_again_and_rewritten(
    synthetic_mvtec: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache, reference, dm = _filled(synthetic_mvtec, tmp_path)
    damaged = dm.disk_cache.entry(dm.test_samples[0])
    damaged.write_bytes(damaged.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again = _test_items(synthetic_mvtec, cache)
    assert f"image cache entry {damaged} is damaged" in caplog.text
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(reference, again, strict=True))
    assert damaged.stat().st_size > 100


def test_an_unwritable_cache_is_reported_once_and_the_job_goes_on(
    synthetic_mvtec: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        items = _test_items(synthetic_mvtec, blocker / "images")
    assert caplog.text.count("cannot be written") == 1 and "data.image_cache=" in caplog.text
    plain = _test_items(synthetic_mvtec, None)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(items, plain, strict=True))


def test_setup_fills_the_cache_on_threads_without_keeping_the_arrays(
    synthetic_mvtec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results: list[object] = []

    class Recording(datamodule_module.ThreadPoolExecutor):
        def map(self, fn, *iterables, **kwargs):
            out = list(super().map(fn, *iterables, **kwargs))
            results.extend(out)
            return iter(out)

    monkeypatch.setattr(datamodule_module, "ThreadPoolExecutor", Recording)
    _test_items(synthetic_mvtec, tmp_path / "cache")
    assert len(results) == _sample_count(synthetic_mvtec)  # every image went through the pool
    assert all(result is None for result in results)  # and none of their arrays came back to be held

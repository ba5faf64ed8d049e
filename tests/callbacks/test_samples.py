"""Test-sample collection (evenly spread, or the worst-scored normal and anomalous images) and its overlays."""

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from conftest import EAR_SETTINGS
from fader_lightning.callbacks import overlays
from fader_lightning.callbacks.samples import TestSampleCollector
from fader_lightning.data.dataset import Batch
from fader_lightning.errors import ConfigError
from fader_lightning.models import EARModule
from fader_lightning.utils.background import background_writes


def run_pass(
    collector: TestSampleCollector, scores: list[float], labels: list[int], batch_size: int = 3
) -> tuple[SimpleNamespace, EARModule]:
    module = EARModule(**EAR_SETTINGS, unet={"widths": [8, 16]}, masking={"name": "checkerboard", "cell_size": 8})
    trainer = SimpleNamespace(test_dataloaders=[SimpleNamespace(dataset=[0] * len(scores))], is_global_zero=True)
    collector.on_test_epoch_start(trainer, module)
    for start in range(0, len(scores), batch_size):
        index = list(range(start, min(start + batch_size, len(scores))))
        images = torch.rand(len(index), 3, 16, 16)
        batch = Batch(images, torch.zeros(len(index), 1, 16, 16), torch.tensor([labels[i] for i in index]),
                      ["good" if labels[i] == 0 else "crack" for i in index], [f"{i}.png" for i in index],
                      ["cat"] * len(index))  # fmt: skip
        with torch.no_grad():
            outputs = module.eval().infer(images)
        outputs["score"] = torch.tensor([scores[i] for i in index])
        collector.on_test_batch_end(trainer, module, outputs, batch, start // batch_size)
    collector.on_test_epoch_end(trainer, module)
    return trainer, module


def test_worst_keeps_the_highest_normals_and_the_lowest_anomalous() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(20, generator=generator).tolist()
    labels = [i % 2 for i in range(20)]
    collector = TestSampleCollector(5, selection="worst")
    run_pass(collector, scores, labels)
    normals = sorted((s for s, label in zip(scores, labels, strict=True) if label == 0), reverse=True)[:3]
    anomalous = sorted(s for s, label in zip(scores, labels, strict=True) if label == 1)[:2]
    assert [sample["score"] for sample in collector.picked] == [*normals, *anomalous]
    # I' hides the checkerboard's cells of the image (mosaic fill), and Î is the reconstruction
    sample = collector.picked[0]
    assert sample["masked_input"].shape == (3, 16, 16) and sample["recon"].shape == (3, 16, 16)
    assert not torch.equal(sample["masked_input"], sample["image"])


def test_spread_keeps_evenly_spaced_samples() -> None:
    collector = TestSampleCollector(3)
    run_pass(collector, [float(i) for i in range(10)], [0] * 10)
    assert [sample["path"] for sample in collector.picked] == ["0.png", "4.png", "9.png"]  # round(i * 9 / 2)


def test_unknown_selection_is_refused() -> None:
    with pytest.raises(ConfigError, match="spread, worst"):
        TestSampleCollector(3, selection="best")


def test_overlays_are_drawn_on_the_job_s_writer_and_written_before_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn_on: list[str] = []
    encode = overlays.encode_png
    monkeypatch.setattr(overlays, "encode_png", lambda panel: drawn_on.append(threading.current_thread().name) or
                        encode(panel))  # fmt: skip
    writer = overlays.OverlayWriter(tmp_path, 3, "spread")
    trainer, module = run_pass(writer, [float(i) for i in range(10)], [i % 2 for i in range(10)])
    with background_writes():
        writer.on_test_end(trainer, module)
        assert writer.picked == []  # handed over: the next test pass starts clean
    written = sorted((tmp_path / "overlays" / "ear").glob("*.png"))
    assert [path.name for path in written] == ["00__0.png", "01__4.png", "02__9.png"]  # <index>_<folder>_<stem>
    assert len(drawn_on) == 3 and all(name.startswith("fader-writes") for name in drawn_on)
    assert Image.open(written[0]).size[1] > 16  # the panel: image row above its caption

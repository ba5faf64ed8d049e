"""Each newer dataset's reader, end to end: a model trained and tested on a generated stand-in of its layout."""

from pathlib import Path

import pytest

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.jobs.train import train


@pytest.mark.parametrize(("layout", "held_out", "test_images"), [("mvtec_ad2", 2, 12), ("mvtec3d", 2, 12),
                                                                 ("realiad", 2, 10)])  # fmt: skip
def test_a_model_learns_on_each_generated_layout(tmp_path: Path, layout: str, held_out: int, test_images: int) -> None:
    cfg = compose_train_cfg(
        tmp_path,
        ["data=synthetic", f"data.layout={layout}", "data.image_size=48", "data.size=48", "data.n_train=16",
         "data.n_test_good=4", "data.n_test_defect=4", TINY_UNET, "trainer.max_epochs=5", "logger=none",
         "callbacks.overlays.num_samples=0"],
    )  # fmt: skip
    entry = train(cfg)["ear"]
    # MVTec AD 2 and MVTec 3D-AD calibrate on their own validation/good (auto: official), Real-IAD holds out 10 %
    assert entry["calibration"]["split"] == "held_out" and entry["calibration"]["normal_images"] == held_out
    assert entry["test_images"] == test_images
    assert entry["metrics"]["image_auroc"] > 0.75 and entry["metrics"]["pixel_auroc"] > 0.75

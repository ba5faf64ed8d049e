"""The default FADeR with a real single mask, on generated data where some defects lie outside M: it must find them.

The default learns the synthetic-defect target, may attenuate visible patches only and calibrates tau on held-out
normals (docs/FADER_DESIGN.md).
"""

from pathlib import Path

import pytest

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.jobs.train import train

# checkerboard cells of 16 px at 64 px hide half of the image; the generated spots and scratches fall on both halves
RUN = ["data.category=synth_object", "data.image_size=64", "data.n_train=32", "data.n_test_defect=8", TINY_UNET,
       "masking=checkerboard", "masking.cell_size=16", "trainer.max_epochs=10", "model.optimizer.lr=1e-3",
       "data.val_policy=from_train", "data.val_ratio=0.25", "logger=none", "trainer.enable_progress_bar=false",
       "callbacks.overlays.num_samples=0", "stage=both", "fader.trainer.max_epochs=20"]  # fmt: skip


@pytest.fixture(scope="module")
def diagnostics(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp: Path = tmp_path_factory.mktemp("behaviour")
    results = train(compose_train_cfg(tmp, RUN))
    assert results["ear"]["diagnostics"]["defect_pixels_masked"] < 0.8  # some defect pixels are visible
    return results["fader"]["diagnostics"]


def test_predictor_finds_visible_defects(diagnostics: dict) -> None:
    assert diagnostics["patches_visible_defect"] >= 5
    assert diagnostics["patch_auroc_visible"] > 0.8


def test_attenuation_fires_on_visible_defects_not_on_normal_patches(diagnostics: dict) -> None:
    assert diagnostics["attenuated_visible_defect"] > diagnostics["attenuated_visible_normal"] + 0.2


def test_normal_scores_barely_rise(diagnostics: dict) -> None:
    # tau is the largest prediction on held-out normals: normal test images are rarely attenuated, so their image
    # score (the map maximum, about 0.3 to 0.9 here) rises by less than 0.02 on average
    assert diagnostics["score_change_normal"] < 0.02
    assert diagnostics["attenuated_masked_normal"] == 0.0 and diagnostics["attenuated_masked_defect"] == 0.0

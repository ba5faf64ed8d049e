"""A small run's metrics, pinned to the values the code produced before its modules were reorganised.

Refactoring must not change what a seed and a config produce: the same masks, weights and metrics.
"""

import pytest

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.jobs.train import train

RUN = ["data.category=synth_object", "data.image_size=48", "data.n_train=16", "data.n_test_good=4",
       "data.n_test_defect=3", TINY_UNET, "masking=saliency", "stage=both", "trainer.max_epochs=2",
       "fader.trainer.max_epochs=2", "model.optimizer.lr=1e-3", "logger=none", "trainer.enable_progress_bar=false",
       "callbacks.overlays.num_samples=0", "data.val_policy=none", "model.scoring.normalize=none"]  # fmt: skip
PINNED = {
    "ear": {"image_auroc": 0.8749999403953552, "pixel_auroc": 0.9362074136734009, "aupro": 0.8370980302004126,
            "image_threshold_oracle": 0.7875118255615234, "pixel_threshold_oracle": 0.80126953125},
    "fader": {"image_auroc": 0.8749999403953552, "pixel_auroc": 0.936202347278595, "aupro": 0.8370877619071619,
              "image_threshold_oracle": 0.7875150442123413, "pixel_threshold_oracle": 0.80126953125},
}  # fmt: skip


@pytest.mark.slow
def test_a_small_run_reproduces_the_pinned_metrics(tmp_path) -> None:
    results = train(compose_train_cfg(tmp_path, RUN))
    for stage, pinned in PINNED.items():
        for key, value in pinned.items():
            assert results[stage]["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (stage, key)

"""``fader-eval``: a checkpoint of either stage tested on any category, like the test pass of its training run."""

import shutil
from pathlib import Path

import pytest

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.cli.evaluate import evaluate
from fader_lightning.cli.train import train
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.results import load_results

DATA = ["data.category=synth_object", "data.image_size=48", "data.n_train=24", "data.n_test_defect=4",
        "data.val_policy=from_train", "logger=none", "trainer.enable_progress_bar=false"]  # fmt: skip
TRAIN = [*DATA, TINY_UNET, "masking=checkerboard", "masking.cell_size=8", "model.scoring.normalize=zscore",
         "trainer.max_epochs=3", "model.optimizer.lr=1e-3", "stage=both", "fader.trainer.max_epochs=3"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("trained")
    return tmp, train(compose_train_cfg(tmp, TRAIN))


def run_eval(tmp_path: Path, ckpt: str | Path, overrides: list[str], data_root: Path) -> dict:
    cfg = compose_train_cfg(tmp_path, [f"ckpt_path={ckpt}", *overrides], data_root, config_name="eval")
    return evaluate(cfg)


def test_a_fader_checkpoint_alone_reproduces_its_training_test_metrics(trained, tmp_path: Path) -> None:
    tmp, results = trained
    # the FADeR checkpoint is self-contained: the stage-1 file it was trained from is gone
    alone = tmp_path / "alone" / "fader.ckpt"
    alone.parent.mkdir()
    shutil.copyfile(results["fader"]["checkpoint"], alone)
    stage1 = Path(results["ear"]["checkpoint"])
    moved = stage1.with_suffix(".moved")
    stage1.rename(moved)
    try:
        entry = run_eval(tmp_path, alone, DATA, tmp / "data")
    finally:
        moved.rename(stage1)
    assert entry["stage"] == "fader" and entry["checkpoint"] == str(alone.resolve())
    assert entry["metrics"] == results["fader"]["metrics"]
    assert entry["diagnostics"] == results["fader"]["diagnostics"]
    assert entry["masking"] == "checkerboard" and entry["fader"] is True
    assert entry["calibration"]["image_threshold"] == results["fader"]["calibration"]["image_threshold"]
    assert load_results(tmp_path / "out")["fader"]["metrics"] == entry["metrics"]
    assert len(list((tmp_path / "out" / "overlays").rglob("*.png"))) > 0
    # the image size and resize method came from the checkpoint, not from the data config
    assert entry["config"]["data"]["image_size"] == 48 and entry["config"]["data"]["interpolation"] == "area"


def test_a_checkpoint_in_its_run_folder_is_tested_on_its_run_data(trained, tmp_path: Path) -> None:
    _, results = trained
    entry = run_eval(tmp_path, results["fader"]["checkpoint"], ["logger=none"], tmp_path / "unused")
    assert entry["metrics"] == results["fader"]["metrics"] and entry["category"] == "synth_object"
    assert entry["config"]["data"] == results["fader"]["config"]["data"]


def test_the_unet_may_run_in_bfloat16_for_an_evaluation(trained, tmp_path: Path) -> None:
    _, results = trained
    overrides = ["logger=none", "speed.bf16=true"]
    entry = run_eval(tmp_path, results["ear"]["checkpoint"], overrides, tmp_path / "unused")
    reference, metrics = results["ear"]["metrics"], entry["metrics"]
    assert entry["config"]["speed"] == {"channels_last": None, "bf16": True}
    assert metrics != reference  # the maps really changed (bfloat16 rounding) ...
    for key in ("image_auroc", "pixel_auroc"):  # ... by little
        assert abs(metrics[key] - reference[key]) < 0.05, key


def test_a_stage1_checkpoint_on_another_category_and_with_other_scoring(trained, tmp_path: Path) -> None:
    tmp, results = trained
    ckpt = results["ear"]["checkpoint"]
    same = run_eval(tmp_path / "same", ckpt, DATA, tmp / "data")
    assert same["stage"] == "ear" and same["metrics"] == results["ear"]["metrics"]
    other = run_eval(tmp_path / "texture", ckpt, [*DATA, "data.category=synth_texture"], tmp / "data")
    assert other["category"] == "synth_texture" and other["metrics"] != same["metrics"]
    # other scoring: statistics and thresholds measured again on the datamodule's normal images
    plain = run_eval(tmp_path / "plain", ckpt, [*DATA, "scoring.normalize=none"], tmp / "data")
    assert plain["config"]["scoring"]["normalize"] == "none"
    assert plain["metrics"]["image_auroc"] != same["metrics"]["image_auroc"] or (
        plain["calibration"]["image_threshold"] != same["calibration"]["image_threshold"]
    )
    assert plain["calibration"]["split"] == "held_out"


def test_bad_checkpoints_and_sizes_are_refused_before_any_work(trained, tmp_path: Path) -> None:
    tmp, results = trained
    with pytest.raises(ConfigError, match="ckpt_path="):
        evaluate(compose_train_cfg(tmp_path / "none", DATA, tmp / "data", config_name="eval"))
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes\.ckpt"):
        run_eval(tmp_path / "bad", not_a_checkpoint, DATA, tmp / "data")
    with pytest.raises(ConfigError, match=r"data.image_size=\[64, 64\] differs from the \[48, 48\]"):
        run_eval(tmp_path / "size", results["ear"]["checkpoint"], [*DATA, "data.image_size=64"], tmp / "data")
    assert not (tmp_path / "size" / "out").exists()

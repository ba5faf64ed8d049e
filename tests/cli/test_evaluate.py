"""``fader-eval``: a checkpoint of either stage tested on any category, like the test pass of its training run."""

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import TINY_UNET, compose_train_cfg, edit_checkpoint
from fader_lightning.data.source import data_record
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.jobs.evaluate import evaluate
from fader_lightning.jobs.train import train
from fader_lightning.models import EARModule
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


def test_a_checkpoint_is_tested_on_the_data_it_records(trained, tmp_path: Path) -> None:
    _, results = trained
    copy = tmp_path / "elsewhere" / "copy.ckpt"  # out of its run folder: nothing beside it says what it was trained on
    copy.parent.mkdir()
    shutil.copyfile(results["fader"]["checkpoint"], copy)
    entry = run_eval(tmp_path, copy, ["logger=none"], tmp_path / "unused")
    assert entry["metrics"] == results["fader"]["metrics"] and entry["category"] == "synth_object"
    assert data_record(entry["config"]["data"]) == data_record(results["fader"]["config"]["data"])
    # the job's own caches, never a folder the checkpoint names
    assert entry["config"]["data"]["image_cache"].startswith(str(tmp_path))


def test_nothing_a_run_folder_or_checkpoint_holds_is_run(trained, tmp_path: Path) -> None:
    _, results = trained
    payload = tmp_path / "payload.txt"
    target = {"_target_": "builtins.open", "file": str(payload), "mode": "w"}
    run = tmp_path / "run"
    (run / "checkpoints" / "fader").mkdir(parents=True)
    ckpt = run / "checkpoints" / "fader" / "last.ckpt"
    shutil.copyfile(results["fader"]["checkpoint"], ckpt)
    poisoned = {"fader": {**results["fader"], "config": {"data": target, "paths": {"cache_dir": str(tmp_path / "x")}}}}
    (run / "metrics.json").write_text(json.dumps(poisoned))
    entry = run_eval(tmp_path / "eval", ckpt, ["logger=none"], tmp_path / "unused")
    assert not payload.exists() and not (tmp_path / "x").exists()
    assert entry["metrics"] == results["fader"]["metrics"]
    # a record that names another class, or holds a node to instantiate, is refused and runs nothing
    for stage_key, record in (("_target_", "builtins.open"), ("category", target)):
        bad = tmp_path / f"bad-{stage_key}.ckpt"
        edit_checkpoint(results["fader"]["checkpoint"], functools.partial(_record, stage_key, record), bad)
        with pytest.raises(CheckpointError, match="nothing"):
            run_eval(tmp_path / f"eval-{stage_key}", bad, ["logger=none"], tmp_path / "unused")
        assert not payload.exists()


def _record(key: str, value: object, checkpoint: dict) -> None:
    checkpoint["hyper_parameters"]["data_source"][key] = value


def test_recorded_data_that_is_not_here_is_named_and_can_be_moved(trained, tmp_path: Path) -> None:
    tmp, results = trained
    moved = tmp_path / "moved"
    shutil.copytree(tmp / "data", moved)
    recorded = torch.load(results["ear"]["checkpoint"], weights_only=True)["hyper_parameters"]["data_source"]["root"]
    copy = edit_checkpoint(results["ear"]["checkpoint"],
                           lambda ckpt: ckpt["hyper_parameters"]["data_source"].update(root=str(tmp_path / "gone")),
                           tmp_path / "copy.ckpt")  # fmt: skip
    with pytest.raises(ConfigError, match=r"was trained on data=synthetic data\.root=.*gone.*is not here.*data\.root="):
        run_eval(tmp_path / "a", copy, ["logger=none"], tmp_path / "unused")
    assert not (tmp_path / "gone").exists()  # never generated where a file says
    root = moved / Path(recorded).name
    entry = run_eval(tmp_path / "b", copy, ["logger=none", f"data.root={root}"], tmp_path / "unused")
    assert entry["metrics"] == results["ear"]["metrics"] and entry["config"]["data"]["root"] == str(root)


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


def test_another_calibration_method_recalibrates_on_the_held_out_normals(trained, tmp_path: Path) -> None:
    tmp, results = trained
    ckpt = results["ear"]["checkpoint"]
    gap = ["calibration.method=seen_gap", "calibration.target_fpr=0.1", "calibration.margin=0"]
    entry = run_eval(tmp_path / "gap", ckpt, gap, tmp / "data")
    calibration = entry["calibration"]
    assert (calibration["method"], calibration["target_fpr"], calibration["split"]) == ("seen_gap", 0.1, "held_out")
    assert (calibration["normal_images"], calibration["training_images"]) == (2, 22)  # 10 % of 24 held out
    # recomputed here: the module's scores of the held-out and the training normals, numpy's quantile and median
    module = EARModule.load_from_checkpoint(ckpt).eval()
    datamodule = instantiate(compose_train_cfg(tmp_path / "dm", [*TRAIN, "stage=ear"], tmp / "data").data)
    datamodule.setup("fit")
    held, seen = (np.concatenate([module.infer(batch.image)["score"].detach().numpy() for batch in loader])
                  for loader in (datamodule.val_dataloader(), datamodule.fit_dataloader()))  # fmt: skip
    expected = np.quantile(seen, 0.9) * np.median(held) / np.median(seen)
    assert calibration["image_threshold"] == pytest.approx(expected, rel=1e-4)
    assert load_results(tmp_path / "gap" / "out")["ear"]["calibration"]["method"] == "seen_gap"
    with pytest.raises(ConfigError, match=r"calibration\.method=gaussian at calibration\.target_fpr=0\.05 needs 3 "
                                          r"held-out normal images, and data\.val_ratio=0\.1 holds out 2 of the 24 "
                                          r"normal training images: data\.val_ratio=0\.11 holds out 3"):  # fmt: skip
        run_eval(tmp_path / "few", ckpt, ["calibration.method=gaussian"], tmp / "data")

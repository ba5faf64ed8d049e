"""fader-predict on generated images, against scores computed independently with the module."""

from __future__ import annotations

import csv
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from scipy.stats import norm

from conftest import TINY_UNET, command_cfg, compose_train_cfg, edit_checkpoint, run_command
from fader_lightning.api import Detector
from fader_lightning.cli.predict import main
from fader_lightning.data.image_io import MAX_PIXELS_ENV, read_image
from fader_lightning.data.synthetic import make_mvtec_tree
from fader_lightning.data.transforms import build_transform
from fader_lightning.deploy.predict import predict
from fader_lightning.errors import ConfigError
from fader_lightning.jobs.train import train
from fader_lightning.models import EARModule, FADeRModule
from fader_lightning.results import load_results
from fader_lightning.visualize import BAR_WIDTH, TEXT_HEIGHT, TITLE_HEIGHT

TRAIN_SIZE = 64
RUN = ["data.category=synth_object", f"data.image_size={TRAIN_SIZE}", "data.n_train=8", "data.n_test_good=2",
       "data.n_test_defect=1", "data.size=64", TINY_UNET, "stage=both", "trainer.max_epochs=1",
       "fader.trainer.max_epochs=1", "masking=saliency", "data.val_policy=none", "model.scoring.normalize=none",
       "logger=none", "trainer.enable_progress_bar=false", "callbacks.overlays.num_samples=0"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A stage-1 + FADeR run (1 epoch each) and a generated image tree at 80 px (resized to 64 by predict)."""
    tmp = tmp_path_factory.mktemp("predict")
    results = train(compose_train_cfg(tmp, RUN))
    tree = make_mvtec_tree(tmp / "images", ["synth_object"], n_train=4, n_test_good=2, n_test_defect=2, size=80)
    folder = tmp / "inputs"
    folder.mkdir()
    for path in sorted((tree / "synth_object" / "test").rglob("*.png")):
        shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
    (folder / "broken.png").write_bytes(b"not a png")
    return {"ear": Path(results["ear"]["checkpoint"]), "fader": Path(results["fader"]["checkpoint"]),
            "run_dir": tmp / "out", "inputs": folder, "normals": tree / "synth_object" / "train" / "good",
            "tmp": tmp}  # fmt: skip


def independent_scores(module: torch.nn.Module, paths: list[Path]) -> dict[str, float]:
    """Scores of the module's own ``infer`` on images read and resized here, one by one."""
    transform = build_transform(TRAIN_SIZE)
    scores = {}
    for path in paths:
        resized = transform(image=read_image(path))["image"]
        image = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float().div(255)[None]
        with torch.no_grad():
            scores[str(path)] = float(module.eval().infer(image)["score"][0])
    return scores


def read_scores(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_folder_with_corrupt_file(run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    readable = sorted(p for p in run["inputs"].iterdir() if p.name != "broken.png")
    expected = independent_scores(FADeRModule.load_from_checkpoint(run["fader"]), readable)
    threshold = float(np.median(list(expected.values())))
    out = tmp_path / "pred"
    code = run_command(main, [f"ckpt_path={run['fader']}", f"input={run['inputs']}", f"output={out}",
                              f"threshold={threshold!r}", "batch_size=3"])  # fmt: skip
    assert code == 0
    assert "broken.png" in capsys.readouterr().out
    rows = read_scores(out / "scores.csv")
    # every input file has a row, the unreadable one with its reason
    assert [row["path"] for row in rows] == [str(p) for p in sorted(run["inputs"].iterdir())]
    (broken,) = [row for row in rows if row["status"] == "skipped"]
    assert broken["path"].endswith("broken.png") and broken["reason"] and broken["score"] == ""
    rows = [row for row in rows if row["status"] == "ok"]
    assert [row["path"] for row in rows] == [str(p) for p in readable]
    for row in rows:
        score = float(row["score"])
        assert score == pytest.approx(expected[row["path"]], abs=1e-5)
        assert int(row["label"]) == int(score > threshold)
    assert {row["label"] for row in rows} == {"0", "1"}
    for row in rows:
        # maps and masks at the files' own 80 px; overlays at the checkpoint's 64 (the model's input)
        assert Image.open(out / row["map"]).size == Image.open(out / row["mask"]).size == (80, 80)
        assert (int(row["height"]), int(row["width"])) == (80, 80)
        # titled: image | I' | reconstruction | map | region | its bar | FADeR soft mask | its bar, over a caption
        assert Image.open(out / row["overlay"]).size == (
            6 * TRAIN_SIZE + 2 * BAR_WIDTH, TITLE_HEIGHT + TRAIN_SIZE + 2 * TEXT_HEIGHT + 2
        )  # fmt: skip
    assert not (out / "maps" / "broken.png").exists()


def test_auto_threshold_single_image_and_glob(run: dict[str, Path], tmp_path: Path) -> None:
    normals = sorted(run["normals"].glob("*.png"))
    normal_scores = independent_scores(EARModule.load_from_checkpoint(run["ear"]), normals)
    result = predict(
        command_cfg("predict", ckpt_path=run["ear"], input=str(run["normals"] / "*.png"), output=tmp_path / "glob",
                    normal_dir=run["normals"])
    )  # fmt: skip
    # the checkpoint's calibration (auto, a margin of 1 std): too few images for a quantile, so max + 1 std
    values = np.array(list(normal_scores.values()))
    assert result.threshold == pytest.approx(values.max() + values.std(ddof=1), abs=1e-4)
    assert [row["path"] for row in result.rows] == [str(p) for p in normals]
    assert all(row["label"] == 0 for row in result.rows)  # the maximum is not above itself
    single = run["inputs"] / "good_000.png"
    code = run_command(
        main, [f"ckpt_path={run['ear']}", f"input={single}", f"output={tmp_path / 'one'}", "threshold=0.0"]
    )
    assert code == 0
    assert [row["label"] for row in read_scores(tmp_path / "one" / "scores.csv")] == ["1"]
    overlay = Image.open(tmp_path / "one" / "overlays" / "good_000.png")
    assert overlay.size[0] == 5 * TRAIN_SIZE + BAR_WIDTH  # stage 1 has no soft-mask panel


def test_the_calibrated_threshold_travels_with_the_checkpoint(run: dict[str, Path], tmp_path: Path) -> None:
    result = predict(command_cfg("predict", ckpt_path=run["ear"], input=run["inputs"] / "good_000.png",
                                 output=tmp_path / "calibrated"))  # fmt: skip
    calibration = load_results(run["run_dir"])["ear"]["calibration"]
    assert result.threshold == pytest.approx(calibration["image_threshold"]) and "calibrated" in result.threshold_source
    assert calibration["split"] == "train" and calibration["normal_images"] == 8  # no held-out normals in this run
    assert (calibration["method"], calibration["requested"], calibration["margin"]) == ("max", "auto", 1.0)
    # the largest score of the run's own normal training images and 1 std of them, recomputed here
    datamodule = instantiate(compose_train_cfg(run["tmp"], RUN).data)
    datamodule.setup("fit")
    module = EARModule.load_from_checkpoint(run["ear"])
    normals = np.array(list(independent_scores(module, [s.image_path for s in datamodule.normal_samples]).values()))
    assert result.threshold == pytest.approx(normals.max() + normals.std(ddof=1), abs=1e-4)


def test_older_checkpoints_fall_back_to_the_oracle_with_a_warning(
    run: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def drop_thresholds(old: dict) -> None:
        old["state_dict"] = {k: v for k, v in old["state_dict"].items() if not k.endswith("scorer.thresholds")}

    older = run["ear"].with_name("older.ckpt")  # in the run folder: its metrics.json has the oracle threshold
    edit_checkpoint(run["ear"], drop_thresholds, older)
    oracle = load_results(run["run_dir"])["ear"]["metrics"]["image_threshold_oracle"]
    with caplog.at_level(logging.WARNING):
        result = predict(command_cfg("predict", ckpt_path=older, input=run["inputs"] / "good_000.png",
                                     output=tmp_path / "oracle"))  # fmt: skip
    assert result.threshold == oracle
    assert "ORACLE" in caplog.text
    moved = tmp_path / "elsewhere.ckpt"  # outside its run folder: no metrics.json, so a threshold is required
    shutil.copy(older, moved)
    with pytest.raises(ConfigError, match="no image threshold"):
        predict(command_cfg("predict", ckpt_path=moved, input=run["inputs"], output=tmp_path / "none"))


def test_nothing_readable_exits_1(run: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bad"
    args = [f"ckpt_path={run['ear']}", f"input={run['inputs'] / 'broken.png'}", f"output={out}", "threshold=1"]
    assert run_command(main, args) == 1
    assert [row["status"] for row in read_scores(out / "scores.csv")] == ["skipped"]


def test_unknown_and_missing_keys_are_named(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_command(main, [f"ckpt_path={run['ear']}", "input=x", "output=y", "treshold=1"]) == 1
    assert "Key 'treshold' is not in struct" in capsys.readouterr().err
    assert run_command(main, [f"ckpt_path={run['ear']}", "input=x"]) == 1
    assert "missing output=...; fader-predict --help lists every key" in capsys.readouterr().err
    for bad, named in (
        ("threshold=high", "threshold='high' is invalid"),
        ("image_size=[0,4]", "image_size="),
        ("batch_size=0", "batch_size=0 is invalid"),
        ("calibration.target_fpr=1.5", "calibration.target_fpr=1.5 is invalid"),
        ("output_size=huge", "output_size='huge' is unknown; use one of input, model"),
        ("map_encoding=gray32", "map_encoding='gray32' is unknown; use one of heat, gray8, gray16"),
    ):
        assert run_command(main, [f"ckpt_path={run['ear']}", f"input={run['inputs']}", f"output={tmp_path}", bad]) == 1
        assert named in capsys.readouterr().err
    assert not (tmp_path / "scores.csv").exists()


def test_a_checkpoint_moved_out_of_its_run_is_served_at_its_own_size(run: dict[str, Path], tmp_path: Path) -> None:
    moved = tmp_path / "shipped" / "model.ckpt"  # no run folder, no metrics.json: only the checkpoint knows
    moved.parent.mkdir()
    moved.write_bytes(run["ear"].read_bytes())
    image = sorted(run["inputs"].glob("good_*.png"))[0]
    predict(command_cfg("predict", ckpt_path=moved, input=image, output=tmp_path / "out", threshold=0.5,
                        output_size="model"))  # fmt: skip
    assert Image.open(tmp_path / "out" / "maps" / f"{image.stem}.png").size == (TRAIN_SIZE, TRAIN_SIZE)
    module = EARModule.load_from_checkpoint(moved)
    assert module.trained_size == (TRAIN_SIZE, TRAIN_SIZE)
    with pytest.raises(ConfigError, match=r"image_size=\[32, 32\] differs from the \[64, 64\].*force=true"):
        predict(
            command_cfg(
                "predict", ckpt_path=moved, input=image, output=tmp_path / "other", threshold=0.5, image_size=32
            )
        )
    forced = predict(command_cfg("predict", ckpt_path=moved, input=image, output=tmp_path / "forced", threshold=0.5,
                                 image_size=[32, 32], force=True, output_size="model"))  # fmt: skip
    assert len(forced.scored) == 1
    assert Image.open(tmp_path / "forced" / "masks" / f"{image.stem}.png").size == (32, 32)


def test_outputs_mirror_the_input_folders_and_scores_are_also_calibrated(run: dict[str, Path], tmp_path: Path) -> None:
    test_root = run["normals"].parents[1] / "test"  # good/, and one folder per defect type: stems repeat across them
    out = tmp_path / "mirrored"
    result = predict(command_cfg("predict", ckpt_path=run["fader"], input=test_root, output=out))
    files = sorted(p for p in test_root.rglob("*.png"))
    assert [row["path"] for row in result.rows] == [str(p) for p in files]
    for row, path in zip(result.rows, files, strict=True):
        relative = path.relative_to(test_root).with_suffix(".png").as_posix()
        assert row["map"] == f"maps/{relative}" and (out / row["map"]).is_file()
        assert row["overlay"] == f"overlays/{relative}" and (out / row["overlay"]).is_file()
    # the calibrated score: 0.5 at the checkpoint's threshold, from its calibration, recomputed here
    calibration = load_results(run["run_dir"])["fader"]["calibration"]
    low, threshold = calibration["image_min"], calibration["image_threshold"]
    for row in result.rows:
        x = 4 * (row["score"] - threshold) / (threshold - low)
        assert row["calibrated_score"] == pytest.approx(0.5 + 0.5 * x / (1 + abs(x)), abs=1e-5)
        assert (row["calibrated_score"] > 0.5) == bool(row["label"])


def test_an_output_that_overlaps_an_input_is_refused(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = tmp_path / "images"
    shutil.copytree(run["inputs"], images)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(run["ear"], shipped / "model.ckpt")
    ckpt = shipped / "model.ckpt"
    cases = {
        (f"input={images}", f"output={images / 'pred'}"): r"pred lies inside input=.*a re-run would read the outputs",
        (f"input={images}", f"output={images}"): rf"output={images} is input={images}",
        (f"input={images / 'good_000.png'}", f"output={tmp_path}"): r"holds input=.*good_000\.png",
        (f"input={images}", f"output={run['normals'] / 'pred'}", f"normal_dir={run['normals']}"): "inside normal_dir=",
        (f"input={images}", f"output={shipped}"): r"shipped holds ckpt_path=.*model\.ckpt",
        (f"input={tmp_path}/**/*.png", f"output={tmp_path / 'pred'}"): r"\*\*/\*\.png matches .*pred/maps/.*re-run",
        (f"input={images}/*.png", f"output={images}"): r"output=.*images holds input=.*\.png",
    }
    before = sorted(tmp_path.rglob("*"))
    for args, message in cases.items():
        ckpt_arg = f"ckpt_path={ckpt}" if "shipped" in args[1] else f"ckpt_path={run['ear']}"
        assert run_command(main, [ckpt_arg, *args, "threshold=0.5"]) == 1
        assert re.search(message, capsys.readouterr().err), args
    assert sorted(tmp_path.rglob("*")) == before  # refused before any work
    # a glob that cannot match what is written beside it is fine
    result = predict(command_cfg("predict", ckpt_path=ckpt, input=f"{images}/good_*.png", output=images / "pred",
                                 threshold=0.5))  # fmt: skip
    assert len(result.scored) == len(list(images.glob("good_*.png")))


def listing(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_prediction_replaces_the_earlier_one_whole_or_not_at_all(
    run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pred"
    predict(command_cfg("predict", ckpt_path=run["ear"], input=run["inputs"], output=out, threshold=0.5))
    earlier = listing(out)
    assert "maps/good_000.png" in earlier and "scores.csv" in earlier

    def crash(*_: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("fader_lightning.deploy.predict.write_images", crash)
        with pytest.raises(OSError, match="No space left"):
            predict(command_cfg("predict", ckpt_path=run["ear"], input=run["inputs"], output=out, threshold=0.0))
    assert listing(out) == earlier  # no new map beside the earlier table
    assert sorted(path.name for path in out.iterdir()) == ["maps", "masks", "overlays", "scores.csv"]
    single = run["inputs"] / "good_000.png"
    predict(command_cfg("predict", ckpt_path=run["ear"], input=single, output=out, threshold=0.5))
    assert sorted(listing(out)) == ["maps/good_000.png", "masks/good_000.png", "overlays/good_000.png", "scores.csv"]
    assert [row["path"] for row in read_scores(out / "scores.csv")] == [str(single)]
    # an earlier version's output (its score column was normalized_score) is replaced the same way
    table = (out / "scores.csv").read_text()
    (out / "scores.csv").write_text(table.replace("calibrated_score", "normalized_score", 1))
    predict(command_cfg("predict", ckpt_path=run["ear"], input=single, output=out, threshold=0.5))
    assert (out / "scores.csv").read_text().startswith("path,status,score,calibrated_score,label")


def test_maps_or_overlays_of_another_tool_are_never_replaced(run: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "city.png").write_bytes(b"a map of the city")
    image = run["inputs"] / "good_000.png"
    with pytest.raises(ConfigError, match=r"holds maps, not an earlier result of fader-predict.*choose another"):
        predict(command_cfg("predict", ckpt_path=run["ear"], input=image, output=tmp_path, threshold=0.5))
    (tmp_path / "scores.csv").write_text("id,value\n")
    with pytest.raises(ConfigError, match=r"holds maps, scores\.csv, not an earlier result"):
        predict(command_cfg("predict", ckpt_path=run["ear"], input=image, output=tmp_path, threshold=0.5))
    assert listing(tmp_path) == {"maps/city.png": b"a map of the city", "scores.csv": b"id,value\n"}


def test_an_image_below_the_models_smallest_side_is_skipped_by_name(run: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(run["inputs"] / "good_000.png", folder / "good.png")
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "dot.png")
    result = predict(command_cfg("predict", ckpt_path=run["ear"], input=folder, output=tmp_path / "out", threshold=0.5))
    assert [row["path"] for row in result.scored] == [str(folder / "good.png")]
    (skipped,) = result.skipped
    assert skipped["path"] == str(folder / "dot.png")
    assert re.search(rf"{folder / 'dot.png'} is 1x1 pixels, below the \d+ pixels a side", skipped["reason"])


def test_maps_and_masks_come_at_the_images_own_size(run: dict[str, Path], tmp_path: Path) -> None:
    """A 90x120 image: maps/ and masks/ at 90x120, the model-size map enlarged bilinearly, in every encoding."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(run["inputs"] / "good_000.png").resize((120, 90)).save(folder / "wide.png")
    detector = Detector.from_checkpoint(run["fader"])
    (found,) = detector.predict([folder / "wide.png"])
    small = torch.from_numpy(found.anomaly_map)[None, None]
    enlarged = torch.nn.functional.interpolate(small, size=(90, 120), mode="bilinear", align_corners=False)[0, 0]
    assert found.full_map.shape == (90, 120)
    assert np.abs(found.full_map - enlarged.numpy()).max() < 1e-4
    assert np.array_equal(found.full_mask, found.full_map > detector.pixel_threshold)
    assert detector.predict([folder / "wide.png"], full_size=False)[0].full_map is None
    low, threshold = detector.lows[1], detector.pixel_threshold
    x = 4 * (found.full_map.astype(np.float64) - threshold) / (threshold - low)
    unit = 0.5 + 0.5 * x / (1 + np.abs(x))  # the side-car's formula, written out
    for encoding, top in (("gray8", 255), ("gray16", 65535)):
        out = tmp_path / encoding
        result = predict(
            command_cfg("predict", ckpt_path=run["fader"], input=folder, output=out, map_encoding=encoding)
        )
        (row,) = result.rows
        stored = np.array(Image.open(out / row["map"]))
        assert stored.shape == (90, 120) and stored.dtype == (np.uint8 if top == 255 else np.uint16)
        assert np.abs(stored / top - unit).max() <= 1.0 / top + 1e-4
        mask = np.array(Image.open(out / row["mask"]))
        assert set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask == 255, found.full_map > threshold)
    heat = np.array(Image.open(tmp_path / "gray8" / "overlays" / "wide.png"))
    assert heat.shape[0] == TITLE_HEIGHT + TRAIN_SIZE + 2 * TEXT_HEIGHT + 2  # overlays stay at model size


def test_auto_threshold_by_the_calibration_methods(run: dict[str, Path], tmp_path: Path) -> None:
    normals = sorted(run["normals"].glob("*.png"))
    values = np.array(list(independent_scores(EARModule.load_from_checkpoint(run["ear"]), normals).values()))
    image, good = run["inputs"] / "good_000.png", run["normals"]
    result = predict(command_cfg("predict", ckpt_path=run["ear"], input=image, output=tmp_path / "g", normal_dir=good,
                                 calibration={"method": "gaussian", "target_fpr": 0.1, "margin": 0}))  # fmt: skip
    assert result.threshold == pytest.approx(values.mean() + norm.ppf(0.9) * values.std(ddof=1), abs=1e-4)
    with pytest.raises(
        ConfigError,
        match=rf"calibration.method=quantile at calibration.target_fpr=0.05 needs 19 normal "
        rf"images and normal_dir={re.escape(str(run['normals']))} gives {len(normals)}",
    ):
        predict(command_cfg("predict", ckpt_path=run["ear"], input=image, output=tmp_path / "q",
                            normal_dir=run["normals"], calibration={"method": "quantile"}))  # fmt: skip
    with pytest.raises(ConfigError, match=r"seen_gap needs the model's training images"):
        predict(command_cfg("predict", ckpt_path=run["ear"], input=image, output=tmp_path / "s",
                            normal_dir=run["normals"], calibration={"method": "seen_gap"}))  # fmt: skip


def test_an_input_above_the_decompression_limit_is_skipped_by_name(
    run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = run["inputs"] / "good_000.png"  # 80 x 80 = 6,400 pixels
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    args = [f"ckpt_path={run['ear']}", f"input={image}", f"output={tmp_path / 'out'}", "threshold=0.5"]
    assert run_command(main, args) == 1  # nothing could be scored
    (row,) = read_scores(tmp_path / "out" / "scores.csv")
    assert row["status"] == "skipped" and str(image) in row["reason"]
    assert "6,400 pixels, above the limit of 1,000" in row["reason"] and f"{MAX_PIXELS_ENV}=6400" in row["reason"]

"""Paths a user types: each wrong one gets an error that names it and the fix, before any work."""

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import EAR_SETTINGS, TINY_UNET, command_cfg, compose_train_cfg, fader_module
from fader_lightning.deploy.export import export_checkpoint
from fader_lightning.deploy.predict import predict
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.jobs.run_dir import prepare_run_dir
from fader_lightning.jobs.train import train
from fader_lightning.results import load_results, record_stage
from fader_lightning.utils.io import writable_folder


def test_fader_ckpt_path_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"fader\.ckpt_path=.* is a folder.*checkpoints/ear/last\.ckpt"):
        fader_module(str(tmp_path))


def test_corrupt_metrics_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text('{"ear": {"status": ')
    with pytest.raises(ConfigError, match=r"metrics\.json is not valid JSON.*overwrite=true"):
        load_results(tmp_path)
    with pytest.raises(ConfigError, match="not valid JSON"):
        record_stage(tmp_path, "fader", {"status": "ok"})  # never silently replaced
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="holds a list"):
        load_results(tmp_path)


def test_output_folder_that_is_a_file_or_read_only(tmp_path: Path) -> None:
    a_file = tmp_path / "out.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"output=.*out\.txt is a file"):
        writable_folder(a_file, "output")
    image = tmp_path / "image.png"
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(ConfigError, match=r"output=.*out\.txt is a file"):
        # refused before the checkpoint is read
        predict(command_cfg("predict", ckpt_path=tmp_path / "missing.ckpt", input=image, output=a_file))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="not writable"):
            writable_folder(locked, "output")


def test_export_output_that_would_clash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a folder; name the \.onnx file"):
        export_checkpoint(command_cfg("export", ckpt_path=tmp_path / "missing.ckpt", output=tmp_path))
    with pytest.raises(ConfigError, match=r"overwritten by its own \.json side-car"):
        export_checkpoint(command_cfg("export", ckpt_path=tmp_path / "missing.ckpt", output=tmp_path / "model.json"))


def test_resume_ckpt_path_missing_or_of_another_architecture(tmp_path: Path) -> None:
    small = ["data.image_size=32", "data.n_train=8", "data.n_test_good=2", "data.n_test_defect=2", "data.size=64",
             "debug=fdr", "test=false"]  # fmt: skip
    trained = train(compose_train_cfg(tmp_path / "a", [*small, TINY_UNET]))["ear"]["checkpoint"]
    with pytest.raises(CheckpointError, match=r"ckpt_path=.*nope.ckpt does not exist"):
        train(compose_train_cfg(tmp_path / "b", [*small, TINY_UNET, f"ckpt_path={tmp_path / 'nope.ckpt'}"]))
    other = "model.unet.widths=[4,8,16,32]"
    before = Path(trained).read_bytes()
    with pytest.raises(ConfigError) as err:  # resumed in its own folder, with another U-Net: refused before any work
        train(compose_train_cfg(tmp_path / "a", [*small, other, f"ckpt_path={trained}"]))
    message = str(err.value)
    assert f"ckpt_path={trained} was trained with other settings" in message
    assert "model.unet.widths=[4, 8, 16, 32] here, [8, 16, 32, 64] in the checkpoint" in message
    assert Path(trained).read_bytes() == before


def test_outputs_never_follow_a_symlinked_sub_folder_out(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "overlays").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match=r"overlays is a symbolic link to .*elsewhere, outside the output folder"):
        prepare_run_dir(run, resume=False, overwrite=False)
    with pytest.raises(ConfigError, match="outside the output folder"):
        writable_folder(run, "output")
    inside = run / "maps_real"
    inside.mkdir()
    (run / "overlays").unlink()
    (run / "overlays").symlink_to(inside, target_is_directory=True)  # a link that stays inside is fine
    assert writable_folder(run, "output") == run
    assert list(elsewhere.iterdir()) == []


def test_checkpoints_with_or_without_calibration_fit_a_fresh_model() -> None:
    from fader_lightning.models import EARModule
    from fader_lightning.models.checkpoint_file import check_fits

    unet = {"widths": [8, 16]}
    calibrated = EARModule(**EAR_SETTINGS, unet=unet, masking={"name": "checkerboard"})
    calibrated.scorer.set_statistics(torch.zeros(1, 1, 32, 32), torch.ones(1, 1, 32, 32))
    calibrated.scorer.set_thresholds(1.0, 2.0, 0.1, 0.0)
    state = calibrated.state_dict()
    older = {k: v for k, v in state.items() if not k.startswith("ear.scorer.")}  # written before calibration
    for weights in (state, older):
        check_fits(
            {"state_dict": weights}, EARModule(**EAR_SETTINGS, unet=unet, masking={"name": "checkerboard"}), "x", "key"
        )

"""W&B logging through the training entry point, with the real wandb library running offline."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import wandb
from test_train import SMALL_DATA

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.callbacks.wandb_samples import COLUMNS, WandbSampleTable
from fader_lightning.data.dataset import Batch
from fader_lightning.jobs.train import train
from fader_lightning.models import EARModule
from fader_lightning.utils.wandb_mode import wandb_offline
from fader_lightning.utils.wandb_setup import RUN_LOCAL_FOLDERS
from wandb_records import log_records, read_run

WANDB_RUN = [*SMALL_DATA, TINY_UNET, "logger=wandb", "callbacks=wandb", "trainer.max_epochs=1", "masking=saliency",
             "trainer.enable_progress_bar=false"]  # fmt: skip


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, silent wandb that keeps everything under tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No W&B settings in the environment and an empty home folder."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_both_stages_log_one_offline_run_each(offline_wandb: Path) -> None:
    cfg = compose_train_cfg(offline_wandb, [*WANDB_RUN, "stage=both", "fader.trainer.max_epochs=1"])
    group = f"train-{Path(cfg.hydra.run.dir).name}"
    train(cfg)
    assert wandb.run is None
    runs = {}
    for run_dir in (offline_wandb / "out" / "wandb").glob("offline-run-*"):
        run = read_run(run_dir)
        runs[run.run.job_type] = run
        stage = run.run.job_type
        assert run.run.display_name == f"synth_object-saliency-s0-j0-{stage}"
        assert run.run.run_group == group
        assert list(run.run.tags) == ["synth_object", "saliency", stage]
        assert run.exit_code == 0
        assert run.config["data"]["category"] == "synth_object" and run.config["stage"] == "both"
        assert run.config["logger"]["wandb"]["project"] == "fader-lightning"
        assert 0.0 <= run.summary["test/image_auroc"] <= 1.0
        key = f"test/samples_{stage}"
        entry = run.summary[key]
        assert entry["_type"] == "table-file" and entry["nrows"] == 8  # every test image: 4 good + 2 x 2 defects
        assert (run_dir / "files" / entry["path"]).is_file()
        assert entry["path"].startswith("media/table/")
        table = run.tables[key]
        assert table["columns"] == COLUMNS
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in table["data"]]
        assert {row["stage"] for row in rows} == {stage}
        assert {row["masking"] for row in rows} == {"saliency"}
        assert sum(row["label"] for row in rows) == 4
        assert all(set(row["image"]["masks"]) == {"ground_truth", "prediction"} for row in rows)
        assert rows[0]["anomaly_map"]["_type"] == "image-file"
        # I' and Î: what the inpainting network saw and what it drew, for every row
        assert all(row[key]["_type"] == "image-file" for row in rows for key in ("masked_input", "reconstruction"))
        assert all((row["soft_mask"] is None) == (stage == "ear") for row in rows)
    assert set(runs) == {"ear", "fader"}


def test_failed_stage_finishes_its_run(offline_wandb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(EARModule, "training_step", fail)
    with pytest.raises(RuntimeError, match="boom"):
        train(compose_train_cfg(offline_wandb, WANDB_RUN))
    assert wandb.run is None
    (run_dir,) = (offline_wandb / "out" / "wandb").glob("offline-run-*")
    assert read_run(run_dir).exit_code == 1


def test_offline_unless_configured(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert wandb_offline()
    netrc = clean_env / ".netrc"
    netrc.write_text("machine example.com login me password secret\n")
    assert wandb_offline()
    netrc.write_text("machine api.wandb.ai login user password 0123456789\n")
    assert not wandb_offline()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert wandb_offline()
    netrc.write_text("machine wandb.example.com login user password 0123456789\n")
    assert not wandb_offline()


@pytest.mark.parametrize("env", [{"WANDB_MODE": "offline"}, {"WANDB_MODE": "online"}, {"WANDB_API_KEY": "0123"}])
def test_user_settings_leave_the_mode_to_wandb(clean_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert not wandb_offline()


def test_logger_config_resolves(clean_env: Path) -> None:
    cfg = compose_train_cfg(clean_env, ["logger=wandb", "masking=checkerboard", "seed=3"])
    spec = cfg.logger.wandb
    assert spec.offline is True
    assert spec.name == "synth_object-checkerboard-s3-j0"
    assert spec.group == f"train-{Path(cfg.hydra.run.dir).name}"
    assert list(spec.tags) == ["synth_object", "checkerboard"]


def test_sample_table_does_nothing_without_wandb_logger() -> None:
    callback = WandbSampleTable(num_samples=2, selection="spread")
    trainer = SimpleNamespace(loggers=[], test_dataloaders=[], is_global_zero=True)
    callback.on_test_epoch_start(trainer, None)
    batch = Batch(torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8), torch.zeros(2), ["good"] * 2, ["a", "b"], ["c"] * 2)
    outputs = {"anomaly_map": torch.zeros(2, 1, 8, 8), "score": torch.zeros(2)}
    callback.on_test_batch_end(trainer, None, outputs, batch, 0)
    callback.on_test_end(trainer, None)
    assert callback.picked == []


def test_offline_run_is_self_contained_and_logs_the_model(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RUN_LOCAL_FOLDERS:  # restored to unset after the test, whatever the run sets
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    cfg = compose_train_cfg(clean_env / "job", [*WANDB_RUN, "logger.wandb.log_model=true"])
    assert cfg.logger.wandb.offline is True
    train(cfg)
    wandb_dir = clean_env / "job" / "out" / "wandb"
    (run_dir,) = wandb_dir.glob("offline-run-*")
    run = read_run(run_dir)
    assert run.exit_code == 0
    home = {p.relative_to(clean_env) for p in clean_env.rglob("*") if p.is_file() and "job" not in p.parts}
    assert not [p for p in home if p.parts[0] in (".local", ".cache")], home  # nothing staged in the home folder
    records = log_records(next(run_dir.glob("run-*.wandb")))
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    images = [Path(e.local_path) for a in artifacts for e in a.manifest.contents if e.path.endswith(".png")]
    assert len(images) >= 8  # the sample table's images, staged inside the run folder
    assert all(image.is_file() and image.is_relative_to(wandb_dir) for image in images)
    models = [artifact for artifact in artifacts if artifact.type == "model"]
    assert len(models) == 1
    (entry,) = models[0].manifest.contents
    assert entry.path == "model.ckpt"
    staged = Path(entry.local_path)
    assert staged.is_file() and staged.is_relative_to(wandb_dir)
    assert torch.load(staged, weights_only=True)["hyper_parameters"]["unet"]["widths"] == [8, 16, 32, 64]


def test_a_unified_run_logs_each_category_under_its_name(offline_wandb: Path) -> None:
    cfg = compose_train_cfg(offline_wandb, [*WANDB_RUN, "data.category=[synth_texture,synth_object]"])
    train(cfg)
    run = read_run(next((offline_wandb / "out" / "wandb").glob("offline-run-*")))
    assert run.run.display_name == "synth_texture+synth_object-saliency-s0-j0-ear"
    assert list(run.run.tags) == ["synth_texture+synth_object", "saliency", "ear"]
    assert run.config["data"]["category"] == ["synth_texture", "synth_object"]
    for category in ("synth_texture", "synth_object"):
        for prefix in (f"test/{category}", f"test/{category}/category_free"):
            assert 0.0 <= run.summary[f"{prefix}/image_auroc"] <= 1.0
        assert run.summary[f"test/{category}/samples_ear"]["nrows"] == 8  # that category's test images only
    assert 0.0 <= run.summary["test/pooled/image_auroc"] <= 1.0
    assert "test/synth_object/category_free/samples_ear" not in run.summary  # that pass is measured, not shown

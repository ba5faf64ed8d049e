"""W&B logging through the training entry point, with the real wandb library running offline."""

import json
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import wandb
from wandb.proto import wandb_internal_pb2

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.callbacks.wandb_samples import COLUMNS, WandbSampleTable
from fader_lightning.data.dataset import Batch
from fader_lightning.models import InpaintingModule
from fader_lightning.train import train
from fader_lightning.utils.wandb_setup import wandb_offline
from test_train import SMALL_DATA

LOG_BLOCK = 32768
WANDB_RUN = [*SMALL_DATA, TINY_UNET, "logger=wandb", "callbacks=wandb", "trainer.max_epochs=1",
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


def _log_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """The complete records of a ``run-<id>.wandb`` transaction log.

    LevelDB log format: a 7-byte file header, then records of 7-byte headers (crc, length, type) and data, split
    into chunks that never cross a 32 KiB block boundary. A record still being written is left out.
    """
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunks, pos = [], b"", 7
    while pos + 7 <= len(data):
        if LOG_BLOCK - pos % LOG_BLOCK < 7:  # a block tail too short for a header is padding
            pos += LOG_BLOCK - pos % LOG_BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):
            break
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(wandb_internal_pb2.Record.FromString(chunks))
            chunks = b""
    return records


def _read_run(run_dir: Path, timeout: float = 20.0) -> SimpleNamespace:
    """What an offline run recorded: its run record, config, summary, sample tables and exit code.

    wandb 0.31 writes neither ``wandb-summary.json`` nor ``config.yaml`` for offline runs, so the transaction log
    is read; wandb-core may still be writing it when ``wandb.finish`` returns, hence the wait for the exit record.
    """
    path = next(run_dir.glob("run-*.wandb"))
    deadline = time.monotonic() + timeout
    records = _log_records(path)
    while not any(record.HasField("exit") for record in records):
        assert time.monotonic() < deadline, f"{path} has no exit record"
        time.sleep(0.1)
        records = _log_records(path)
    run = SimpleNamespace(config={}, summary={}, tables={}, exit_code=None)
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run = record.run
        elif kind in ("config", "summary"):
            for item in getattr(record, kind).update:
                *parents, key = [item.key] if item.key else item.nested_key
                tree = getattr(run, kind)
                for parent in parents:
                    tree = tree.setdefault(parent, {})
                tree[key] = json.loads(item.value_json)
        elif kind == "artifact":  # tables are logged as artifacts too; offline, their files stay staged
            for entry in record.artifact.manifest.contents:
                if entry.path.endswith(".table.json"):
                    run.tables[entry.path.removesuffix(".table.json")] = json.loads(Path(entry.local_path).read_text())
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def test_both_stages_log_one_offline_run_each(offline_wandb: Path) -> None:
    cfg = compose_train_cfg(offline_wandb, [*WANDB_RUN, "stage=both", "fader.max_epochs=1"])
    group = f"train-{Path(cfg.hydra.run.dir).name}"
    train(cfg)
    assert wandb.run is None
    runs = {}
    for run_dir in (offline_wandb / "out" / "wandb").glob("offline-run-*"):
        run = _read_run(run_dir)
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
        assert all((row["soft_mask"] is None) == (stage == "ear") for row in rows)
    assert set(runs) == {"ear", "fader"}


def test_failed_stage_finishes_its_run(offline_wandb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(InpaintingModule, "training_step", fail)
    with pytest.raises(RuntimeError, match="boom"):
        train(compose_train_cfg(offline_wandb, WANDB_RUN))
    assert wandb.run is None
    (run_dir,) = (offline_wandb / "out" / "wandb").glob("offline-run-*")
    assert _read_run(run_dir).exit_code == 1


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
    callback = WandbSampleTable(num_samples=2)
    trainer = SimpleNamespace(loggers=[], test_dataloaders=[], is_global_zero=True)
    callback.on_test_epoch_start(trainer, None)
    batch = Batch(torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8), torch.zeros(2), ["good"] * 2, ["a", "b"], ["c"] * 2)
    outputs = {"anomaly_map": torch.zeros(2, 1, 8, 8), "score": torch.zeros(2)}
    callback.on_test_batch_end(trainer, None, outputs, batch, 0)
    callback.on_test_end(trainer, None)
    assert callback.picked == []

"""Run folders that cannot mix: re-runs, overwrite, locks, and reused stage-1 models with the job's own settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.cli.train import train
from fader_lightning.errors import ConfigError
from fader_lightning.models import FADeRModule
from fader_lightning.results import load_results
from fader_lightning.run_dir import LOCK_FILE, prepare_run_dir, run_lock

SMALL = ["data.image_size=32", "data.n_train=8", "data.n_test_good=4", "data.n_test_defect=2", "data.size=64",
         TINY_UNET, "logger=none", "trainer.max_epochs=1", "callbacks.overlays.num_samples=0"]  # fmt: skip


def test_rerun_into_a_used_folder_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    cfg = compose_train_cfg(tmp_path, [*SMALL, "stage=both", "fader.trainer.max_epochs=1"])
    first = train(cfg)
    before = (tmp_path / "out/metrics.json").read_bytes()
    weights = (tmp_path / "out/checkpoints/ear/last.ckpt").read_bytes()
    again = compose_train_cfg(tmp_path, [*SMALL, "stage=both", "fader.trainer.max_epochs=1", "seed=1"])
    with pytest.raises(ConfigError, match=r"already holds a run.*overwrite=true"):
        train(again)
    assert (tmp_path / "out/metrics.json").read_bytes() == before
    assert (tmp_path / "out/checkpoints/ear/last.ckpt").read_bytes() == weights
    # stage 2 trained on this run's own stage 1, and metrics.json points at the files that were written
    assert first["fader"]["config"]["fader"]["ckpt_path"] is None
    stage2 = FADeRModule.load_from_checkpoint(first["fader"]["checkpoint"])
    stage1 = torch.load(first["ear"]["checkpoint"], weights_only=True)["state_dict"]
    assert all(torch.equal(stage2.ear.unet.state_dict()[k[len("model.unet."):]], v) for k, v in stage1.items()
               if k.startswith("model.unet."))  # fmt: skip
    assert not list((tmp_path / "out/checkpoints").rglob("*-v1.ckpt"))


def test_overwrite_replaces_the_earlier_run(tmp_path: Path) -> None:
    train(compose_train_cfg(tmp_path, SMALL))
    train(compose_train_cfg(tmp_path, [*SMALL, "seed=5", "overwrite=true"]))
    assert load_results(tmp_path / "out")["ear"]["seed"] == 5
    assert sorted(p.name for p in (tmp_path / "out/checkpoints/ear").iterdir()) == ["last.ckpt"]


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    with run_lock(tmp_path) as lock:
        assert lock.read_text().split()[0] == str(os.getpid())
        with (
            pytest.raises(ConfigError, match=rf"in use by process {os.getpid()}.*delete .*{LOCK_FILE}"),
            run_lock(tmp_path),
        ):
            pass
    assert not (tmp_path / LOCK_FILE).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(f"{dead.stdout.strip()} {os.uname().nodename}")
    with run_lock(tmp_path):  # the process that wrote it is gone
        pass


def test_concurrent_job_in_a_locked_folder_is_refused(tmp_path: Path) -> None:
    cfg = compose_train_cfg(tmp_path, SMALL)
    # another job holds the folder
    with run_lock(tmp_path / "out"), pytest.raises(ConfigError, match="is in use by process"):
        train(cfg)
    assert not (tmp_path / "out/metrics.json").exists()


def test_resume_is_allowed_into_its_own_folder(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    prepare_run_dir(tmp_path, resume=True, overwrite=False)
    with pytest.raises(ConfigError, match=str(tmp_path)):
        prepare_run_dir(tmp_path, resume=False, overwrite=False)


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_reused_stage1_is_evaluated_with_the_jobs_settings(tmp_path: Path, pooling: str) -> None:
    store = tmp_path.parent / "shared_store"
    base = [*SMALL, "reuse_stage1=true", "stage=both", "fader.trainer.max_epochs=1", f"model.scoring.pooling={pooling}",
            "model.fpr_limit=0.2"]  # fmt: skip
    cfg = compose_train_cfg(tmp_path, base, data_root=tmp_path.parent / "shared_data")
    cfg.paths.stage1_store = str(store)
    results = train(cfg)
    stage2 = FADeRModule.load_from_checkpoint(results["fader"]["checkpoint"])
    assert stage2.ear.scorer.pooling == pooling  # stage 2 scores as the job says, not as the stored stage 1 did
    assert results["ear"]["config"]["model"]["scoring"]["pooling"] == pooling
    for stage in ("ear", "fader"):
        stored = load_results(tmp_path / "out")[stage]
        assert stored["config"]["model"]["scoring"]["pooling"] == pooling
    assert len(list(store.glob("*.ckpt"))) == 1  # the second parametrisation reused the first one's stage 1


def test_overwrite_never_touches_a_folder_in_use(tmp_path: Path) -> None:
    train(compose_train_cfg(tmp_path, SMALL))
    before = (tmp_path / "out/metrics.json").read_bytes()
    checkpoints = sorted((tmp_path / "out/checkpoints").rglob("*.ckpt"))
    assert checkpoints
    with run_lock(tmp_path / "out"), pytest.raises(ConfigError, match="is in use by process"):
        train(compose_train_cfg(tmp_path, [*SMALL, "overwrite=true", "seed=1"]))
    assert (tmp_path / "out/metrics.json").read_bytes() == before  # the running job's files are intact
    assert sorted((tmp_path / "out/checkpoints").rglob("*.ckpt")) == checkpoints


def test_a_run_folder_that_is_a_file_is_refused_by_name(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("a file")
    with pytest.raises(ConfigError, match=r"hydra.run.dir.*taken is a file"), run_lock(taken):
        pass
    assert taken.read_text() == "a file"

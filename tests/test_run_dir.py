"""Run folders that cannot mix: re-runs, overwrite, locks, and reused stage-1 models with the job's own settings."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.errors import ConfigError
from fader_lightning.jobs.run_dir import LOCK_FILE, REPLACED_PREFIX, prepare_run_dir, run_lock
from fader_lightning.jobs.train import train
from fader_lightning.models import FADeRModule
from fader_lightning.results import load_results

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
    assert all(torch.equal(stage2.ear.unet.state_dict()[k[len("ear.unet."):]], v) for k, v in stage1.items()
               if k.startswith("ear.unet."))  # fmt: skip
    assert not list((tmp_path / "out/checkpoints").rglob("*-v1.ckpt"))


def test_overwrite_replaces_the_earlier_run_and_keeps_it_aside(tmp_path: Path) -> None:
    train(compose_train_cfg(tmp_path, SMALL))
    metrics, weights = (tmp_path / "out/metrics.json").read_bytes(), (tmp_path / "out/checkpoints/ear/last.ckpt")
    weights = weights.read_bytes()
    train(compose_train_cfg(tmp_path, [*SMALL, "seed=5", "overwrite=true"]))
    assert load_results(tmp_path / "out")["ear"]["seed"] == 5
    assert sorted(p.name for p in (tmp_path / "out/checkpoints/ear").iterdir()) == ["last.ckpt"]
    (replaced,) = (tmp_path / "out").glob(f"{REPLACED_PREFIX}*")  # nothing deleted: the earlier run, whole
    assert (replaced / "metrics.json").read_bytes() == metrics
    assert (replaced / "checkpoints/ear/last.ckpt").read_bytes() == weights


def test_overwrite_redoes_stage2_in_place_on_the_stage1_checkpoint_it_reads(tmp_path: Path) -> None:
    train(compose_train_cfg(tmp_path, [*SMALL, "stage=ear"]))
    stage1 = load_results(tmp_path / "out")["ear"]
    ckpt = tmp_path / "out/checkpoints/ear/last.ckpt"
    weights = ckpt.read_bytes()
    redo = [*SMALL, "stage=fader", f"fader.ckpt_path={ckpt}", "fader.trainer.max_epochs=1", "overwrite=true"]
    results = train(compose_train_cfg(tmp_path, redo))
    assert ckpt.read_bytes() == weights  # still in place, where fader.ckpt_path points
    assert results["fader"]["status"] == "ok"
    assert load_results(tmp_path / "out")["ear"] == stage1  # the entry of the kept checkpoint stays
    assert load_results(tmp_path / "out")["fader"]["seed"] == results["fader"]["seed"]
    (replaced,) = (tmp_path / "out").glob(f"{REPLACED_PREFIX}*")
    assert json.loads((replaced / "metrics.json").read_text()) == {"ear": stage1}
    assert not (replaced / "checkpoints").exists()  # the only checkpoint there was the one read


def our_run(folder: Path) -> dict[str, Path]:
    """A run folder as a stage=both job leaves it: both stages' checkpoints and their metrics.json entries."""
    files = {name: folder / "checkpoints" / name for name in ("ear/last.ckpt", "ear/old.ckpt", "fader/last.ckpt")}
    for name, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    entries = {stage: {"status": "ok", "checkpoint": str(files[f"{stage}/last.ckpt"])} for stage in ("ear", "fader")}
    (folder / "metrics.json").write_text(json.dumps(entries))
    return files


def test_overwrite_keeps_every_checkpoint_the_job_reads_and_moves_the_rest(tmp_path: Path) -> None:
    files = our_run(tmp_path)
    reads = {"fader.ckpt_path": str(files["ear/last.ckpt"]), "ckpt_path": None}
    replaced = prepare_run_dir(tmp_path, resume=False, overwrite=True, reads=reads)
    assert replaced is not None and replaced.parent == tmp_path.resolve() and replaced.name.startswith(REPLACED_PREFIX)
    assert files["ear/last.ckpt"].read_text() == "ear/last.ckpt"
    assert not files["ear/old.ckpt"].exists() and not files["fader/last.ckpt"].exists()
    assert (replaced / "checkpoints/ear/old.ckpt").read_text() == "ear/old.ckpt"
    assert (replaced / "checkpoints/fader/last.ckpt").read_text() == "fader/last.ckpt"
    assert set(json.loads((replaced / "metrics.json").read_text())) == {"ear", "fader"}
    assert set(load_results(tmp_path)) == {"ear"}  # the entry of the kept checkpoint stays true, and stays
    # named through a symbolic link too
    files = our_run(tmp_path / "again")
    (tmp_path / "link.ckpt").symlink_to(files["fader/last.ckpt"])
    prepare_run_dir(tmp_path / "again", resume=False, overwrite=True, reads={"ckpt_path": tmp_path / "link.ckpt"})
    assert files["fader/last.ckpt"].read_text() == "fader/last.ckpt" and not files["ear/last.ckpt"].exists()
    assert set(load_results(tmp_path / "again")) == {"fader"}


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"metrics.json": '{"accuracy": 0.9}'}, "a metrics.json that is not a {stage: entry} object"),
        ({"metrics.json": '{"ear": {"auroc": 0.9}}'}, "a metrics.json that is not"),  # no status: not an entry of ours
        ({"metrics.json": "{}"}, "a metrics.json that is not"),
        ({"metrics.json": '{"ear": {"status": '}, "a metrics.json that is not"),  # not JSON
        ({"checkpoints/epoch=3.ckpt": "w"}, r"checkpoints/epoch=3\.ckpt \(a run keeps only ear/ and fader/ there\)"),
        ({"checkpoints/ear/last.ckpt": "w", "checkpoints/lora/a.pt": "w"}, "checkpoints/lora"),
        ({"checkpoints": "a file"}, "a file checkpoints"),
    ],
)
def test_overwrite_refuses_a_folder_that_is_not_a_run_of_ours(
    tmp_path: Path, files: dict[str, str], named: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    for overwrite in (True, False):  # without overwrite=true, the message does not suggest it
        with pytest.raises(ConfigError, match=r"did not write.*choose a new folder") as err:
            prepare_run_dir(tmp_path, resume=False, overwrite=overwrite)
        assert re.search(named, str(err.value)) and "overwrite=true (" not in str(err.value)
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


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
    assert prepare_run_dir(tmp_path, resume=True, overwrite=False) is None
    with pytest.raises(ConfigError, match=rf"{tmp_path}.*overwrite=true \(which moves it into .*/\.replaced-<time>/"):
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

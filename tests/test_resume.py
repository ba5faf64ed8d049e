"""A resume continues only the run its folder started, with the settings it started with; later stages go stale."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from conftest import TINY_UNET, compose_train_cfg, run_command
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.jobs.train import train
from fader_lightning.results import STALE, load_results

SMALL = ["data.image_size=32", "data.n_train=8", "data.n_test_good=4", "data.n_test_defect=2", "data.size=64",
         TINY_UNET, "logger=none", "callbacks.overlays.num_samples=0", "trainer.enable_progress_bar=false"]  # fmt: skip


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch stage-1 and stage-2 run; its folder is ``<tmp>/out``."""
    root = tmp_path_factory.mktemp("resume")
    train(compose_train_cfg(root, [*SMALL, "stage=both", "trainer.max_epochs=1", "fader.trainer.max_epochs=1"]))
    return root


def ckpt_of(root: Path) -> Path:
    return root / "out/checkpoints/ear/last.ckpt"


def test_a_resume_runs_in_the_folder_that_wrote_its_checkpoint(stage1_run: Path, tmp_path: Path) -> None:
    link = tmp_path / "latest"
    link.symlink_to(stage1_run / "out", target_is_directory=True)  # as logs/train/runs/latest
    cfg = compose_train_cfg(tmp_path, [*SMALL, f"ckpt_path={link}/checkpoints/ear/last.ckpt"])
    assert cfg.hydra.run.dir == str((stage1_run / "out").resolve())
    fresh = compose_train_cfg(tmp_path, SMALL)
    assert fresh.resume_dir is None and str(tmp_path / "logs/train/runs/") in fresh.hydra.run.dir


def test_a_checkpoint_of_another_folder_is_refused(stage1_run: Path, tmp_path: Path) -> None:
    cfg = compose_train_cfg(tmp_path, [*SMALL, f"ckpt_path={ckpt_of(stage1_run)}", "trainer.max_epochs=2"])
    with pytest.raises(ConfigError, match=rf"not a stage-1 checkpoint of this run folder .*{stage1_run / 'out'}"):
        train(cfg)
    assert not (tmp_path / "out").exists()  # nothing started


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data.image_size=48", r"data\.image_size=\[48, 48\] here, \[32, 32\] in the checkpoint"),
        ("masking=saliency", r"masking\.name=saliency here, checkerboard in the checkpoint"),
        ("data.category=synth_texture", r"data\.category=synth_texture here, synth_object in the checkpoint"),
        ("data.interpolation=bilinear", r"data\.interpolation=bilinear here, area in the checkpoint"),
    ],
)
def test_a_resume_with_other_settings_is_refused_naming_both(stage1_run: Path, override: str, named: str) -> None:
    cfg = compose_train_cfg(stage1_run, [*SMALL, f"ckpt_path={ckpt_of(stage1_run)}", "trainer.max_epochs=2", override])
    before = ckpt_of(stage1_run).read_bytes()
    with pytest.raises(ConfigError, match=named):
        train(cfg)
    assert ckpt_of(stage1_run).read_bytes() == before


def test_a_resume_must_train_stage_one_and_its_file_must_exist(stage1_run: Path) -> None:
    cfg = compose_train_cfg(stage1_run, [*SMALL, f"ckpt_path={ckpt_of(stage1_run)}", "stage=fader",
                                         f"fader.ckpt_path={ckpt_of(stage1_run)}"])  # fmt: skip
    with pytest.raises(ConfigError, match="stage=fader trains only stage 2"):
        train(cfg)
    missing = stage1_run / "out/checkpoints/ear/gone.ckpt"
    with pytest.raises(CheckpointError, match=f"ckpt_path={missing} does not exist"):
        train(compose_train_cfg(stage1_run, [*SMALL, f"ckpt_path={missing}"]))


def test_redoing_stage_one_marks_the_later_stage_stale(tmp_path: Path) -> None:
    train(compose_train_cfg(tmp_path, [*SMALL, "stage=both", "trainer.max_epochs=1", "fader.trainer.max_epochs=1"]))
    assert load_results(tmp_path / "out")["fader"]["status"] == "ok"
    ckpt = ckpt_of(tmp_path)
    results = train(compose_train_cfg(tmp_path, [*SMALL, "stage=ear", "trainer.max_epochs=2", f"ckpt_path={ckpt}"]))
    stored = load_results(tmp_path / "out")
    assert results["ear"]["status"] == stored["ear"]["status"] == "ok" and stored["ear"]["epochs"] == 2
    assert stored["fader"]["status"] == STALE
    assert f"ear was resumed from {ckpt}" in stored["fader"]["error"]
    assert "metrics" in stored["fader"]  # what it measured stays readable, marked


def test_memory_is_checked_before_the_image_cache_is_filled(tmp_path: Path) -> None:
    cfg = compose_train_cfg(tmp_path, ["data.image_size=4096", "data.n_train=8", "data.size=64", "logger=none",
                                       "data.train_batch_size=8"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"data\.image_size=4096x4096 with data\.train_batch_size=8 needs about"):
        train(cfg)
    cache = Path(cfg.data.image_cache)
    assert not cache.exists() or not any(path.is_file() for path in cache.rglob("*"))
    assert load_results(tmp_path / "out")["ear"]["status"] == "failed"


@pytest.mark.parametrize("record_fails", [False, True])
def test_a_full_disk_ends_in_one_line_and_a_record_where_one_can_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture, record_fails: bool
) -> None:
    from fader_lightning import results
    from fader_lightning.cli.train import main
    from fader_lightning.models import EARModule

    full = tmp_path / "out/checkpoints/ear/last.ckpt"

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(full))

    monkeypatch.setattr(EARModule, "training_step", no_space)
    if record_fails:
        monkeypatch.setattr(results, "atomic_write_json", no_space)
    code = run_command(main, [*SMALL, "stage=both", f"hydra.run.dir={tmp_path / 'out'}", f"paths.log_dir={tmp_path}"])
    output = "".join(capfd.readouterr())
    assert code == 1 and "Traceback" not in output
    assert f"OSError: No space left on device writing {full}. Free space there" in output
    if record_fails:
        assert "ear failed, and its entry could not be written" in output
        assert not (tmp_path / "out/metrics.json").exists()
    else:
        stored = load_results(tmp_path / "out")
        assert stored["ear"]["status"] == stored["fader"]["status"] == "failed"
        assert "No space left on device" in stored["ear"]["error"]


def test_a_resume_into_a_folder_with_a_foreign_results_file_is_refused_before_training(tmp_path: Path) -> None:
    train(compose_train_cfg(tmp_path, [*SMALL, "trainer.max_epochs=1"]))
    (tmp_path / "out/metrics.json").write_text("{not json")
    cfg = compose_train_cfg(tmp_path, [*SMALL, "trainer.max_epochs=2", f"ckpt_path={ckpt_of(tmp_path)}"])
    stamp = ckpt_of(tmp_path).stat().st_mtime_ns
    with pytest.raises(ConfigError, match="which fader-lightning did not write"):
        train(cfg)
    assert ckpt_of(tmp_path).stat().st_mtime_ns == stamp  # nothing trained

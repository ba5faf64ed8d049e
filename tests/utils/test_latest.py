"""``logs/<task>/latest``: replaced atomically, relative, and never over a real folder."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from fader_lightning.utils.latest import link_latest


def test_the_link_follows_the_newest_run_and_survives_a_copy(tmp_path: Path) -> None:
    task = tmp_path / "logs" / "train"
    first, second = task / "runs" / "a" / "1", task / "runs" / "b" / "2"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    assert link_latest(task, first) == task / "latest" and (task / "latest").resolve() == first.resolve()
    link_latest(task, second)
    assert (task / "latest").resolve() == second.resolve()
    assert not Path((task / "latest").readlink()).is_absolute()  # a copied logs/ still links inside itself
    copy = tmp_path / "copy"
    (tmp_path / "logs").rename(copy)
    assert (copy / "train" / "latest").resolve() == (copy / "train" / "runs" / "b" / "2").resolve()


def test_a_real_folder_named_latest_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "keep.txt").write_text("mine")
    with caplog.at_level(logging.WARNING):
        assert link_latest(tmp_path, tmp_path / "run") is None
    assert (tmp_path / "latest" / "keep.txt").read_text() == "mine" and "is not a link" in caplog.text


def test_an_output_folder_that_cannot_be_written_is_one_line_before_any_job(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for mode, key in ((["-m"], "hydra.sweep.dir"), ([], "hydra.run.dir")):
        cmd = [sys.executable, "-m", "fader_lightning.cli.train", *mode, f"{key}={a_file / 'out'}", "logger=none"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 1
        assert f"ConfigError: {key}={a_file / 'out'} cannot be created" in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "data").exists()  # nothing ran

"""Logging a report to W&B: the mode a machine gets, and an offline run in its group."""

from __future__ import annotations

from pathlib import Path

import pytest

from fader_lightning.aggregate import aggregate, wandb_mode
from sweeps import Sweep
from wandb_records import read_run


def test_wandb_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode() == "offline"
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")  # the key is for another host
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_wandb_offline_run(complete: tuple[list[Path], Sweep], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import wandb
    except ImportError:
        pytest.skip("wandb is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    dirs, _ = complete
    aggregate(dirs[:1], "wb", out_root=tmp_path / "results", use_wandb=True)
    assert wandb.run is None  # the run it started is finished
    runs = list((tmp_path / "results" / "wb" / "wandb").glob("offline-run-*"))  # beside the table it logged
    assert len(runs) == 1
    run = read_run(runs[0])
    assert run.run.job_type == "aggregate"
    assert run.run.run_group == f"train-{dirs[0].name}"  # the group the sweep's jobs logged to

"""``fader-aggregate`` on the command line: files and table printed, exit code 2 when nothing is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from fader_lightning.cli.aggregate import main
from sweeps import Sweep


def test_cli_prints_paths_and_table(
    complete: tuple[list[Path], Sweep], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs, _ = complete
    out = tmp_path / "results"
    assert main([*map(str, dirs), "--name", "cli", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "cli" / "table.md") in printed
    assert "| bottle" in printed and "| mean" in printed


def test_cli_exit_2_when_nothing_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), "--name", "x", "--out", str(tmp_path / "results")]) == 2
    assert f"no training job found under {empty}" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()

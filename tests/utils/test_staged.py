"""Sets of outputs swapped in whole (``staged``), and outputs kept apart from the inputs (``check_apart``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fader_lightning.errors import ConfigError
from fader_lightning.utils import io
from fader_lightning.utils.io import check_apart, staged


def contents(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): path.read_text() for path in folder.rglob("*") if path.is_file()}


def earlier_set(folder: Path) -> None:
    (folder / "maps").mkdir(parents=True)
    (folder / "maps" / "old.png").write_text("old map")
    (folder / "scores.csv").write_text("old table")
    (folder / "notes.txt").write_text("not part of the set")


def test_a_set_is_replaced_whole_and_the_rest_is_left_alone(tmp_path: Path) -> None:
    earlier_set(tmp_path)
    with staged(tmp_path, ["maps", "overlays", "scores.csv"]) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".")
        (staging / "overlays").mkdir()
        (staging / "overlays" / "new.png").write_text("new overlay")
        (staging / "scores.csv").write_text("new table")
    # maps/ was not written this time: the earlier maps do not stay beside the new table
    assert contents(tmp_path) == {"overlays/new.png": "new overlay", "scores.csv": "new table",
                                  "notes.txt": "not part of the set"}  # fmt: skip
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt", "overlays", "scores.csv"]


def test_a_failed_block_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    earlier_set(tmp_path)
    before = contents(tmp_path)
    with pytest.raises(OSError, match="disk full"), staged(tmp_path, ["maps", "scores.csv"]) as staging:
        (staging / "scores.csv").write_text("half")
        raise OSError("disk full")
    assert contents(tmp_path) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["maps", "notes.txt", "scores.csv"]


def test_a_failed_rename_puts_the_earlier_set_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    earlier_set(tmp_path)
    before = contents(tmp_path)
    rename = os.rename

    def failing(source: Path, target: Path) -> None:
        moving_in = Path(source).parent.name.startswith(".staged-")
        if moving_in and Path(target) == tmp_path / "scores.csv":  # the second new entry
            raise OSError("rename failed")
        rename(source, target)

    monkeypatch.setattr(io.os, "rename", failing)
    with pytest.raises(OSError, match="rename failed"), staged(tmp_path, ["maps", "scores.csv"]) as staging:
        (staging / "maps").mkdir()
        (staging / "maps" / "new.png").write_text("new map")
        (staging / "scores.csv").write_text("new table")
    assert contents(tmp_path) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["maps", "notes.txt", "scores.csv"]


def test_outputs_apart_from_inputs(tmp_path: Path) -> None:
    ckpt, data = tmp_path / "model.ckpt", tmp_path / "data"
    ckpt.write_text("weights")
    data.mkdir()
    (tmp_path / "link.onnx").symlink_to(ckpt)
    refused = {
        ("output", ckpt, False, ()): r"output=.*model\.ckpt is ckpt_path=.*model\.ckpt: writing it would replace",
        ("output", tmp_path / "link.onnx", False, ()): r"link\.onnx is ckpt_path=",  # through a link
        ("output", tmp_path / "m.xml", False, (tmp_path / "model.ckpt",)): r"m\.xml \(its file .*model\.ckpt\) is ckpt",
        ("output", tmp_path / "x" / ".." / "data", True, ()): r"is data=",
        ("output", data / "pred", True, ()): r"pred lies inside data=.*a re-run would read the outputs as inputs",
        ("output", tmp_path, True, ()): r"holds ckpt_path=.*choose another output= apart from every input",
    }
    for (key, output, folder, writes), message in refused.items():
        with pytest.raises(ConfigError, match=message):
            check_apart(key, output, {"ckpt_path": ckpt, "data": data, "missing": None}, folder=folder, writes=writes)
    # a file written inside an input folder, and a folder beside the inputs, are fine
    check_apart("output", data / "model.onnx", {"ckpt_path": ckpt, "data": data})
    check_apart("output", tmp_path / "pred", {"ckpt_path": ckpt, "data": data}, folder=True)

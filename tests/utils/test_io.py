"""Atomic writes: whole files, the mode a plain open gives, and temporary names that never collide."""

import json
import os
import stat
from pathlib import Path

from fader_lightning.utils.io import atomic_save, atomic_write_json


def test_files_get_the_umask_mode_not_0600(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        written = atomic_write_json(tmp_path / "metrics.json", {"a": 1})
        saved = atomic_save(tmp_path / "map.png", lambda path: path.write_bytes(b"png"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644
    assert saved.read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png", "metrics.json"]  # no temporary left


def test_temporary_names_are_unique_per_call(tmp_path: Path) -> None:
    seen = []
    for _ in range(2):
        atomic_save(tmp_path / "a.png", lambda path: seen.append(path.name) or path.write_bytes(b"x"))
    assert len(set(seen)) == 2 and all(name.endswith(".tmp.png") for name in seen)


def test_json_is_strict_undefined_metrics_are_null(tmp_path: Path) -> None:
    payload = {"metrics": {"pixel_auroc": float("nan"), "image_auroc": 0.5}, "curve": (float("inf"), 1.0)}
    path = atomic_write_json(tmp_path / "metrics.json", payload)

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    loaded = json.loads(path.read_text(), parse_constant=refuse)
    assert loaded == {"metrics": {"pixel_auroc": None, "image_auroc": 0.5}, "curve": [None, 1.0]}

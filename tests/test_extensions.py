"""docs/ARCHITECTURE.md's "Where to add things", followed as written: a package of one's own adds a masking method, a
dataset and a FADeR target, and ``fader-train`` trains both stages with them.

The files are the document's own blocks, written where it says; installing the package (``pip install -e .``) is
what pip would write for it (the package's folder on the path and a ``.dist-info`` with its entry points), so the
suite's environment is left as it was; the command is the document's, with the test suite's small sizes appended.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from conftest import REPO_ROOT
from fader_lightning.data.synthetic import make_mvtec_tree
from test_docs_commands import TRAIN_SHRINK

DOC = REPO_ROOT / "docs" / "ARCHITECTURE.md"
SECTION = DOC.read_text(encoding="utf-8").split("## Where to add things", 1)[1]


def documented_files() -> dict[str, str]:
    """``{path: text}`` of every block the section introduces with the file it belongs in (`` `path`: ``)."""
    blocks = re.findall(r"`([\w./-]+\.(?:py|yaml))`:\n\n```\w+\n(.*?)```", SECTION, re.S)
    return dict(blocks)


def install(site: Path) -> None:
    """The ``.dist-info`` that ``pip install -e .`` of the documented ``pyproject.toml`` writes: its entry points."""
    project = tomllib.loads(re.search(r"```toml\n(.*?)```", SECTION, re.S).group(1))["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) for group, points in groups.items())
    )


def write_listing(root: Path, category: str) -> None:
    """A CSV dataset as the documented ``CsvDataModule`` reads it, of generated images."""
    make_mvtec_tree(root, [category], n_train=12, n_test_good=4, n_test_defect=3, size=64)
    rows = []
    for image in sorted((root / category).rglob("*.png")):
        parts = image.relative_to(root / category).parts
        if parts[0] == "ground_truth":
            continue
        defect = parts[1]
        mask = root / category / "ground_truth" / defect / f"{image.stem}_mask.png"
        rows.append({"path": image.relative_to(root).as_posix(), "split": parts[0], "label": int(defect != "good"),
                     "mask": mask.relative_to(root).as_posix() if mask.is_file() else ""})  # fmt: skip
    with (root / f"{category}.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["path", "split", "label", "mask"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_a_package_of_ones_own_adds_a_masking_method_a_dataset_and_a_target(tmp_path: Path) -> None:
    files = documented_files()
    assert set(files) == {"my_package/masks.py", "my_configs/masking/stripes.yaml", "my_package/data.py",
                          "my_configs/data/csv.yaml", "my_package/targets.py"}  # fmt: skip
    work = tmp_path / "work"
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    site = tmp_path / "site"
    install(site)
    write_listing(work / "parts", "parts")
    command = re.search(r"```console\n(.*?)```", SECTION, re.S).group(1).strip()
    args = shlex.split(command.replace("$PWD", str(work)))
    assert args[0] == "fader-train"
    # the .dist-info's folder, and the package's own (what an editable install puts on the path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(work)]), "FADER_ROOT": str(work)}
    script = Path(sys.executable).with_name("fader-train")
    proc = subprocess.run([str(script), *args[1:], *TRAIN_SHRINK], cwd=work, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (metrics,) = (work / "logs" / "train" / "runs").glob("*/*/metrics.json")
    results = json.loads(metrics.read_text())
    assert results["ear"]["status"] == "ok" and results["fader"]["status"] == "ok", results
    config = results["fader"]["config"]
    assert config["masking"]["name"] == "stripes" and config["fader"]["target"] == "squared"
    assert config["data"]["_target_"] == "my_package.data.CsvDataModule"
    assert 0.0 <= results["ear"]["metrics"]["image_auroc"] <= 1.0  # scored on the listed test images


def test_an_unknown_name_is_refused_when_built() -> None:
    from fader_lightning.errors import ConfigError
    from fader_lightning.masking import build_mask_generator

    with pytest.raises(ConfigError, match=r"^name='stripes' is not a masking method; known: attention"):
        build_mask_generator("stripes")  # not installed in the suite's environment

"""Every shell command of README.md and docs/*.md runs as written, from a folder outside the checkout.

Each fenced ``bash`` block runs as a script (its variables and line continuations included) in one working folder,
in document order, so that later commands find the runs of earlier ones (``logs/train/runs/latest``) as a user's would.
The project's commands (``.venv/bin/fader-*`` and ``fader-*``) are wrappers that append :data:`SHRINK` to the
command line (a tiny input size and U-Net, one epoch: later overrides win in Hydra), ``FADER_DATA_DIR`` and the
docs' ``../shared/data`` point at the shared real data, and ``SEED=0`` stands for the docs' loop over seeds.
Nothing else is changed. A command that cannot run here is listed in :data:`EXCLUDED` with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SHARED_DATA

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
TRAIN_SHRINK = ["data.image_size=32", "model.unet.widths=[8,16,32,64]", "trainer.max_epochs=1",
                "fader.trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                "callbacks.overlays.num_samples=2"]  # fmt: skip
SHRINK = {
    "fader-train": TRAIN_SHRINK,
    "fader-eval": ["trainer.enable_progress_bar=false", "callbacks.overlays.num_samples=2"],
    "fader-predict": [],
    "fader-export": [],
    "fader-check-data": [],
    "fader-aggregate": [],
}
"""What each command gets appended: sizes and epochs only."""
EXCLUDED = {
    "make test": "the test suite itself",
    "make reproduce-table DATASET=mvtec_ad2": "needs MVTec AD 2; its reader runs on generated stand-ins here",
    "make reproduce-table DATASET=realiad": "needs Real-IAD; its reader runs on generated stand-ins here",
    "make reproduce-table DATASET=unified_mvtec": "needs the 15 MVTec AD categories; the unified sweep of bottle and "
    "grid runs here",
    "--dataset mvtec_ad2": "needs MVTec AD 2; data.layout=mvtec_ad2 runs its reader on a generated stand-in here",
    "--dataset mvtec3d": "needs MVTec 3D-AD; its reader runs on generated stand-ins (tests/data/test_new_layouts.py)",
    "--dataset realiad": "needs Real-IAD; its reader runs on generated stand-ins (tests/data/test_new_layouts.py)",
    "make demo": "the demo sweep from the checkout (minutes); the sweep it runs, experiment=table_demo, runs here",
    "make reproduce-table DATASET=demo": "the same as make demo",
    "make reproduce-table DATASET=mvtec": "needs the 15 MVTec AD categories; only bottle and grid are here",
    "make reproduce-table DATASET=visa": "needs the VisA images; only its split file is here",
    "make eval": "runs from the checkout; the fader-eval commands before it are the same job from outside it",
    "make lint": "part of CI's checks, not a user's path",
    "make format": "rewrites the checkout",
    "make lock": "re-resolves every dependency from the package registry",
    "make bench-peers": "needs its own environment with anomalib (.venv-peers)",
    "--dataset visa": "needs the VisA images; only its split file is here",
    "hydra/launcher=slurm": "needs a SLURM cluster; its sweep folders are resolved in tests/test_configs.py",
    "<": "a template: its <placeholders> are the user's own run and variant",
}
"""Commands (by a substring) that do not run here, and why."""


def blocks() -> list[tuple[str, str]]:
    """``(document, script)`` of every fenced bash block, in order."""
    found = []
    for doc in DOCS:
        for match in re.finditer(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            found.append((doc.relative_to(REPO_ROOT).as_posix(), match.group(1)))
    return found


def commands(script: str) -> list[str]:
    """The commands of a block: continuation lines joined, comments and blank lines dropped."""
    joined = script.replace("\\\n", " ")
    lines = (re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def excluded(command: str) -> str | None:
    """Why a command does not run here, or ``None``."""
    return next((reason for key, reason in EXCLUDED.items() if key in command), None)


def write_wrappers(folder: Path) -> None:
    """The project's commands in ``folder`` and in ``folder/.venv/bin``, each appending its :data:`SHRINK`."""
    real = Path(sys.executable).parent
    for where in (folder / "bin", folder / ".venv" / "bin"):
        where.mkdir(parents=True, exist_ok=True)
        for name, extra in SHRINK.items():
            wrapper = where / name
            wrapper.write_text(
                f"#!{sys.executable}\nimport os, sys\nreal = {str(real / name)!r}\n"
                f"os.execv(real, [real, *sys.argv[1:], *{extra!r}])\n"
            )
            wrapper.chmod(0o755)


def user_images(folder: Path) -> None:
    """The images a user would bring to ``fader-predict`` and ``fader-export``: new ones and known-good ones."""
    bottle = SHARED_DATA / "mvtec_ad" / "bottle" / "test"
    (folder / "new_images").mkdir()
    (folder / "known_good").mkdir()
    for defect in ("good", "broken_large"):
        for image in sorted((bottle / defect).glob("*.png"))[:3]:
            shutil.copy(image, folder / "new_images" / f"{defect}_{image.name}")
    for image in sorted((bottle / "good").glob("*.png"))[3:9]:
        shutil.copy(image, folder / "known_good" / image.name)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Every block run in document order from one folder outside the checkout."""
    if not (SHARED_DATA / "mvtec_ad" / "bottle").is_dir():
        pytest.skip(f"the docs' commands use MVTec AD bottle and grid from {SHARED_DATA}, which is absent")
    work = tmp_path_factory.mktemp("user")
    assert not work.resolve().is_relative_to(REPO_ROOT)
    write_wrappers(work)
    user_images(work)
    shared = work / "shared"  # the docs' ../shared/data, seen from a checkout in work/checkout
    shared.mkdir()
    (shared / "data").symlink_to(SHARED_DATA)
    (work / "checkout").mkdir()
    env = {**os.environ, "PATH": f"{work / 'bin'}:{os.environ['PATH']}", "FADER_DATA_DIR": str(SHARED_DATA),
           "WANDB_MODE": "offline", "SEED": "0"}  # fmt: skip
    env.pop("FADER_ROOT", None)
    outcomes = []
    for doc, script in blocks():
        lines = commands(script)
        skipped = [(line, excluded(line)) for line in lines if excluded(line)]
        outcomes += [{"doc": doc, "command": line, "excluded": reason} for line, reason in skipped]
        runnable = [line for line in lines if not excluded(line)]
        if not runnable:
            continue
        # the docs' own commands use ../shared/data from the checkout: run them from work/checkout
        cwd = work / "checkout" if doc.startswith("docs/") else work
        proc = subprocess.run(["bash", "-c", "set -e\n" + script_of(script)], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=900)  # fmt: skip
        outcomes.append({"doc": doc, "commands": runnable, "returncode": proc.returncode,
                         "output": (proc.stdout + proc.stderr)[-4000:]})  # fmt: skip
    # what make demo runs (on the generated data, written under ./data as make demo does), from outside the checkout
    demo = ".venv/bin/fader-train experiment=table_demo"
    env.pop("FADER_DATA_DIR")
    proc = subprocess.run(["bash", "-c", demo], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    outcomes.append({"doc": "Makefile (make demo)", "commands": [demo], "returncode": proc.returncode,
                     "output": (proc.stdout + proc.stderr)[-4000:]})  # fmt: skip
    return work, outcomes


def script_of(script: str) -> str:
    """A block as it runs: the excluded commands left out, everything else as written."""
    kept = []
    for line in script.replace("\\\n", " ").splitlines():
        kept.append(
            f": excluded: {shlex.quote(line)}" if excluded(line) and not line.lstrip().startswith("#") else line
        )
    return "\n".join(kept)


def test_every_command_runs_as_written(ran: tuple[Path, list[dict]]) -> None:
    _, outcomes = ran
    failed = [o for o in outcomes if o.get("returncode", 0) != 0]
    assert not failed, "\n\n".join(f"{o['doc']}: {o['commands']}\n{o['output']}" for o in failed)
    ran_commands = [c for o in outcomes for c in o.get("commands", [])]
    assert any("fader-train data=mvtec" in c for c in ran_commands)  # the README's headline command
    assert len(ran_commands) >= 12


def test_what_the_commands_leave_is_what_the_readme_says(ran: tuple[Path, list[dict]]) -> None:
    work, _ = ran
    latest = work / "logs" / "train" / "latest"
    assert latest.is_symlink() and latest.resolve().parent.name == "multiruns"  # the sweep came last
    runs = {run.name for run in (work / "logs" / "train" / "runs").iterdir() if not run.is_symlink()}
    # the generated MVTec AD 2 stand-in, one category, and the unified model of two
    assert runs == {"synthetic-synth_object-checkerboard-s0", "mvtecad-bottle-checkerboard-s0",
                    "mvtecad-bottle+grid-checkerboard-s0"}  # fmt: skip
    stand_in = next((work / "logs" / "train" / "runs" / "synthetic-synth_object-checkerboard-s0").iterdir())
    assert (stand_in / "metrics.json").is_file() and (work / "generated" / "mvtec_ad2" / "MANIFEST.json").is_file()
    unified = next((work / "logs" / "train" / "runs" / "mvtecad-bottle+grid-checkerboard-s0").iterdir())
    results = json.loads((unified / "metrics.json").read_text())
    assert set(results["fader"]["per_category"]) == {"bottle", "grid"}
    assert (work / "pred_unified" / "scores.csv").is_file()
    assert (work / "results" / "unified_vs_one_class" / "table.md").is_file()
    assert (work / "logs" / "train" / "runs" / "latest" / "checkpoints" / "fader" / "last.ckpt").is_file()
    assert (work / "results" / "my_sweep" / "table.md").is_file()
    demo = (work / "logs" / "table_demo" / "latest").resolve()
    assert len([job for job in demo.iterdir() if (job / "metrics.json").is_file()]) == 6  # 2 categories x 3 methods
    evals = {run.name for run in (work / "logs" / "eval" / "runs").iterdir() if not run.is_symlink()}
    assert evals == {"mvtecad-bottle-checkerboard-s0-fader", "mvtecad-bottle-checkerboard-s0-ear"}
    for name in ("detector.onnx", "detector_openvino.xml", "detector_int8.onnx", "pred/scores.csv"):
        assert (work / name).is_file(), name


def test_every_excluded_command_has_a_reason_and_exists() -> None:
    every = [line for _, script in blocks() for line in commands(script)]
    for key in EXCLUDED:
        assert any(key in line for line in every), f"{key!r} names no command of the docs any more"

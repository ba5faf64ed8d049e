"""A seeded fuzzer of the trust boundaries: settings, data files, caches, checkpoints and run folders.

Each case runs ``fader-train`` or ``fader-eval`` in this process as its console script runs, on a tiny generated
dataset, and lands in one bucket:

* ``held``: exit 0 and a right result (every stage ``ok`` with finite metrics, the value asked for recorded as given,
  and, where the input should not change the result, the same metrics as a reference run);
* ``clear``: exit 1 with a project error (or a storage message) that names the key or file;
* ``unclear``: a project error that names neither;
* ``raw``: a traceback, or an exit without a project error;
* ``silent``: exit 0 with a wrong or different result, or a payload that ran.

``tests/test_trust_fuzz.py`` asserts that no case is unclear, raw or silent. As a script it prints the buckets of every
group (``python tests/trust_fuzz.py --root DIR``); with ``PYTHONPATH=<another checkout>/src`` it measures that checkout.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import sys
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import TINY_UNET, run_command
from fader_lightning.cli.evaluate import main as eval_main
from fader_lightning.cli.train import main as train_main
from fader_lightning.data import verify
from fader_lightning.data.synthetic import make_mvtec_tree

HELD, CLEAR, UNCLEAR, RAW, SILENT = "held", "clear", "unclear", "raw", "silent"
BUCKETS = (HELD, CLEAR, UNCLEAR, RAW, SILENT)
FAILING = (UNCLEAR, RAW, SILENT)
PROJECT_ERRORS = ("DataError: ", "ConfigError: ", "CheckpointError: ", "TrainingError: ", "OSError: ")
CATEGORY = "synth_object"
BASE = ["data=mvtec", f"data.category={CATEGORY}", "data.image_size=32", TINY_UNET,
        "trainer.max_epochs=1", "logger=none", "callbacks.overlays.num_samples=0", "trainer.enable_progress_bar=false",
        "data.train_batch_size=4", "data.eval_batch_size=4"]  # fmt: skip
"""Every case's command line before its own overrides: stage 1 for one epoch on a 32 px copy of the tree."""
MAINS = {"train": train_main, "eval": eval_main}
SENTINEL = "payload-ran"
"""The file a ``_target_`` payload would write: a case where it exists is silent, whatever its exit."""


@dataclass
class Case:
    """One fuzz case: what it runs, what a clear error must name, and how a success is judged."""

    group: str
    name: str
    args: list[str]
    names: tuple[str, ...]
    command: str = "train"
    prepare: Callable[[], None] | None = None
    check: Callable[[Path], bool] | None = None
    """Given the run folder, whether a run that exited 0 is right (default: every stage ``ok``, finite metrics)."""
    expect: dict[str, object] = field(default_factory=dict)
    """Config keys whose recorded value must equal the given one when the run succeeds."""


@dataclass
class Workspace:
    """The folders of a fuzz session: a pristine data tree, reference runs and one folder per case."""

    root: Path
    counter: int = 0

    def __post_init__(self) -> None:
        self.pristine = make_mvtec_tree(self.root / "pristine", [CATEGORY], n_train=8, n_test_good=3,
                                        n_test_defect=2, size=48, seed=0)  # fmt: skip

    def case_dir(self) -> Path:
        self.counter += 1
        folder = self.root / f"case{self.counter:03d}"
        folder.mkdir()
        return folder

    def tree(self, folder: Path) -> Path:
        """A fresh copy of the pristine data tree under ``folder``."""
        return Path(shutil.copytree(self.pristine, folder / "data"))

    def command(self, folder: Path, data: Path | None = None, *extra: str) -> list[str]:
        """The base command line of a case that runs in ``folder/run`` on ``data`` (default: the pristine tree)."""
        return [*BASE, f"data.root={data or self.pristine}", f"hydra.run.dir={folder / 'run'}",
                f"paths.log_dir={folder / 'logs'}", f"paths.cache_dir={folder / 'cache'}", *extra]  # fmt: skip


def results_ok(run: Path) -> bool:
    """Whether ``run/metrics.json`` holds only ``ok`` entries with finite metrics."""
    try:
        results = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(results) and all(
        entry.get("status") == "ok"
        and all(value is None or math.isfinite(value) for value in entry.get("metrics", {}).values())
        for entry in results.values()
    )


def metrics_of(run: Path) -> dict[str, dict]:
    """``{stage: metrics}`` of a run folder."""
    return {stage: entry.get("metrics") for stage, entry in json.loads((run / "metrics.json").read_text()).items()}


def same_metrics(reference: dict[str, dict]) -> Callable[[Path], bool]:
    """A check that a run measured exactly ``reference``."""
    return lambda run: results_ok(run) and metrics_of(run) == reference


def run_case(case: Case, folder: Path) -> tuple[str, str]:
    """Run a case; its bucket and everything it printed."""
    for memo in ("_CHECKED", "_DIGESTS"):  # what this process remembers of files: each case runs as a new process
        getattr(verify, memo, {}).clear()
    if case.prepare:
        case.prepare()
    buffer = io.StringIO()
    with redirect_stdout(buffer), redirect_stderr(buffer):
        try:
            code: int | None = run_command(MAINS[case.command], case.args)
        except BaseException:
            traceback.print_exc(file=buffer)
            code = None
    output = buffer.getvalue()
    return classify(case, folder, code, output), output


def classify(case: Case, folder: Path, code: int | None, output: str) -> str:
    """The bucket of a finished case (see the module docstring)."""
    if any(folder.rglob(SENTINEL)) or (Path.cwd() / SENTINEL).exists():
        return SILENT
    if code is None or "Traceback (most recent call last)" in output:
        return RAW
    run = folder / "run"
    if code == 0:
        right = (case.check or results_ok)(run) and all(
            recorded(run, key) == value for key, value in case.expect.items()
        )
        return HELD if right else SILENT
    errors = [line for line in output.splitlines() if any(error in line for error in PROJECT_ERRORS)]
    if not errors:
        return RAW
    return CLEAR if any(name in line for line in errors for name in case.names) else UNCLEAR


def recorded(run: Path, key: str) -> object:
    """The value of a dotted config key that ``metrics.json`` records of the job."""
    node: object = next(iter(json.loads((run / "metrics.json").read_text()).values()))["config"]
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


# ------------------------------------------------------------------------------------------------ settings


SETTINGS: dict[str, list[object]] = {
    "data.train_batch_size": [0, -1, 1, 3, 1.5, "abc", None, True],
    "data.eval_batch_size": [0, -2, 1, 5, 2.5, "x", None],
    "data.num_workers": [-1, 0, 1, 0.5, "two", None],
    "trainer.max_epochs": [0, -1, 1, 2, 1.5, "abc", None],
    "model.optimizer.lr": [0, -1e-3, 1e-3, math.nan, math.inf, "fast", None, True],
    "seed": [-1, 0, 7, 1.5, "abc", None],
    "data.image_size": [0, -32, 16, 33, 48, 31.5, "abc", [32, 48], [32], None],
    "data.val_ratio": [0, -0.1, 0.25, 1, 1.5, "half"],
    "data.val_policy": ["from_train", "none", "same_as_test", "sometimes"],
    "data.interpolation": ["area", "cubic", "linear", "box", 3],
    "model.fpr_limit": [0, 0.3, 1, 1.5, -0.1, "all"],
    "model.scoring.normalize": ["none", "mean", "zscore", "max", 1],
    "threads": ["auto", 1, 0, -2, 1.5, "many"],
    "callbacks.overlays.num_samples": [0, 1, -1, 2.5, "all"],
    "masking.cell_size": [4, 8, 0, -8, 7, 2.5, "big"],
    "augmentation": ["none", "shift", "flip", "rotate"],
    "stage": ["ear", "both", "fader", "two"],
    "data.category": [CATEGORY, "no_such_category", "../..", ""],
}
"""Keys a user sets on the command line, with values of the right and the wrong type."""


def override(key: str, value: object) -> str:
    """The command-line spelling of ``key=value``."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{key}={'nan' if math.isnan(value) else 'inf'}"
    if isinstance(value, list):
        return f"{key}=[{','.join(str(item) for item in value)}]"
    if value == "":
        return f"{key}=''"
    return f"{key}={value}"


def setting_cases(ws: Workspace, rng: random.Random, count: int) -> list[Case]:
    """``count`` seeded cases, each one setting (or two) drawn from :data:`SETTINGS`."""
    cases = []
    for _ in range(count):
        keys = rng.sample(sorted(SETTINGS), k=rng.choice((1, 1, 2)))
        chosen = {key: rng.choice(SETTINGS[key]) for key in keys}
        folder = ws.case_dir()
        args = ws.command(folder, None, *(override(key, value) for key, value in chosen.items()))
        names = tuple(chosen)
        if chosen.get("stage") == "fader":  # stage 2 alone needs a stage-1 model: an error may name that key
            names = (*names, "fader.ckpt_path")
        expect = {key: value for key, value in chosen.items() if key in ("seed", "data.val_ratio")}
        expect = {key: value for key, value in expect.items() if isinstance(value, int | float)}
        name = " ".join(override(key, value) for key, value in chosen.items())
        cases.append(Case("settings", name, args, names, expect=expect))
    return cases


# ------------------------------------------------------------------------------------------------ data files


def data_cases(ws: Workspace) -> list[Case]:
    """One damaged or odd file in a copy of the data tree per case."""
    cases = []

    test_images = len(list((ws.pristine / CATEGORY / "test").rglob("*.png")))

    def every_test_image(run: Path) -> bool:  # a run that succeeds must not have left a file out
        entries = json.loads((run / "metrics.json").read_text()).values()
        return results_ok(run) and all(entry.get("test_images") == test_images for entry in entries)

    def add(name: str, damage: Callable[[Path], Path | None]) -> None:
        folder = ws.case_dir()
        data = ws.tree(folder)
        target = damage(data / CATEGORY)
        names = (target.name,) if target is not None else (str(data),)
        cases.append(Case("data", name, ws.command(folder, data), names, check=every_test_image))

    def train_image(cat: Path) -> Path:
        return sorted((cat / "train" / "good").glob("*.png"))[1]

    def test_image(cat: Path) -> Path:
        return sorted(path for path in (cat / "test").rglob("*.png") if path.parent.name != "good")[0]

    def mask_of(cat: Path) -> Path:
        return sorted((cat / "ground_truth").rglob("*.png"))[0]

    def truncate(path: Path) -> Path:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path

    def flip(path: Path) -> Path:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return path

    def empty(path: Path) -> Path:
        path.write_bytes(b"")
        return path

    def text(path: Path) -> Path:
        path.write_text("not an image")
        return path

    def resized_mask(path: Path) -> Path:
        from PIL import Image

        Image.open(path).resize((24, 24)).save(path)
        return path

    def dangling(path: Path) -> Path:
        path.unlink()
        path.symlink_to(path.parent / "nowhere.png")
        return path

    def loop(path: Path) -> Path:
        path.unlink()
        path.symlink_to(path)
        return path

    def grayscale(path: Path) -> None:
        from PIL import Image

        Image.open(path).convert("L").save(path)

    def mask16(path: Path) -> None:
        import numpy as np
        from PIL import Image

        mask = (np.asarray(Image.open(path).convert("L")) > 0).astype(np.uint16) * 65535
        Image.fromarray(mask).save(path)

    def no_masks(cat: Path) -> Path:
        shutil.rmtree(cat / "ground_truth")
        return cat / "ground_truth"

    def no_train(cat: Path) -> Path:
        for path in (cat / "train" / "good").iterdir():
            path.unlink()
        return cat / "train" / "good"

    add("truncated train image", lambda cat: truncate(train_image(cat)))
    add("bit-flipped train image", lambda cat: flip(train_image(cat)))
    add("truncated test image", lambda cat: truncate(test_image(cat)))
    add("bit-flipped test image", lambda cat: flip(test_image(cat)))
    add("empty mask", lambda cat: empty(mask_of(cat)))
    add("text as a mask", lambda cat: text(mask_of(cat)))
    add("mask of another size", lambda cat: resized_mask(mask_of(cat)))
    add("dangling link as a train image", lambda cat: dangling(train_image(cat)))
    add("link loop as a test image", lambda cat: loop(test_image(cat)))
    add("missing ground_truth folder", no_masks)
    add("no training images", no_train)
    add("grayscale train image", lambda cat: grayscale(train_image(cat)))
    add("16-bit 0/65535 mask", lambda cat: mask16(mask_of(cat)))
    return cases


# ------------------------------------------------------------------------------------------------ caches


def cache_cases(ws: Workspace) -> list[Case]:
    """Damaged or forged cache entries after a first run filled the caches: the metrics must not move."""
    folder = ws.root / "cache_reference"
    folder.mkdir()
    data = ws.tree(folder)
    reference_args = ws.command(folder, data)
    bucket, output = run_case(Case("cache", "reference", reference_args, ()), folder)
    if bucket != HELD:
        raise RuntimeError(f"the cache reference run failed:\n{output[-3000:]}")
    reference = metrics_of(folder / "run")
    cache = folder / "cache"
    cases = []

    def entries() -> list[Path]:
        return sorted(path for path in (cache / "images").rglob("*") if path.is_file())

    def rerun(name: str, damage: Callable[[], None], names: tuple[str, ...] = ("cache",)) -> None:
        case_folder = ws.case_dir()
        args = [arg for arg in reference_args if not arg.startswith("hydra.run.dir=")]
        args.append(f"hydra.run.dir={case_folder / 'run'}")
        cases.append(Case("cache", name, args, names, prepare=damage, check=same_metrics(reference)))

    def flip_entry() -> None:
        path = entries()[0]
        payload = bytearray(path.read_bytes())
        payload[-10] ^= 0xFF
        path.write_bytes(bytes(payload))

    def swap_entries() -> None:
        a, b = entries()[1], entries()[2]
        first = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(first)

    def truncate_entry() -> None:
        path = entries()[3]
        path.write_bytes(path.read_bytes()[:20])

    def garbage_check_cache() -> None:
        (cache / "checked_files.json").write_text('{"_target_": "builtins.open", "file": "' + SENTINEL + '"}')

    rerun("bit-flipped image-cache entry", flip_entry)
    rerun("swapped image-cache entries", swap_entries)
    rerun("truncated image-cache entry", truncate_entry)
    rerun("check cache replaced by a payload", garbage_check_cache)

    # a source file edited, its mtime put back (touch -r): the run must see the new pixels, as a run without caches
    edited = sorted((data / CATEGORY / "test").rglob("*.png"))[0]

    def edit_source() -> None:
        from PIL import Image

        stat = edited.stat()
        Image.open(edited).transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(90).save(edited)
        os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    def as_without_caches(run: Path) -> bool:
        plain = ws.root / "cache_plain"
        if not plain.exists():
            args = [*reference_args[:-3], f"hydra.run.dir={plain / 'run'}", f"paths.log_dir={plain / 'logs'}",
                    "data.image_cache=null", "data.check_cache=null"]  # fmt: skip
            run_case(Case("cache", "plain", args, ()), plain)
        return results_ok(run) and metrics_of(run) == metrics_of(plain / "run")

    rerun("source edited, mtime restored", edit_source)
    cases[-1].check = as_without_caches

    # a truncated source file with a forged check-cache entry that vouches for its new bytes
    truncated = sorted((data / CATEGORY / "train" / "good").glob("*.png"))[2]

    def forge() -> None:
        path = cache / "checked_files.json"
        table = json.loads(path.read_text())
        vouched = table[verify._key(truncated)]  # the verdict on its intact bytes, now given to the truncated ones
        truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
        table[verify._key(truncated)] = vouched
        path.write_text(json.dumps(table))

    rerun("truncated source vouched for by a forged check cache", forge, names=(truncated.name,))
    return cases


# ------------------------------------------------------------------------------------------------ checkpoints


class Payload:
    """An object whose unpickling writes :data:`SENTINEL` (a malicious checkpoint)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.folder / SENTINEL, "ran"))


def checkpoint_cases(ws: Workspace) -> list[Case]:
    """Damaged, swapped and malicious checkpoints for ``fader-eval``, stage 2 and a resume."""
    folder = ws.root / "ckpt_reference"
    folder.mkdir()
    args = ws.command(folder, None, "stage=both", "fader.trainer.max_epochs=1")
    bucket, output = run_case(Case("checkpoint", "reference", args, ()), folder)
    if bucket != HELD:
        raise RuntimeError(f"the checkpoint reference run failed:\n{output[-3000:]}")
    reference = metrics_of(folder / "run")
    ckpts = {stage: folder / "run" / "checkpoints" / stage / "last.ckpt" for stage in ("ear", "fader")}
    cases = []

    def damaged(name: str, make: Callable[[Path], None], stage: str = "ear") -> Callable[[Path], Path]:
        def build(case_folder: Path) -> Path:
            path = case_folder / f"{stage}-{name.replace(' ', '_')}.ckpt"
            shutil.copyfile(ckpts[stage], path)
            make(path)
            return path

        return build

    def truncate(path: Path) -> None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def flip_middle(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    def flip_tail(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[-30] ^= 0xFF
        path.write_bytes(bytes(data))

    def empty(path: Path) -> None:
        path.write_bytes(b"")

    def payload(path: Path) -> None:
        torch.save({"state_dict": {}, "hyper_parameters": Payload(path.parent)}, path)

    def other_stage(path: Path) -> None:
        shutil.copyfile(ckpts["fader"], path)

    makers = {"truncated": truncate, "bit-flipped": flip_middle, "bit-flipped at its end": flip_tail,
              "empty": empty, "pickled payload": payload}  # fmt: skip
    for name, make in makers.items():
        for stage in ("ear", "fader"):
            case_folder = ws.case_dir()
            path = damaged(name, make, stage)(case_folder)
            eval_args = [f"ckpt_path={path}", f"hydra.run.dir={case_folder / 'run'}",
                         f"paths.log_dir={case_folder / 'logs'}", "logger=none",
                         "callbacks.overlays.num_samples=0", "trainer.enable_progress_bar=false",
                         "data=mvtec", f"data.root={ws.pristine}", f"data.category={CATEGORY}"]  # fmt: skip
            cases.append(Case("checkpoint", f"fader-eval on a {name} {stage} checkpoint", eval_args, (path.name,),
                              command="eval", check=_eval_check(reference, stage)))  # fmt: skip
        case_folder = ws.case_dir()
        path = damaged(name, make)(case_folder)
        cases.append(Case("checkpoint", f"stage 2 on a {name} stage-1 checkpoint",
                          ws.command(case_folder, None, "stage=fader", f"fader.ckpt_path={path}",
                                     "fader.trainer.max_epochs=1"), (path.name,)))  # fmt: skip
    case_folder = ws.case_dir()
    path = damaged("swapped", other_stage)(case_folder)
    cases.append(Case("checkpoint", "stage 2 on a FADeR checkpoint given as stage 1",
                      ws.command(case_folder, None, "stage=fader", f"fader.ckpt_path={path}"),
                      (path.name, "fader.ckpt_path")))  # fmt: skip
    case_folder = ws.case_dir()
    cases.append(Case("checkpoint", "a folder as the checkpoint",
                      ws.command(case_folder, None, "stage=fader", f"fader.ckpt_path={case_folder}"),
                      (case_folder.name, "fader.ckpt_path")))  # fmt: skip
    return cases


def _eval_check(reference: dict[str, dict], stage: str) -> Callable[[Path], bool]:
    """An evaluation that succeeded must have measured the reference's metrics of that stage."""

    def check(run: Path) -> bool:
        return results_ok(run) and metrics_of(run).get(stage) == reference[stage]

    return check


# ------------------------------------------------------------------------------------------------ run folders


def folder_cases(ws: Workspace) -> list[Case]:
    """Run folders that already hold something: ours, another tool's, links, locks."""
    cases = []

    def add(name: str, fill: Callable[[Path], None], *extra: str, held_ok: bool = False) -> None:
        folder = ws.case_dir()
        run = folder / "run"
        run.mkdir()
        fill(run)
        cases.append(Case("folder", name, ws.command(folder, None, *extra), (str(run), "run folder", "hydra.run.dir"),
                          check=results_ok if held_ok else None))  # fmt: skip

    def write(name: str, text: str) -> Callable[[Path], None]:
        return lambda run: (run / name).write_text(text)

    def make_dir(name: str) -> Callable[[Path], None]:
        return lambda run: (run / name).mkdir(parents=True)

    def link_out(run: Path) -> None:
        outside = run.parent / "elsewhere"
        outside.mkdir()
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "ear").symlink_to(outside, target_is_directory=True)

    def dead_lock(run: Path) -> None:
        import socket

        (run / ".fader-run.lock").write_text(f"999999 {socket.gethostname()}")

    def foreign_lock(run: Path) -> None:
        (run / ".fader-run.lock").write_text(f"{os.getpid()} another-host")

    for text in ("[]", "{}", '{"ear": {}}', '{"other": {"status": "ok"}}', "{broken", "\x00\xff"):
        add(f"metrics.json holding {text!r}", write("metrics.json", text))
        add(f"metrics.json holding {text!r}, overwrite=true", write("metrics.json", text), "overwrite=true")
    add("metrics.json is a folder", make_dir("metrics.json"))
    add("checkpoints is a file", write("checkpoints", "x"))
    add("checkpoints/other/", make_dir("checkpoints/other"))
    add("checkpoints/ear links out of the folder", link_out)
    add(".hydra is a file", write(".hydra", "x"), held_ok=True)
    add("train.log is a folder", make_dir("train.log"))
    add("a lock of a process that is gone", dead_lock, held_ok=True)
    add("a lock of another host", foreign_lock)
    add("an unrelated file", write("notes.txt", "mine"), held_ok=True)
    folder = ws.case_dir()
    (folder / "run").write_text("a file where the run folder goes")
    cases.append(Case("folder", "the run folder is a file", ws.command(folder), ("hydra.run.dir",)))
    return cases


# ------------------------------------------------------------------------------------------------ results files


def results_cases(ws: Workspace) -> list[Case]:
    """``_target_`` payloads in every file beside a checkpoint that ``fader-eval`` might read."""
    folder = ws.root / "results_reference"
    folder.mkdir()
    args = ws.command(folder)
    bucket, output = run_case(Case("results", "reference", args, ()), folder)
    if bucket != HELD:
        raise RuntimeError(f"the results reference run failed:\n{output[-3000:]}")
    reference = metrics_of(folder / "run")
    cases = []
    payload = {"_target_": "pathlib.Path.write_text", "self": "PLACEHOLDER", "data": "ran"}
    for name in ("metrics.json", ".hydra/config.yaml", ".hydra/overrides.yaml", "checkpoints/ear/last.json"):
        case_folder = ws.case_dir()
        run = shutil.copytree(folder / "run", case_folder / "source")
        target = Path(run) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        poisoned = {**payload, "self": str(case_folder / SENTINEL)}
        if name == "metrics.json":
            content = json.loads(target.read_text())
            content["ear"]["config"]["data"] = {**poisoned, "root": str(case_folder)}
            text = json.dumps(content)
        elif name.endswith("overrides.yaml"):
            text = json.dumps([f"data={json.dumps(poisoned)}"])
        else:
            text = json.dumps({"data": poisoned, "hydra": {"callbacks": {"x": poisoned}}})
        target.write_text(text)
        eval_args = [f"ckpt_path={run}/checkpoints/ear/last.ckpt", f"hydra.run.dir={case_folder / 'run'}",
                     f"paths.log_dir={case_folder / 'logs'}", "logger=none", "callbacks.overlays.num_samples=0",
                     "trainer.enable_progress_bar=false"]  # fmt: skip
        cases.append(Case("results", f"a _target_ payload in {name}", eval_args, (name,), command="eval",
                          check=_eval_check(reference, "ear")))  # fmt: skip
    return cases


# ------------------------------------------------------------------------------------------------ the session


def build_cases(ws: Workspace, seed: int, settings: int) -> list[Case]:
    """Every case of a session: ``settings`` seeded setting cases, then the fixed corpora."""
    rng = random.Random(seed)
    return [*setting_cases(ws, rng, settings), *data_cases(ws), *cache_cases(ws), *checkpoint_cases(ws),
            *folder_cases(ws), *results_cases(ws)]  # fmt: skip


def run_session(root: Path, seed: int = 0, settings: int = 24) -> list[tuple[Case, str, str]]:
    """Build and run every case under ``root``: ``[(case, bucket, output)]``."""
    ws = Workspace(root)
    cwd = os.getcwd()
    os.chdir(root)  # a payload that writes relative to the working folder writes here
    try:
        cases = build_cases(ws, seed, settings)
        outcomes = []
        for case in cases:
            bucket, output = run_case(case, _folder_of(case, root))
            outcomes.append((case, bucket, output))
        return outcomes
    finally:
        os.chdir(cwd)


def _folder_of(case: Case, root: Path) -> Path:
    """The case folder a case's ``hydra.run.dir`` lies in."""
    for arg in case.args:
        if arg.startswith("hydra.run.dir="):
            return Path(arg.split("=", 1)[1]).parent
    return root


def error_line(output: str) -> str:
    """The project error a case ended with (without the log prefix), or ``""``."""
    lines = [line for line in output.splitlines() if any(error in line for error in PROJECT_ERRORS)]
    return lines[-1].split("] - ", 1)[-1] if lines else ""


def summary(outcomes: list[tuple[Case, str, str]]) -> str:
    """A Markdown table of the buckets per group, then the cases that are raw or silent."""
    groups = sorted({case.group for case, _, _ in outcomes}, key=[c.group for c, _, _ in outcomes].index)
    counts = Counter((case.group, bucket) for case, bucket, _ in outcomes)
    lines = ["| group | cases | " + " | ".join(BUCKETS) + " |", "| --- | ---: |" + " ---: |" * len(BUCKETS)]
    for group in [*groups, "all"]:
        mine: Counter[str] = Counter()
        for (g, bucket), n in counts.items():
            if group in (g, "all"):
                mine[bucket] += n
        lines.append(f"| {group} | {sum(mine.values())} | " + " | ".join(str(mine[b]) for b in BUCKETS) + " |")
    bad = [(case, bucket) for case, bucket, _ in outcomes if bucket in FAILING]
    lines += ["", *(f"- {bucket}: {case.group}: {case.name}" for case, bucket in bad)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", type=int, default=24, help="number of seeded setting cases")
    parser.add_argument("--root", type=Path, required=True, help="an empty folder for the session")
    parser.add_argument("--verbose", action="store_true", help="print the output of unclear, raw and silent cases")
    parser.add_argument("--cases", action="store_true", help="list every case with its bucket and error line")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    outcomes = run_session(args.root.resolve(), args.seed, args.settings)
    print(summary(outcomes))
    if args.cases:
        for case, bucket, output in outcomes:
            print(f"- {bucket}: {case.group}: {case.name}: {error_line(output)}")
    if args.verbose:
        for case, bucket, output in outcomes:
            if bucket in FAILING:
                print(f"\n===== {bucket}: {case.group}: {case.name}\n{output[-2500:]}")


if __name__ == "__main__":
    main()

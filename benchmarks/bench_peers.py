"""``make bench-peers``: EAR and EAR + FADeR against anomalib's PatchCore, PaDiM, FastFlow and DRAEM, in one run.

Every model trains on the same normal images (the training split of the EAR run: ``recipe=stage1`` holds 10 % of
the normals out, which EAR + FADeR use for calibration and no peer sees) and is tested on the same test images,
decoded and resized by the project's data module at the same size. Every row's image AUROC, pixel AUROC and AUPRO
come from :mod:`fader_lightning.metrics.functional` on the model's raw image scores and anomaly maps (anomalib's
post-processing is off). Each model trains and tests in a process of its own, started one at a time: ``train s``
is the wall time of its fit call (checkpoint writing included, as each framework does it), ``test ms/img`` the
inference time of the test images in batches after one warm-up batch (decoding and metrics excluded) and
``peak RSS`` the process's peak resident memory (``ru_maxrss``: Python, torch and the framework included).

Backbones load their ImageNet weights when this machine can fetch them (or finds them in the timm/Hugging Face
cache), else start from random initialisation, which the report says. Writes ``results/peers.json`` and
``results/peers.md``.

anomalib is not a dependency of the project: ``make bench-peers`` installs it, pinned in ``requirements/peers.txt``,
in ``.venv-peers``. This module imports it only in the functions that run a peer, so it imports without it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader

from fader_lightning.data.mvtec import MVTEC_CATEGORIES, MVTEC_DOWNLOAD_STEPS, resolve_category_dir
from fader_lightning.errors import ConfigError, DataError
from fader_lightning.metrics.functional import aupro, image_auroc, pixel_auroc
from fader_lightning.utils.io import atomic_write_json, atomic_write_text
from fader_lightning.utils.provenance import environment
from fader_lightning.utils.threads import available_cores

log = logging.getLogger(__name__)

LABELS = {
    "ear": "EAR",
    "ear_fader": "EAR + FADeR",
    "patchcore": "PatchCore",
    "padim": "PaDiM",
    "fastflow": "FastFlow",
    "draem": "DRAEM",
}
"""The rows of the table, in order; ``ear`` is the reference of the ratios."""
PEERS = {
    "patchcore": ("Patchcore", "wide_resnet50_2"),
    "padim": ("Padim", "resnet18"),
    "fastflow": ("Fastflow", "resnet18"),
    "draem": ("Draem", None),
}
"""anomalib model class and backbone (``None``: trained from scratch) of each peer, at anomalib's defaults."""
EPOCHS = {"ear": 60, "ear_fader": 100, "fastflow": 10, "draem": 2}
"""Training epochs of the models that take gradient steps (EAR + FADeR: stage-2 epochs, on top of EAR's).
PatchCore and PaDiM make one pass over the training images. FastFlow and DRAEM get far fewer epochs than their
papers (500 and 700) so that a 2-core CPU runs them in minutes (about 40 s per FastFlow and 5 min per DRAEM
epoch on 54 images at 128 px)."""
STAGE1_RECIPE = (
    "data=mvtec",
    "recipe=stage1",
    "model.unet.widths=[16,32,64,128]",
    "model.optimizer.lr=1e-3",
    "data.train_batch_size=8",
)
"""The stage-1 recipe of the quality runs (docs/STAGE1_RECIPE.md); root, category, size and epochs are added."""
IMAGE_SIZE, QUICK_IMAGE_SIZE = 128, 64
COLUMNS = (
    ("train_s", "train s", "{:.1f}"),
    ("test_ms_per_image", "test ms/img", "{:.1f}"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
    ("image_auroc", "image AUROC", "{:.3f}"),
    ("pixel_auroc", "pixel AUROC", "{:.3f}"),
    ("aupro", "AUPRO", "{:.3f}"),
)
"""Measured columns: key, heading, format. Each is also a ratio to EAR's."""
PRETRAINED, NO_INTERNET, RANDOM_ASKED = "pretrained (ImageNet)", "random init (no internet)", "random init (asked)"
FROM_SCRATCH = "none (trained from scratch)"

Inference = Callable[[Tensor], tuple[Tensor, Tensor]]
"""Images ``(B, 3, H, W)`` in [0, 1] to raw image scores ``(B,)`` and anomaly maps ``(B, [1,] H, W)``."""


def default_data(category: str, folder: Path) -> tuple[Path, str]:
    """The MVTec root of a category when none is given.

    The shared data (``$FADER_SHARED_DATA/mvtec_ad``, default ``../shared/data/mvtec_ad``) when it holds the
    category; else, for ``bottle``, where ``make bench`` finds it (``$FADER_DATA_DIR/mvtec_ad``, else a generated
    stand-in of its size written under ``folder``).

    Args:
        category: The category.
        folder: Scratch folder for generated data.

    Returns:
        ``(root, category)``.

    Raises:
        DataError: When another category is not in the shared data.
    """
    shared = Path(os.environ.get("FADER_SHARED_DATA", Path.cwd().parent / "shared" / "data")) / "mvtec_ad"
    if (shared / category).is_dir():
        return shared, category
    if category != "bottle":
        raise DataError(
            f"category {category!r} is not in the shared data {shared}; pass --root <MVTec root> "
            "(make bench-peers DATA_DIR=<MVTec root>)"
        )
    from bench_common import bottle_or_synthetic

    return bottle_or_synthetic(folder)


def pretrained_loads(backbone: str) -> bool:
    """Whether timm can load the backbone's ImageNet weights here (download, or the timm/Hugging Face cache).

    Args:
        backbone: timm model name.

    Returns:
        ``False`` when fetching the weights fails (no internet).
    """
    import timm

    timm.create_model(backbone, pretrained=False)  # an unknown name is an error, never a missing download
    try:
        timm.create_model(backbone, pretrained=True)
    except OSError as err:  # what timm and huggingface_hub raise when the weights cannot be fetched
        log.warning("%s: ImageNet weights cannot be loaded (%s); it starts from random init", backbone, err)
        return False
    return True


def backbone_weights(models: Iterable[str], mode: str) -> dict[str, str]:
    """The weights each model starts from.

    Args:
        models: Row names (:data:`LABELS`).
        mode: ``auto`` (pretrained when the weights load here, see :func:`pretrained_loads`) or ``random``.

    Returns:
        ``{model: PRETRAINED | NO_INTERNET | RANDOM_ASKED | FROM_SCRATCH}``.
    """
    backbones = {name: PEERS[name][1] if name in PEERS else None for name in models}
    needed = sorted({b for b in backbones.values() if b})
    if mode == "random":
        loads = dict.fromkeys(needed, None)
    else:
        hub_log = logging.getLogger("huggingface_hub")
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)  # else every retry of a failed download warns
        try:
            with ThreadPoolExecutor(max(1, len(needed))) as pool:  # a failed download retries for about a minute
                loads = dict(zip(needed, pool.map(pretrained_loads, needed), strict=True))
        finally:
            hub_log.setLevel(level)
    labels = {True: PRETRAINED, False: NO_INTERNET, None: RANDOM_ASKED}
    return {name: labels[loads[b]] if b else FROM_SCRATCH for name, b in backbones.items()}


def backbones_line(weights: dict[str, str]) -> str:
    """One line on the peers' backbones for the report, e.g. ``random init (no internet)``."""
    kinds = sorted({w for w in weights.values() if w != FROM_SCRATCH})
    if len(kinds) == 1:
        return kinds[0]
    return "; ".join(f"{LABELS[n]}: {w}" for n, w in weights.items() if w != FROM_SCRATCH) or "none"


def ear_overrides(spec: dict[str, Any], stage: str) -> list[str]:
    """The ``fader-train`` overrides of the EAR (``ear``) or EAR + FADeR (``fader``) run of the benchmark.

    Stage 2 starts from the stage-1 checkpoint of the EAR row, named in ``spec["stage1_ckpt"]``.
    """
    overrides = [
        *STAGE1_RECIPE,
        f"data.root={spec['root']}",
        f"data.category={spec['category']}",
        f"data.image_size={spec['image_size']}",
        f"trainer.max_epochs={spec['epochs']['ear']}",
        f"seed={spec['seed']}",
        f"paths.root_dir={spec['folder']}",
        "logger=none",
        "callbacks.overlays.num_samples=0",
        "trainer.enable_progress_bar=false",
    ]
    if stage == "fader":
        overrides += ["stage=fader", f"fader.ckpt_path={spec['stage1_ckpt']}",
                      f"fader.trainer.max_epochs={spec['epochs']['ear_fader']}"]  # fmt: skip
    return overrides


def evaluate(infer: Inference, datamodule: Any, fpr_limit: float) -> dict[str, float]:
    """Time a model on the test split and compute its metrics with the project's metric functions.

    The test images are decoded first; a warm-up call on one image is not timed.

    Args:
        infer: The model (see :data:`Inference`).
        datamodule: The project's data module, set up.
        fpr_limit: AUPRO's FPR limit.

    Returns:
        ``test_images``, ``test_ms_per_image``, ``image_auroc``, ``pixel_auroc`` and ``aupro``.

    Raises:
        DataError: When the maps are not at the size of the ground-truth masks.
    """
    batches = list(datamodule.test_dataloader())
    with torch.inference_mode():
        infer(batches[0].image[:1])
        start = time.perf_counter()
        outputs = [infer(batch.image) for batch in batches]
        seconds = time.perf_counter() - start
    scores = torch.cat([score.reshape(-1) for score, _ in outputs]).float()
    maps = torch.cat([m.reshape(len(m), *m.shape[-2:]) for _, m in outputs]).float()
    labels = torch.cat([batch.label for batch in batches])
    masks = torch.cat([batch.mask.squeeze(1) for batch in batches]) > 0.5
    if maps.shape != masks.shape:
        raise DataError(f"anomaly maps {tuple(maps.shape)} do not match the ground-truth masks {tuple(masks.shape)}")
    return {
        "test_images": len(scores),
        "test_ms_per_image": 1000 * seconds / len(scores),
        "image_auroc": image_auroc(scores, labels),
        "pixel_auroc": pixel_auroc(maps, masks),
        "aupro": aupro(maps, masks, fpr_limit=fpr_limit),
    }


def run_ear(spec: dict[str, Any], stage: str) -> dict[str, Any]:
    """Train and test EAR (``ear``) or its FADeR stage (``fader``) through the project's own API.

    Args:
        spec: The benchmark's settings (see :func:`run`).
        stage: ``ear`` or ``fader``.

    Returns:
        The row, with what the peers reuse: the resolved data config, AUPRO's FPR limit, the job's threads and
        the checkpoint; ``own_metrics`` are the run's own test metrics (the same functions, float16 map storage).
    """
    from fader_lightning.api import train
    from fader_lightning.jobs.stages import build
    from fader_lightning.models.loading import load_module

    entry = train(ear_overrides(spec, stage), output_dir=Path(spec["folder"]) / f"{stage}_run")[stage]
    config = entry["config"]
    module = load_module(entry["checkpoint"])

    def infer(images: Tensor) -> tuple[Tensor, Tensor]:
        out = module.infer(images)
        return out["score"], out["anomaly_map"]

    datamodule = build(OmegaConf.create(config["data"]))
    datamodule.setup()
    return {
        "train_s": entry["train_seconds"],
        "epochs": entry["epochs"],
        "train_images": len(datamodule.train_samples),
        "held_out_normals": len(datamodule.normal_samples) - len(datamodule.train_samples),
        **evaluate(infer, datamodule, config["model"]["fpr_limit"]),
        "own_metrics": entry["metrics"],
        "checkpoint": entry["checkpoint"],
        "data": config["data"],
        "fpr_limit": config["model"]["fpr_limit"],
        "threads": entry["threads"]["threads"],
    }


def anomalib_batch(collate: Callable[[Sequence[Any]], Any], items: Sequence[Any]) -> Any:
    """Collate items of the project's dataset into an anomalib ``ImageBatch``."""
    from anomalib.data import ImageBatch

    batch = collate(items)
    return ImageBatch(image=batch.image, gt_label=batch.label, image_path=batch.path)


def anomalib_loader(loader: DataLoader) -> DataLoader:
    """The project's training loader (same images, order and size), yielding anomalib batches."""
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=loader.sampler,
        num_workers=loader.num_workers,
        persistent_workers=loader.persistent_workers,
        collate_fn=functools.partial(anomalib_batch, loader.collate_fn),
    )


def peer_model(name: str, image_size: int, pretrained: bool, folder: Path) -> Any:
    """An anomalib model at its defaults, at the benchmark's size, without post-processing, metrics or images.

    Args:
        name: A key of :data:`PEERS`.
        image_size: Side of the input images.
        pretrained: Load the backbone's ImageNet weights.
        folder: Scratch folder (DRAEM's anomaly-source folder, left empty so that it makes Perlin-noise anomalies
            and downloads no texture data set).

    Returns:
        The model.
    """
    from anomalib import models

    cls_name, backbone = PEERS[name]
    cls = getattr(models, cls_name)
    kwargs: dict[str, Any] = {
        "pre_processor": cls.configure_pre_processor(image_size=(image_size, image_size)),
        "post_processor": False,
        "evaluator": False,
        "visualizer": False,
    }
    if backbone:
        kwargs.update(backbone=backbone, pre_trained=pretrained)
    if name == "draem":
        sources = folder / "draem_no_textures"
        sources.mkdir(exist_ok=True)
        kwargs["dtd_dir"] = sources
    return cls(**kwargs)


def run_peer(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """Train and test one anomalib peer on the EAR row's data, with its threads.

    Args:
        spec: The benchmark's settings (see :func:`run`); ``spec["reference"]`` is the EAR row.
        name: A key of :data:`PEERS`.

    Returns:
        The row.
    """
    import lightning as L
    from anomalib.engine import Engine

    from fader_lightning.jobs.stages import build

    reference = spec["reference"]
    torch.set_num_threads(reference["threads"])
    L.seed_everything(spec["seed"], workers=True)
    datamodule = build(OmegaConf.create(reference["data"]))
    datamodule.setup()
    folder = Path(spec["folder"])
    model = peer_model(name, spec["image_size"], spec["weights"][name] == PRETRAINED, folder)
    epochs = {"max_epochs": spec["epochs"][name]} if name in spec["epochs"] else {}  # else the model's own (1 pass)
    engine = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=folder / name,
                    enable_progress_bar=False, enable_model_summary=False, **epochs)  # fmt: skip
    start = time.perf_counter()
    engine.fit(model, train_dataloaders=anomalib_loader(datamodule.train_dataloader()))
    train_s = time.perf_counter() - start
    model.eval()

    def infer(images: Tensor) -> tuple[Tensor, Tensor]:
        out = model(images)
        return out.pred_score, out.anomaly_map

    return {
        "train_s": train_s,
        "epochs": engine.trainer.current_epoch,
        "train_images": len(datamodule.train_samples),
        **evaluate(infer, datamodule, reference["fpr_limit"]),
    }


def worker(name: str, spec_path: Path) -> None:
    """Run one row in this process and write it to ``<folder>/rows/<name>.json``."""
    spec = json.loads(spec_path.read_text())
    row = run_peer(spec, name) if name in PEERS else run_ear(spec, "fader" if name == "ear_fader" else "ear")
    atomic_write_json(Path(spec["folder"]) / "rows" / f"{name}.json", row)


def run_worker(name: str, spec: dict[str, Any], logs: Path) -> dict[str, Any]:
    """Run one row in a fresh process and measure its peak RSS.

    Args:
        name: The row.
        spec: The benchmark's settings (see :func:`run`).
        logs: Folder of the workers' logs.

    Returns:
        The row, with ``peak_rss_mb`` and ``log``.

    Raises:
        RuntimeError: When the process fails (its log is named).
    """
    spec_path = Path(spec["folder"]) / f"spec_{name}.json"
    atomic_write_json(spec_path, spec)
    log_path = logs / f"{name}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--spec", str(spec_path)]
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage: its peak RSS
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
        raise RuntimeError(f"{LABELS[name]} failed (exit {process.returncode}); see {log_path}:\n{tail}")
    row = json.loads((Path(spec["folder"]) / "rows" / f"{name}.json").read_text())
    return {**row, "status": "ok", "peak_rss_mb": usage.ru_maxrss / 1024, "log": str(log_path)}


def defined(value: float | None) -> bool:
    """Whether a measured value is a number (undefined metrics are NaN, or ``None`` once written to JSON)."""
    return value is not None and math.isfinite(value)


def ratios(rows: dict[str, dict[str, Any]], reference: str = "ear") -> dict[str, dict[str, float]]:
    """Each measured column of each finished row divided by the reference row's (NaN where undefined)."""
    ref = rows[reference]
    return {
        name: {
            key: row[key] / ref[key] if defined(row[key]) and defined(ref[key]) and ref[key] != 0 else math.nan
            for key, _, _ in COLUMNS
        }
        for name, row in rows.items()
        if row["status"] == "ok"
    }


def cell(value: float | None, fmt: str, ratio: float | None) -> str:
    """A table cell: the value and its ratio to EAR's, ``n/a`` where undefined."""
    if not defined(value):
        return "n/a"
    return f"{fmt.format(value)} ({f'{ratio:.2f}×' if defined(ratio) else 'n/a'})"


def markdown(report: dict[str, Any]) -> str:
    """Render the report: its settings and one table, each value with its ratio to EAR's."""
    data, rows, load = report["data"], report["rows"], report["machine"]["load_average"]
    epochs = ", ".join(f"{LABELS[n]} {e}" for n, e in report["epochs"].items() if n in rows)
    lines = [
        "# EAR and EAR + FADeR against anomalib peers",
        "",
        f"- Data: `{data['category']}` from `{data['root']}`, {data['image_size']}x{data['image_size']} px, "
        f"{data['train_images']} training images ({data['held_out_normals']} more normals held out, used by "
        f"EAR/FADeR calibration only), {data['test_images']} test images",
        f"- Machine: {report['machine']['summary']}; 1-min load average {load['start']:.1f} at the start, "
        f"{load['end']:.1f} at the end (anything else running slows every row)",
        f"- Backbones: {report['backbones']}",
        f"- Epochs: {epochs}; PatchCore and PaDiM: one pass over the training images",
        f"- Run: {report['wall_s'] / 60:.1f} min wall time, every model in a process of its own, one at a time",
        "",
        "| model | weights | " + " | ".join(heading for _, heading, _ in COLUMNS) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " |",
    ]
    for name, row in rows.items():
        if row["status"] != "ok":
            lines.append(f"| {LABELS[name]} | {report['weights'][name]} | failed: see `{row['log']}` |")
            continue
        ratio = report["ratios"][name]
        values = " | ".join(cell(row[key], fmt, ratio[key]) for key, _, fmt in COLUMNS)
        lines.append(f"| {LABELS[name]} | {report['weights'][name]} | {values} |")
    lines += ["", "Each value is followed by its ratio to EAR's (×). EAR + FADeR's train s includes EAR's stage 1."]
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    """The machine and software of the run, with a one-line summary."""
    info = environment()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info.update(cpu=names[0] if names else info["platform"], cores=available_cores(), memory_gib=round(memory_gib, 1))
    info["anomalib"] = installed("anomalib")
    info["summary"] = (
        f"{info['cores']} CPU cores ({info['cpu']}), {info['memory_gib']:.0f} GiB RAM, Python {info['python']}, "
        f"torch {info['torch']}, Lightning {info['lightning']}, anomalib {info['anomalib'] or 'not installed'}"
    )
    return info


def installed(package: str) -> str | None:
    """The installed version of a package, else ``None``."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run(
    out_dir: Path,
    root: Path | None = None,
    category: str = "bottle",
    image_size: int = IMAGE_SIZE,
    models: Sequence[str] = tuple(LABELS),
    epochs: dict[str, int] | None = None,
    backbones: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Train and test every model, one process each, and write ``peers.json`` and ``peers.md``.

    Args:
        out_dir: Folder of the report; the workers' logs go to ``<out_dir>/peers_logs``.
        root: MVTec root holding ``category``; ``None``: :func:`default_data`.
        category: The category.
        image_size: Side of the images every model trains and is tested at.
        models: Rows to run (:data:`LABELS`); ``ear`` is required.
        epochs: Epochs per model (:data:`EPOCHS` for those not given).
        backbones: ``auto`` (ImageNet weights when they load here) or ``random``.
        seed: Seed of every model.

    Returns:
        The report.

    Raises:
        ConfigError: On an unknown model, a run without ``ear`` or peers without anomalib.
        RuntimeError: When the EAR row fails (a peer that fails is reported as failed).
    """
    unknown = sorted(set(models) - set(LABELS))
    if unknown or "ear" not in models:
        raise ConfigError(f"--models {','.join(models)}: use names from {','.join(LABELS)}, ear included (the ratios' "
                          f"reference){'; unknown: ' + ','.join(unknown) if unknown else ''}")  # fmt: skip
    if set(models) & set(PEERS) and installed("anomalib") is None:
        raise ConfigError(
            "anomalib is not installed in this environment: run make bench-peers (it installs it in .venv-peers), "
            "or pass --models ear,ear_fader"
        )
    models = [name for name in LABELS if name in models]
    epochs = {**EPOCHS, **(epochs or {})}
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    logs = out_dir / "peers_logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        folder = Path(tmp)
        root, category = (Path(root), category) if root else default_data(category, folder)
        resolve_category_dir(Path(root), category, MVTEC_CATEGORIES, MVTEC_DOWNLOAD_STEPS)
        weights = backbone_weights(models, backbones)
        spec: dict[str, Any] = {
            "folder": str(folder),
            "root": str(Path(root).resolve()),
            "category": category,
            "image_size": image_size,
            "epochs": epochs,
            "seed": seed,
            "weights": weights,
        }
        rows: dict[str, dict[str, Any]] = {}
        for name in models:
            print(f"{LABELS[name]}: training and testing (log: {logs / f'{name}.log'})", flush=True)
            try:
                rows[name] = run_worker(name, spec, logs)
            except RuntimeError as err:
                if name == "ear":
                    raise
                log.error("%s", err)
                rows[name] = {"status": "failed", "error": str(err), "log": str(logs / f"{name}.log")}
                continue
            row = rows[name]
            print(f"{LABELS[name]}: train {row['train_s']:.1f} s, test {row['test_ms_per_image']:.1f} ms/img, "
                  f"image AUROC {row['image_auroc']}, peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
            if name == "ear":
                spec.update(reference=rows["ear"], stage1_ckpt=rows["ear"]["checkpoint"])
    for row in rows.values():
        row.pop("checkpoint", None)  # in the scratch folder, gone now
    for key in ("train_s", "peak_rss_mb"):  # a pipeline: FADeR's stage 2 starts from EAR's stage 1
        if rows.get("ear_fader", {}).get("status") == "ok":
            rows["ear_fader"][f"stage2_{key}"] = rows["ear_fader"][key]
            combine = sum if key == "train_s" else max
            rows["ear_fader"][key] = combine((rows["ear"][key], rows["ear_fader"][key]))
    ear = rows["ear"]
    report = {
        "machine": {**machine(), "load_average": {"start": load_start, "end": os.getloadavg()[0]}},
        "data": {
            "root": spec["root"],
            "category": category,
            "image_size": image_size,
            **{key: ear[key] for key in ("train_images", "held_out_normals", "test_images")},
        },
        "backbones": backbones_line({n: w for n, w in weights.items() if n in PEERS}),
        "weights": weights,
        "epochs": {name: epochs[name] for name in models if name in epochs},
        "wall_s": time.perf_counter() - start,
        "rows": rows,
        "ratios": ratios(rows),
    }
    atomic_write_json(out_dir / "peers.json", report)
    atomic_write_text(out_dir / "peers.md", markdown(report))
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python benchmarks/bench_peers.py [--root R --category C --image-size N] [--quick]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder of peers.json and peers.md")
    parser.add_argument("--root", type=Path, help="MVTec root holding the category (default: see default_data)")
    parser.add_argument("--category", default="bottle")
    parser.add_argument("--image-size", type=int, help=f"default {IMAGE_SIZE} ({QUICK_IMAGE_SIZE} with --quick)")
    parser.add_argument("--models", default=",".join(LABELS), help="comma-separated rows, ear included")
    for name, default in EPOCHS.items():
        parser.add_argument(f"--{name.replace('_', '-')}-epochs", type=int, help=f"default {default} (1 with --quick)")
    parser.add_argument("--backbones", choices=("auto", "random"), default="auto",
                        help="auto: ImageNet weights when they can be loaded here, else random init")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 epoch per model, 64 px: a smoke test")
    parser.add_argument("--worker", choices=tuple(LABELS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.worker else logging.WARNING)
    if args.worker:
        worker(args.worker, args.spec)
        return
    epochs = dict.fromkeys(EPOCHS, 1) if args.quick else {}
    epochs.update({n: e for n in EPOCHS if (e := getattr(args, f"{n}_epochs")) is not None})
    report = run(
        args.out,
        root=args.root,
        category=args.category,
        image_size=args.image_size or (QUICK_IMAGE_SIZE if args.quick else IMAGE_SIZE),
        models=[m for m in args.models.split(",") if m],
        epochs=epochs,
        backbones=args.backbones,
        seed=args.seed,
    )
    sys.stdout.write(markdown(report))
    sys.stdout.write(f"\nwritten: {args.out / 'peers.json'}, {args.out / 'peers.md'}\n")
    if any(row["status"] != "ok" for row in report["rows"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()

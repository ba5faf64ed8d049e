"""``fader-predict``: score images with a trained checkpoint; write heat maps, overlays and ``scores.csv``.

Usage:
    fader-predict ckpt=PATH input=IMAGE|FOLDER|GLOB output=DIR [threshold=FLOAT|auto] [normal_dir=DIR]
        [quantile=1.0] [image_size=N|H,W [force=true]] [batch_size=8] [device=auto|cpu|cuda] [vit_weights=PATH]

Stage 1 (EAR) and stage 2 (FADeR) checkpoints are told apart automatically. ``input`` is one image, a folder
(its png/jpg/bmp/tif files, not recursive) or a quoted glob (``'data/**/*.png'``). Images are resized as in
training, to the image size and with the interpolation stored in the checkpoint; ``image_size=`` may only repeat
that size unless ``force=true`` (checkpoints that predate stored sizes fall back to the training run's
``metrics.json``, else 256). Written under ``output``, all at that model resolution:

* ``maps/<stem>.png``: the anomaly map as a JET heat map from 0 (blue) to the threshold (red);
* ``overlays/<stem>.png``: image | (no ground truth) | heat map | region above the threshold (red) [| FADeR's soft
  mask];
* ``scores.csv``: ``path,score,label`` with ``label`` 1 (anomalous) when ``score > threshold``, else 0.

Stems used twice get ``_1``, ``_2``, ... appended. The image threshold comes from, in this order:
``threshold=FLOAT``; ``threshold=auto`` (or just ``normal_dir=DIR``): the ``quantile`` (default 1.0, the maximum,
so that every calibration image is normal; calibration sets are small) of the scores of the normal images in
``normal_dir``; the threshold the checkpoint carries (the largest score of the normal images held out of training,
measured when training ended); else, for checkpoints that predate it, the ORACLE threshold of the training run's
``metrics.json`` (picked on the test labels, with a warning). Unreadable files are reported and skipped. Exit code 0
when at least one image was scored, else 1.
``vit_weights`` is the DINO ViT state dict of a model with attention masking: checkpoints do not store it, and
loading one never downloads it.
"""

from __future__ import annotations

import csv
import glob
import io
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from fader_lightning.callbacks.overlays import heatmap, overlay_panel
from fader_lightning.data.dataset import AnomalyDataset
from fader_lightning.data.samples import NORMAL, Sample, list_images
from fader_lightning.data.transforms import build_transform
from fader_lightning.errors import ConfigError, DataError
from fader_lightning.inference import (
    ear_model,
    load_module,
    resolve_image_size,
    run_cli,
    run_entry,
    to_bool,
    to_float,
    to_int,
)
from fader_lightning.models.base_module import AnomalyModule
from fader_lightning.utils.io import atomic_save, atomic_write_text, writable_folder

log = logging.getLogger(__name__)

KEYS: tuple[str, ...] = (
    "ckpt", "input", "output", "threshold", "normal_dir", "quantile", "image_size", "batch_size", "device",
    "vit_weights", "force",
)  # fmt: skip
PROGRESS_MIN_IMAGES = 20
"""A progress bar is shown above this many images (and always when stderr is a terminal)."""
ORACLE_KEY = "image_threshold_oracle"


@dataclass
class Prediction:
    """What :func:`predict` did.

    Attributes:
        rows: ``(path, score, label)`` of every scored image, in input order.
        skipped: ``(path, reason)`` of every unreadable file.
        threshold: The image threshold used.
        threshold_source: Where the threshold came from.
    """

    rows: list[tuple[str, float, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    threshold: float = 0.0
    threshold_source: str = ""


def resolve_inputs(spec: str) -> list[Path]:
    """The image files named by ``input=``.

    Args:
        spec: An image file, a folder (its image files, sorted, not recursive) or a glob (``**`` recurses).

    Returns:
        The files, sorted.

    Raises:
        DataError: When nothing matches.
    """
    path = Path(spec)
    if path.is_dir():
        paths = list_images(path)
    elif path.is_file():
        paths = [path]
    else:
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    if not paths:
        raise DataError(f"input={spec} matches no image file; give an image, a folder of images or a quoted glob")
    return paths


def unique_stems(paths: Sequence[Path]) -> dict[Path, str]:
    """Output file names: each path's stem, with ``_1``, ``_2``, ... appended to repeats.

    Args:
        paths: Input files.

    Returns:
        ``{path: name}``.
    """
    names: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        name, count = path.stem, 0
        while name in used:
            count += 1
            name = f"{path.stem}_{count}"
        used.add(name)
        names[path] = name
    return names


def infer_batches(
    module: AnomalyModule,
    paths: Sequence[Path],
    image_size: tuple[int, int],
    batch_size: int,
    skipped: list[tuple[str, str]],
) -> Iterator[tuple[list[Path], Tensor, dict[str, Tensor]]]:
    """Read, resize (as in training) and infer images batch by batch, skipping unreadable files.

    Args:
        module: The stage module (eval mode).
        paths: Image files.
        image_size: Height and width the images are resized to.
        batch_size: Images per forward pass.
        skipped: Receives ``(path, reason)`` of every unreadable file.

    Yields:
        The readable paths of a batch, their images ``(B, 3, H, W)`` and the module's outputs.
    """
    # The training dataset is reused so that reading and resizing match training exactly; labels are unused.
    transform = build_transform(image_size, module.preprocessing["interpolation"])
    dataset = AnomalyDataset([Sample(path, "predict", NORMAL, "unknown", None, "predict") for path in paths], transform)
    show = len(paths) > PROGRESS_MIN_IMAGES or sys.stderr.isatty()
    with tqdm(total=len(paths), unit="image", disable=not show, file=sys.stderr) as progress:
        for start in range(0, len(paths), batch_size):
            stop = min(start + batch_size, len(paths))
            kept, images = [], []
            for index in range(start, stop):
                try:
                    images.append(dataset[index]["image"])
                    kept.append(paths[index])
                except DataError as err:
                    log.warning("skipping %s: %s", paths[index], err)
                    skipped.append((str(paths[index]), str(err)))
            progress.update(stop - start)
            if not images:
                continue
            batch = torch.stack(images).to(module.device)
            with torch.inference_mode():
                outputs = module.infer(batch)
            yield kept, batch, outputs


def calibrate_threshold(
    module: AnomalyModule, normal_dir: str | Path, image_size: tuple[int, int], batch_size: int, quantile: float
) -> float:
    """Image threshold from normal images: the ``quantile`` of their scores (1.0: the maximum).

    Args:
        module: The stage module.
        normal_dir: Folder of normal images.
        image_size: Inference height and width.
        batch_size: Images per forward pass.
        quantile: Quantile in ``(0, 1]``.

    Returns:
        The threshold.

    Raises:
        ConfigError: When ``quantile`` is outside ``(0, 1]``.
        DataError: When the folder holds no readable image.
    """
    if not 0 < quantile <= 1:
        raise ConfigError(f"quantile={quantile} is invalid; use a value in (0, 1], 1.0 being the maximum")
    paths = list_images(Path(normal_dir))
    if not paths:
        raise DataError(f"normal_dir={normal_dir} holds no images (png, jpg, bmp, tif); point it at normal images")
    scores = [out["score"].float().cpu() for _, _, out in infer_batches(module, paths, image_size, batch_size, [])]
    if not scores:
        raise DataError(f"none of the {len(paths)} images in normal_dir={normal_dir} could be read")
    all_scores = torch.cat(scores)
    threshold = float(torch.quantile(all_scores, quantile))
    log.info("threshold %.6g: quantile %g of the scores of %d normal images in %s", threshold, quantile,
             len(all_scores), normal_dir)  # fmt: skip
    return threshold


def resolve_threshold(
    threshold: str | None,
    normal_dir: str | None,
    calibrate: Callable[[str], float],
    entry: Mapping[str, Any],
    calibrated: float | None = None,
) -> tuple[float, str]:
    """Pick the image threshold (see the module docstring for the order).

    Args:
        threshold: ``threshold=`` text (a number or ``auto``), or ``None``.
        normal_dir: ``normal_dir=``, or ``None``.
        calibrate: Callable ``(normal_dir) -> float`` computing the threshold from normal images.
        entry: The training run's ``metrics.json`` entry (may be empty).
        calibrated: The threshold the checkpoint carries (calibrated on normal images when training ended), if any.

    Returns:
        The threshold and a description of its source.

    Raises:
        ConfigError: When the options conflict or no threshold can be found.
    """
    if threshold == "auto" or (threshold is None and normal_dir is not None):
        if normal_dir is None:
            raise ConfigError("threshold=auto needs normal_dir=<folder of normal images> to calibrate on")
        return calibrate(normal_dir), f"calibrated on {normal_dir}"
    if threshold is not None:
        if normal_dir is not None:
            raise ConfigError("normal_dir= is only used with threshold=auto; drop one of threshold= and normal_dir=")
        return to_float("threshold", threshold), "threshold="
    if calibrated is not None:
        return calibrated, "the checkpoint's, calibrated on normal training images"
    oracle = entry.get("metrics", {}).get(ORACLE_KEY)
    if oracle is None:
        raise ConfigError(
            "no image threshold: pass threshold=<score>, or threshold=auto normal_dir=<folder of normal images> "
            "to calibrate one (the checkpoint's run has no metrics.json with a test threshold either)"
        )
    log.warning(
        "using the training run's %s=%.6g: an ORACLE threshold picked on the test labels, not a deployable one; "
        "calibrate one with threshold=auto normal_dir=<folder of normal images>",
        ORACLE_KEY,
        oracle,
    )
    return float(oracle), f"oracle {ORACLE_KEY} of metrics.json"


def write_images(
    output: Path, names: Sequence[str], images: Tensor, outputs: Mapping[str, Tensor], threshold: float
) -> None:
    """Write the heat maps and overlays of a batch.

    Args:
        output: Output folder.
        names: Output file stem of each image.
        images: The images ``(B, 3, H, W)``.
        outputs: The module's outputs for them.
        threshold: Image threshold: the top of the heat-map colour scale and the overlay's region boundary.
    """
    for index, name in enumerate(names):
        amap = outputs["anomaly_map"][index, 0].float().cpu()
        extras = {"soft_mask": outputs["soft_mask"][index, 0].float().cpu()} if "soft_mask" in outputs else {}
        atomic_save(output / "maps" / f"{name}.png", Image.fromarray(heatmap(amap, 0.0, threshold)).save)
        panel = overlay_panel(images[index].cpu(), torch.zeros_like(amap), amap, threshold, (0.0, threshold), extras)
        atomic_save(output / "overlays" / f"{name}.png", Image.fromarray(panel).save)


def write_scores(path: Path, rows: Sequence[tuple[str, float, int]]) -> None:
    """Write ``scores.csv`` atomically (scores with full float precision).

    Args:
        path: The file.
        rows: ``(path, score, label)`` rows.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("path", "score", "label"))
    writer.writerows((image, repr(score), label) for image, score, label in rows)
    atomic_write_text(path, buffer.getvalue())


def predict(
    ckpt: str | Path,
    images: str,
    output: str | Path,
    threshold: str | None = None,
    normal_dir: str | None = None,
    quantile: float = 1.0,
    image_size: str | None = None,
    batch_size: int = 8,
    device: str = "auto",
    vit_weights: str | None = None,
    force: bool = False,
) -> Prediction:
    """Score images and write maps, overlays and ``scores.csv`` (what ``fader-predict`` runs).

    Args:
        ckpt: Stage-1 or stage-2 checkpoint.
        images: ``input=``: an image, a folder or a glob.
        output: Output folder.
        threshold: A number, ``auto`` or ``None`` (see the module docstring).
        normal_dir: Folder of normal images for ``threshold=auto``.
        quantile: Quantile of the normal scores for ``threshold=auto``.
        image_size: ``N`` or ``H,W``; ``None``: the checkpoint's size.
        batch_size: Images per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        vit_weights: ViT state dict for a model with attention masking.
        force: Accept an ``image_size`` that differs from the checkpoint's.

    Returns:
        The scored rows, the skipped files and the threshold.

    Raises:
        ConfigError: On bad options, no threshold, or a size that does not fit the model.
        CheckpointError: When the checkpoint cannot be loaded.
        DataError: When the input matches no file or ``normal_dir`` has no readable image.
    """
    paths = resolve_inputs(images)
    output = writable_folder(output, "output")
    module = load_module(ckpt, device, vit_weights)
    entry = run_entry(ckpt, module.stage)
    size = resolve_image_size(image_size, module, entry, force)
    ear_model(module).unet.check_input_size(*size)
    result = Prediction()
    result.threshold, result.threshold_source = resolve_threshold(
        threshold,
        normal_dir,
        lambda folder: calibrate_threshold(module, folder, size, batch_size, quantile),
        entry,
        module.scorer.image_threshold,
    )
    names = unique_stems(paths)
    for kept, batch, outputs in infer_batches(module, paths, size, batch_size, result.skipped):
        write_images(output, [names[path] for path in kept], batch, outputs, result.threshold)
        scores = outputs["score"].float().cpu().tolist()
        result.rows += [
            (str(path), score, int(score > result.threshold)) for path, score in zip(kept, scores, strict=True)
        ]
    write_scores(output / "scores.csv", result.rows)
    return result


def _command(args: dict[str, str]) -> int:
    result = predict(
        args["ckpt"],
        args["input"],
        args["output"],
        threshold=args.get("threshold"),
        normal_dir=args.get("normal_dir"),
        quantile=to_float("quantile", args.get("quantile", "1.0")),
        image_size=args.get("image_size"),
        batch_size=to_int("batch_size", args.get("batch_size", "8")),
        device=args.get("device", "auto"),
        vit_weights=args.get("vit_weights"),
        force=to_bool("force", args.get("force", "false")),
    )
    anomalous = sum(label for _, _, label in result.rows)
    lines = [
        f"scored {len(result.rows)} image(s): {anomalous} anomalous at threshold {result.threshold:.6g} "
        f"({result.threshold_source}); results in {args['output']}"
    ]
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} unreadable file(s):")
        lines += [f"  {path}: {reason}" for path, reason in result.skipped]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if result.rows else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring).

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        0 when at least one image was scored, 1 otherwise or when a bad argument, checkpoint or input stopped it.
    """
    return run_cli(argv, __doc__, KEYS, ("ckpt", "input", "output"), _command)


if __name__ == "__main__":
    sys.exit(main())

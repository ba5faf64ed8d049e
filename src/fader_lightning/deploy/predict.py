"""Score images with a trained checkpoint; write heat maps, overlays and ``scores.csv`` (``fader-predict``).

:func:`predict` does the work of :mod:`fader_lightning.cli.predict`, whose docstring describes the outputs and where
the threshold comes from.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import io
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor
from tqdm import tqdm

from fader_lightning.data.samples import IMAGE_EXTENSIONS
from fader_lightning.deploy.detector import Detection, Detector
from fader_lightning.errors import ConfigError, DataError, settings_of
from fader_lightning.keys import IMAGE_THRESHOLD_ORACLE
from fader_lightning.models.calibration import AUTO, Calibration
from fader_lightning.models.loading import open_checkpoint
from fader_lightning.models.scoring import calibrated_scale
from fader_lightning.utils.background import background_writes, submit
from fader_lightning.utils.io import atomic_write_bytes, atomic_write_text, check_apart, staged, writable_folder
from fader_lightning.visualize import MapScale, encode_png, heatmap, overlay_panel

log = logging.getLogger(__name__)

PROGRESS_MIN_IMAGES = 20
"""A progress bar is shown above this many images (and always when stderr is a terminal)."""
COLUMNS: tuple[str, ...] = (
    "path", "status", "score", "calibrated_score", "label", "map", "mask", "overlay", "height", "width", "reason"
)  # fmt: skip
"""Columns of ``scores.csv``."""
EARLIER_COLUMNS = (
    ("path", "status", "score", "normalized_score", "label", "map", "overlay", "reason"),
    ("path", "status", "score", "normalized_score", "label", "map", "mask", "overlay", "height", "width", "reason"),
)
"""The columns of the ``scores.csv`` of earlier versions, whose outputs a prediction may replace too (before
``calibrated_score`` was named so)."""
SCORES_FILE = "scores.csv"
OUTPUTS: tuple[str, ...] = ("maps", "masks", "overlays", SCORES_FILE)
"""What a prediction writes in ``output``: replaced together, never mixed with an earlier prediction's."""
OUTPUT_SIZES = ("input", "model")
"""``output_size``: maps and masks at each input image's own size, or at the model's input size."""
MAP_ENCODINGS = {"heat": np.uint8, "gray8": np.uint8, "gray16": np.uint16}
"""``map_encoding``: JET colours for people, or the calibrated map (0.5 at the threshold) in 8 or 16 bits."""


@dataclass
class Prediction:
    """What :func:`predict` did.

    Attributes:
        rows: One ``scores.csv`` row per input file (see :data:`COLUMNS`), in input order.
        threshold: The image threshold used.
        threshold_source: Where the threshold came from.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    threshold: float = 0.0
    threshold_source: str = ""

    @property
    def scored(self) -> list[dict[str, Any]]:
        """The rows of the images that were scored."""
        return [row for row in self.rows if row["status"] == "ok"]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """The rows of the files that could not be scored (unreadable, or too small for the model)."""
        return [row for row in self.rows if row["status"] == "skipped"]


def resolve_inputs(spec: str) -> tuple[list[Path], Path]:
    """The image files named by ``input=``, and the folder their output paths are relative to.

    Args:
        spec: An image file, a folder (its image files, sub-folders included) or a glob (``**`` recurses).

    Returns:
        The files, sorted, and their base folder (the folder itself, the file's folder, or the deepest folder every
        match of the glob shares).

    Raises:
        DataError: When nothing matches.
    """
    path = Path(spec)
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        base = path
    elif path.is_file():
        paths, base = [path], path.parent
    else:
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        base = Path(os.path.commonpath([p.parent.absolute() for p in paths])) if paths else Path()
    if not paths:
        raise DataError(f"input={spec} matches no image file; give an image, a folder of images or a quoted glob")
    return paths, base


def output_names(paths: Sequence[Path], base: Path) -> dict[Path, str]:
    """Output file names: each path's sub-folders below ``base`` and its stem, ``_1``, ``_2``, ... on repeats.

    Args:
        paths: Input files.
        base: Their base folder (see :func:`resolve_inputs`).

    Returns:
        ``{path: "sub/folders/stem"}`` (POSIX separators).
    """
    names: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        stem = path.absolute().relative_to(base.absolute()).with_suffix("").as_posix()
        name, count = stem, 0
        while name in used:
            count += 1
            name = f"{stem}_{count}"
        used.add(name)
        names[path] = name
    return names


def check_output(output: Path, spec: str, paths: Sequence[Path], names: Iterable[str], cfg: DictConfig) -> None:
    """Refuse an output folder that overlaps the inputs, or whose ``maps/``, ``overlays/`` or table are not ours.

    Args:
        output: The ``output=`` folder.
        spec: ``input=``.
        paths: The input files it names.
        names: Their output names (see :func:`output_names`).
        cfg: The config (``normal_dir``, ``ckpt_path``, ``vit_weights``).

    Raises:
        ConfigError: When ``output`` is, holds or lies inside an input (``input``, each file a glob matches,
            ``normal_dir``, ``ckpt_path``, ``vit_weights``), a glob ``input`` would match the files written there, or it
            holds a ``maps/``, ``overlays/`` or ``scores.csv`` that fader-predict did not write.
    """
    given = {"input": spec if Path(spec).exists() else None, "normal_dir": cfg.normal_dir, "ckpt_path": cfg.ckpt_path,
             "vit_weights": cfg.vit_weights}  # fmt: skip
    check_apart("output", output, given, folder=True)
    if given["input"] is None:  # a glob: its files, and what a re-run of it would match
        for path in paths:
            check_apart("output", output, {"input": path}, folder=True)
        check_glob_misses_outputs(spec, output, names)
    check_earlier_prediction(output)


def check_glob_misses_outputs(spec: str, output: Path, names: Iterable[str]) -> None:
    """Refuse a glob ``input`` that matches a file written in ``output``: a re-run would score its own overlays.

    Args:
        spec: The glob.
        output: The output folder.
        names: The output names of the inputs (see :func:`output_names`).

    Raises:
        ConfigError: Naming the glob, the file it would match and the fix.
    """
    pattern = Path(os.path.abspath(spec)).parts
    for name in names:
        for folder in ("maps", "overlays"):
            written = Path(os.path.abspath(output / folder / f"{name}.png"))
            if _glob_matches(pattern, written.parts):
                raise ConfigError(
                    f"input={spec} matches {written}, which output={output} gets: a re-run would score its own "
                    "overlays; choose an output= folder the pattern cannot match, or a narrower pattern"
                )


def _glob_matches(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    """Whether a path (its parts) matches a glob (its parts; ``**`` spans any number of folders, as in ``input=``)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return _glob_matches(pattern[1:], parts) or (bool(parts) and _glob_matches(pattern, parts[1:]))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_matches(pattern[1:], parts[1:])


def check_earlier_prediction(output: Path) -> None:
    """Refuse to replace a ``maps/``, ``overlays/`` or ``scores.csv`` in ``output`` that fader-predict did not write.

    A prediction replaces all three whole; an earlier one is recognised by its ``scores.csv`` header.

    Args:
        output: The output folder.

    Raises:
        ConfigError: Naming what is there and the fix.
    """
    present = [name for name in OUTPUTS if os.path.lexists(output / name)]
    if present and _header(output / SCORES_FILE) not in {",".join(columns) for columns in (COLUMNS, *EARLIER_COLUMNS)}:
        raise ConfigError(
            f"output={output} holds {', '.join(present)}, not an earlier result of fader-predict (no scores.csv of "
            "its own): a prediction replaces maps/, masks/, overlays/ and scores.csv whole; choose another output= "
            "folder, or move them away"
        )


def _header(path: Path) -> str | None:
    """The first line of a text file, or ``None`` when it cannot be read."""
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None


def infer_batches(
    detector: Detector, paths: Sequence[Path], batch_size: int, skipped: Callable[[Path, str], None]
) -> Iterator[tuple[list[Path], Tensor, list[tuple[int, int]], dict[str, Tensor]]]:
    """Read, resize (as in training) and infer images batch by batch, skipping files that cannot be scored.

    Args:
        detector: The model with its preprocessing.
        paths: Image files.
        batch_size: Images per forward pass.
        skipped: Called with the path and the reason of every file :meth:`Detector.preprocess` refuses.

    Yields:
        The readable paths of a batch, their images ``(B, 3, H, W)``, their own sizes and the module's outputs.
    """
    show = len(paths) > PROGRESS_MIN_IMAGES or sys.stderr.isatty()
    with tqdm(total=len(paths), unit="image", disable=not show, file=sys.stderr) as progress:
        for start in range(0, len(paths), batch_size):
            kept, images, sizes = [], [], []
            for path in paths[start : start + batch_size]:
                try:
                    image, size = detector.prepare(path)
                    images.append(image)
                    sizes.append(size)
                    kept.append(path)
                except DataError as err:
                    log.warning("skipping %s: %s", path, err)
                    skipped(path, str(err))
            progress.update(min(batch_size, len(paths) - start))
            if images:
                batch = torch.stack(images)
                yield kept, batch, sizes, detector.infer(batch)


def calibrate_threshold(detector: Detector, normal_dir: str | Path, batch_size: int, settings: Calibration) -> float:
    """Image threshold from a folder of normal images the model never trained on, by a calibration method.

    Args:
        detector: The model.
        normal_dir: Folder of normal images (sub-folders included).
        batch_size: Images per forward pass.
        settings: The calibration method and target (``calibration.*``); ``seen_gap`` needs the training images,
            which a folder does not give; ``auto`` is ``quantile`` where the folder has enough images, else ``max``.

    Returns:
        The threshold.

    Raises:
        ConfigError: For ``seen_gap``, or when the folder has fewer images than the method needs.
        DataError: When the folder holds no readable image.
    """
    if settings.method == "seen_gap":
        raise ConfigError(
            "calibration.method=seen_gap needs the model's training images; with normal_dir= choose "
            "calibration.method=auto, max, quantile or gaussian"
        )
    if not Path(normal_dir).is_dir():
        raise DataError(f"normal_dir={normal_dir} is not a folder; point it at a folder of normal images")
    try:
        paths, _ = resolve_inputs(str(normal_dir))
    except DataError as err:
        raise DataError(
            f"normal_dir={normal_dir} holds no images (png, jpg, bmp, tif); point it at normal images"
        ) from err
    scores = [out["score"].float().cpu() for *_, out in infer_batches(detector, paths, batch_size, lambda *_: None)]
    if not scores:
        raise DataError(f"none of the {len(paths)} images in normal_dir={normal_dir} could be read")
    all_scores = torch.cat(scores)
    if settings.method == AUTO:  # unseen normals, as many as the folder holds: a quantile where they suffice
        quantile = replace(settings, method="quantile")
        settings = quantile if len(all_scores) >= quantile.held_out_needed else replace(settings, method="max")
    if len(all_scores) < settings.held_out_needed:
        raise ConfigError(
            f"calibration.method={settings.method} at calibration.target_fpr={settings.target_fpr:g} needs "
            f"{settings.held_out_needed} normal images and normal_dir={normal_dir} gives {len(all_scores)}: add "
            "images, or choose calibration.method=max"
        )
    threshold = settings.threshold(all_scores)
    log.info("threshold %.6g: calibration.method=%s (target_fpr %g) on the scores of %d normal images in %s",
             threshold, settings.method, settings.target_fpr, len(all_scores), normal_dir)  # fmt: skip
    return threshold


def resolve_threshold(
    threshold: float | str | None,
    normal_dir: str | None,
    calibrate: Callable[[str], float],
    entry: Mapping[str, Any],
    calibrated: float | None = None,
) -> tuple[float, str]:
    """Pick the image threshold (in the order :mod:`fader_lightning.cli.predict` gives).

    Args:
        threshold: ``threshold=``: a number, ``auto`` or ``None``.
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
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
            raise ConfigError(
                f"threshold={threshold!r} is invalid; use a finite number, auto, or null (the checkpoint's)"
            )
        return float(threshold), "threshold="
    if calibrated is not None:
        return calibrated, "the checkpoint's, calibrated on normal images when training ended"
    oracle = entry.get("metrics", {}).get(IMAGE_THRESHOLD_ORACLE)
    if oracle is None:
        raise ConfigError(
            "no image threshold: pass threshold=<score>, or threshold=auto normal_dir=<folder of normal images> "
            "to calibrate one (the checkpoint's run has no metrics.json with a test threshold either)"
        )
    log.warning(
        "using the training run's %s=%.6g: an ORACLE threshold picked on the test labels, not a deployable one; "
        "calibrate one with threshold=auto normal_dir=<folder of normal images>",
        IMAGE_THRESHOLD_ORACLE,
        oracle,
    )
    return float(oracle), f"oracle {IMAGE_THRESHOLD_ORACLE} of metrics.json"


def heat_scale(detector: Detector) -> MapScale:
    """The fixed heat-map scale of a detector (described in :mod:`fader_lightning.cli.predict`).

    Args:
        detector: The model with its thresholds.

    Returns:
        The calibrated scale, else ``0`` to the image threshold (whose region is then the one drawn).
    """
    scale = MapScale.calibrated(detector.pixel_threshold, detector.lows[1] if detector.lows else None)
    return scale or MapScale(0.0, detector.image_threshold, detector.image_threshold)


def map_png(values: np.ndarray, scale: MapScale, encoding: str) -> bytes:
    """The PNG of one anomaly map.

    Args:
        values: ``(H, W)`` map.
        scale: The detector's heat-map scale (:func:`heat_scale`).
        encoding: ``heat`` (JET colours on the scale), ``gray8`` or ``gray16`` (the calibrated map, 0.5 at the
            threshold, see :func:`~fader_lightning.models.scoring.normalized`, in 8 or 16 bits).

    Returns:
        The encoded file.
    """
    if encoding == "heat":
        return encode_png(heatmap(values, scale.low, scale.high))
    unit = calibrated_scale(torch.from_numpy(values), scale.low, scale.threshold).numpy()
    depth = MAP_ENCODINGS[encoding]
    return encode_png((unit * np.iinfo(depth).max).round().astype(depth))


def write_images(
    output: Path,
    names: Sequence[str],
    images: Tensor,
    outputs: Mapping[str, Tensor],
    found: Sequence[Detection],
    detector: Detector,
    encoding: str,
) -> None:
    """Write the maps, masks and overlays of a batch.

    Args:
        output: Output folder.
        names: Output path (sub-folders and stem) of each image.
        images: The images ``(B, 3, h, w)``.
        outputs: The module's outputs for them.
        found: Their detections: the maps and masks at the images' own sizes when known, else at model size.
        detector: The model (its obfuscation for I', its thresholds).
        encoding: How maps are written (see :func:`map_png`).
    """
    scale, threshold = heat_scale(detector), detector.image_threshold
    masks = outputs.get("masks")
    masked = detector.module.ear.obfuscation(images.to(masks.device), masks[:, :1]) if masks is not None else None
    for index, (name, detection) in enumerate(zip(names, found, strict=True)):
        values = detection.anomaly_map if detection.full_map is None else detection.full_map
        atomic_write_bytes(output / "maps" / f"{name}.png", map_png(values, scale, encoding))
        region = ((values > scale.threshold) * np.uint8(255)).astype(np.uint8)  # the region the overlay outlines
        atomic_write_bytes(output / "masks" / f"{name}.png", encode_png(region))
        amap = outputs["anomaly_map"][index, 0].float().cpu()
        soft_mask = outputs["soft_mask"][index, 0].float().cpu() if "soft_mask" in outputs else None
        score = float(outputs["score"][index])
        lines = [name, f"score {score:.4g} thr {threshold:.4g}: {'anomalous' if score > threshold else 'normal'}"]
        panel = overlay_panel(
            images[index].cpu(), None, amap, scale, soft_mask,
            masked_input=masked[index].float().cpu() if masked is not None else None,
            recon=outputs["recon"][index].float().clamp(0, 1).cpu(), lines=lines,
        )  # fmt: skip
        atomic_write_bytes(output / "overlays" / f"{name}.png", encode_png(panel))


def scored_row(path: Path, found: Detection, name: str) -> dict[str, Any]:
    """The ``scores.csv`` row of a scored image.

    Args:
        path: The input file.
        found: Its detection.
        name: Its output name (see :func:`output_names`).

    Returns:
        The row (see :data:`COLUMNS`).
    """
    height, width = (found.full_map if found.full_map is not None else found.anomaly_map).shape
    return {"path": str(path), "status": "ok", "score": found.score, "label": int(found.label),
            "calibrated_score": found.calibrated_score if found.calibrated_score is not None else "",
            "map": f"maps/{name}.png", "mask": f"masks/{name}.png", "overlay": f"overlays/{name}.png",
            "height": height, "width": width}  # fmt: skip


def write_scores(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``scores.csv`` atomically (scores with full float precision).

    Args:
        path: The file.
        rows: Rows with the keys of :data:`COLUMNS` (missing ones are left empty).
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: repr(value) if isinstance(value, float) else value for key, value in row.items()}
                     for row in rows)  # fmt: skip
    atomic_write_text(path, buffer.getvalue())


def check_outputs_size(cfg: DictConfig) -> bool:
    """Check ``output_size`` and ``map_encoding``.

    Args:
        cfg: The predict config.

    Returns:
        Whether maps and masks are written at the input images' own sizes.

    Raises:
        ConfigError: On an unknown value.
    """
    if cfg.output_size not in OUTPUT_SIZES:
        raise ConfigError(f"output_size={cfg.output_size!r} is unknown; use one of {', '.join(OUTPUT_SIZES)}")
    if cfg.map_encoding not in MAP_ENCODINGS:
        raise ConfigError(f"map_encoding={cfg.map_encoding!r} is unknown; use one of {', '.join(MAP_ENCODINGS)}")
    return cfg.output_size == "input"


def predict(cfg: DictConfig) -> Prediction:
    """Score images and write maps, overlays and ``scores.csv`` (what ``fader-predict`` runs).

    The three are written to a temporary folder inside ``output`` and swapped in together when every image is done,
    replacing an earlier prediction's whole; a prediction that fails leaves ``output`` as it was.

    Args:
        cfg: The ``conf/predict.yaml`` config: ``ckpt_path``, ``input``, ``output``, ``threshold``, ``normal_dir``,
            ``calibration``, ``category``, ``image_size``, ``force``, ``batch_size``, ``device`` and ``vit_weights``.

    Returns:
        The rows of ``scores.csv`` and the threshold.

    Raises:
        ConfigError: On bad options, no threshold, a size that does not fit the model, or an output folder that
            overlaps the inputs or holds another tool's ``maps/``, ``overlays/`` or ``scores.csv`` (see
            :func:`check_output`).
        CheckpointError: When the checkpoint cannot be loaded.
        DataError: When the input matches no file or ``normal_dir`` has no readable image.
    """
    if isinstance(cfg.batch_size, bool) or not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size!r} is invalid; use an integer >= 1")
    paths, base = resolve_inputs(str(cfg.input))
    names = output_names(paths, base)
    check_output(Path(cfg.output), str(cfg.input), paths, names.values(), cfg)
    output = writable_folder(cfg.output, "output")
    opened = open_checkpoint(cfg.ckpt_path, cfg.device, cfg.vit_weights)
    module, entry = opened.module, opened.run
    if cfg.get("category") is not None:  # a unified model, scoring images of one known category
        module.use_category(str(cfg.category))
    size = opened.input_size(cfg.image_size, "image_size", cfg.force)
    detector = Detector(module, size)
    chosen = {key: value for key, value in (cfg.get("calibration") or {}).items() if value is not None}
    with settings_of("calibration"):
        settings = Calibration.of({**module.calibration_settings.as_dict(), **chosen})
    result = Prediction()
    result.threshold, result.threshold_source = resolve_threshold(
        cfg.threshold,
        cfg.normal_dir,
        lambda folder: calibrate_threshold(detector, folder, cfg.batch_size, settings),
        entry,
        detector.image_threshold,
    )
    detector = Detector(module, size, image_threshold=result.threshold)
    rows: dict[Path, dict[str, Any]] = {}

    def skip(path: Path, reason: str) -> None:
        rows[path] = {"path": str(path), "status": "skipped", "reason": reason}

    full_size = check_outputs_size(cfg)
    with staged(output, OUTPUTS) as staging:  # swapped in whole at the end: never mixed with an earlier prediction
        with background_writes():  # a batch's maps and overlays are written while the next batch is scored
            for kept, batch, sizes, outputs in infer_batches(detector, paths, cfg.batch_size, skip):
                found = detector.detections(outputs, [str(p) for p in kept], sizes if full_size else None)
                submit(write_images, staging, [names[path] for path in kept], batch, outputs, found, detector,
                       cfg.map_encoding)  # fmt: skip
                for path, detection in zip(kept, found, strict=True):
                    rows[path] = scored_row(path, detection, names[path])
        result.rows = [rows[path] for path in paths]
        write_scores(staging / SCORES_FILE, result.rows)
    return result

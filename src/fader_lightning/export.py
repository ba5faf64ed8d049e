"""``fader-export``: export the whole inference graph of a checkpoint to ONNX.

Usage:
    fader-export ckpt=PATH output=FILE.onnx [format=onnx] [masks=input|embedded] [image_size=N|H,W [force=true]]
        [opset=17] [vit_weights=PATH]

The graph is obfuscation -> U-Net encoder -> (FADeR: patch-error prediction, soft mask, skip attenuation) ->
U-Net decoder -> anomaly map -> image score, for one fixed image size and a dynamic batch axis:

* ``masks=input`` (default, every mask method): inputs ``images`` ``(B, 3, H, W)`` (RGB in [0, 1], resized like
  training) and ``masks`` ``(B, P, H, W)`` (``1`` = hidden pixel, ``P`` passes, 1 except for ``random_multi``),
  computed outside the graph with the checkpoint's mask method (saliency, a DINO ViT for attention, ...);
* ``masks=embedded`` (only ``checkerboard`` and ``none``, whose masks do not depend on the image): the mask is a
  constant of the graph and ``images`` is the only input.

Outputs: ``anomaly_map`` ``(B, 1, H, W)``, ``score`` ``(B,)`` and, for FADeR, ``soft_mask`` ``(B, 1, H / P, W / P)``
on the patch grid. ``FILE.json`` next to the model describes inputs, outputs, mask method, fill, scoring and the
soft-mask calibration (tau, T). The graph's size is the one stored in the checkpoint; ``image_size=`` may only
repeat it unless ``force=true`` (checkpoints that predate stored sizes fall back to the run's ``metrics.json``).
``vit_weights`` is the DINO ViT state dict of a model with attention masking (checkpoints do not store it).
"""

from __future__ import annotations

import io
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from fader_lightning.errors import ConfigError
from fader_lightning.inference import (
    ear_model,
    load_module,
    resolve_image_size,
    run_cli,
    run_entry,
    to_bool,
    to_int,
)
from fader_lightning.models import EARModel, FADeR, FADeRModule
from fader_lightning.models.base_module import AnomalyModule
from fader_lightning.models.scoring import scaled_kernel_size
from fader_lightning.utils.io import atomic_write_bytes, atomic_write_json, writable_folder

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("onnx",)
MASK_MODES: tuple[str, ...] = ("input", "embedded")
EMBEDDABLE_MASKS: tuple[str, ...] = ("checkerboard", "none")
"""Mask methods whose masks depend on the image size only, so they can be baked into the graph."""
KEYS: tuple[str, ...] = ("ckpt", "output", "format", "masks", "image_size", "opset", "vit_weights", "force")
DEFAULT_OPSET = 17


class ExportableDetector(nn.Module):
    """Pure-torch inference graph for a given mask: ``(images, masks) -> (anomaly_map, score[, soft_mask])``.

    It only calls the model's own pieces (obfuscation, U-Net encode/decode, FADeR's skip transform, scorer), so
    the exported graph computes what :meth:`~fader_lightning.models.base_module.AnomalyModule.infer` computes.

    Args:
        ear: The EAR model (frozen stage 1 under FADeR).
        fader: The FADeR skip transform, or ``None`` for stage 1.
        fixed_masks: Masks ``(1, P, H, W)`` used for every image when :meth:`forward` gets none
            (``masks=embedded``), or ``None``.
    """

    fixed_masks: Tensor | None

    def __init__(self, ear: EARModel, fader: FADeR | None = None, fixed_masks: Tensor | None = None) -> None:
        super().__init__()
        self.ear = ear
        self.fader = fader
        self.register_buffer("fixed_masks", fixed_masks)

    def forward(self, images: Tensor, masks: Tensor | None = None) -> tuple[Tensor, ...]:
        """Score a batch.

        Args:
            images: Images ``(B, 3, H, W)`` in [0, 1].
            masks: Masks ``(B, P, H, W)``, ``1`` = hidden; ``None`` uses the embedded masks.

        Returns:
            Anomaly maps ``(B, 1, H, W)`` and scores ``(B,)``, plus FADeR's soft mask ``(B, 1, H / P, W / P)``.
        """
        if masks is None:
            masks = self.fixed_masks.expand(images.shape[0], *self.fixed_masks.shape[1:])
        if self.fader is None:
            return self.ear.evaluate(images, masks)[1:]
        out = self.fader.detect(self.ear, images, masks)
        return out["anomaly_map"], out["score"], out["soft"]


def mask_method(ear: EARModel) -> tuple[str, dict[str, Any]]:
    """Name and settings of the model's mask generator (unwrapping the mask cache).

    Args:
        ear: The EAR model.

    Returns:
        The registry name and the settings that change the mask.
    """
    generator = getattr(ear.masker, "generator", ear.masker)
    return generator.name, generator.settings()


def build_detector(module: AnomalyModule, image_size: tuple[int, int], embed_masks: bool = False) -> ExportableDetector:
    """Wrap a stage module into an :class:`ExportableDetector` for one image size.

    Args:
        module: Stage-1 or stage-2 module (in eval mode).
        image_size: Height and width of the exported graph.
        embed_masks: Bake the (image-independent) masks into the graph.

    Returns:
        The detector, in eval mode.

    Raises:
        ConfigError: When the size does not fit the U-Net stride, masks cannot be embedded for this method, or
            FADeR's patch size is not a multiple of its deepest skip's stride (ONNX cannot pool those skips).
    """
    ear = ear_model(module)
    ear.unet.check_input_size(*image_size)
    fixed_masks = None
    if embed_masks:
        name, _ = mask_method(ear)
        if name not in EMBEDDABLE_MASKS:
            raise ConfigError(
                f"masks=embedded needs a mask that does not depend on the image ({', '.join(EMBEDDABLE_MASKS)}); "
                f"masking={name} computes one per image: export with masks=input and compute the masks outside"
            )
        fixed_masks = ear.masks(torch.zeros(1, 3, *image_size, device=module.device))
    fader = module.fader if isinstance(module, FADeRModule) else None
    deepest_stride = 2 ** (len(ear.unet.skip_channels) - 1)
    if fader is not None and fader.source == "skip_features" and fader.patch_size % deepest_stride:
        raise ConfigError(
            f"cannot export FADeR with patch_size={fader.patch_size}: its patch features average-pool every skip "
            f"(down to 1/{deepest_stride} resolution) to the patch grid with adaptive_avg_pool2d "
            "(models/fader.py, patch_features), which ONNX only supports when the grid divides the skip size; "
            f"this needs a patch size that is a multiple of {deepest_stride}"
        )
    return ExportableDetector(ear, fader, fixed_masks).eval()


def describe(
    module: AnomalyModule, detector: ExportableDetector, image_size: tuple[int, int], opset: int
) -> dict[str, Any]:
    """The side-car JSON of an exported model.

    Args:
        module: The exported stage module.
        detector: Its exported wrapper.
        image_size: Height and width of the graph.
        opset: ONNX opset.

    Returns:
        Inputs, outputs, mask method, fill, scoring and (FADeR) soft-mask settings.
    """
    ear, (height, width) = detector.ear, image_size
    name, settings = mask_method(ear)
    scorer, interpolation = ear.scorer, module.preprocessing["interpolation"]
    kernel = scorer.kernel_size or scaled_kernel_size(height, scorer.reference_size, scorer.reference_kernel)
    inputs = [
        {
            "name": "images",
            "shape": ["batch", 3, height, width],
            "dtype": "float32",
            "description": f"RGB in [0, 1], resized to image_size with {interpolation!r} interpolation, as in training",
        }
    ]
    if detector.fixed_masks is None:
        inputs.append(
            {
                "name": "masks",
                "shape": ["batch", ear.masker.num_passes, height, width],
                "dtype": "float32",
                "description": f"1 = hidden pixel; compute with masking method {name!r} and its settings",
            }
        )
    outputs = [
        {"name": "anomaly_map", "shape": ["batch", 1, height, width], "dtype": "float32"},
        {"name": "score", "shape": ["batch"], "dtype": "float32", "description": f"{scorer.pooling} of anomaly_map"},
    ]
    description: dict[str, Any] = {
        "format": "onnx",
        "opset": opset,
        "stage": module.stage,
        "image_size": [height, width],
        "interpolation": interpolation,
        "inputs": inputs,
        "outputs": outputs,
        "masking": {
            "name": name,
            "settings": settings,
            "embedded": detector.fixed_masks is not None,
            "num_passes": ear.masker.num_passes,
        },
        "fill": {"fill": ear.obfuscation.fill, "block": ear.obfuscation.block},
        "scoring": {
            "kernel_size": kernel,
            "smooth": scorer.smooth,
            "num_scales": scorer.num_scales,
            "pooling": scorer.pooling,
            "topk_fraction": scorer.topk_fraction,
            # the normal-map statistics are constants of the graph
            "normalize": "none" if scorer.needs_statistics else scorer.normalize,
            "std_floor": scorer.std_floor,
        },
        # calibrated on normal images when training ended: label = score > image_threshold (null: not calibrated)
        "thresholds": {"image": scorer.image_threshold, "pixel": scorer.pixel_threshold},
    }
    if detector.fader is not None:
        fader, soft = detector.fader, detector.fader.soft_masker
        grid = ["batch", 1, height // fader.patch_size, width // fader.patch_size]
        outputs.append(
            {
                "name": "soft_mask",
                "shape": grid,
                "dtype": "float32",
                "description": "skip weights on the patch grid, 1 - sigmoid((pred - tau) / T)",
            }
        )
        description["fader"] = {
            "patch_size": fader.patch_size,
            "source": fader.source,
            "levels": list(fader.levels),
            "enabled": fader.enabled,
            "use": fader.use,
            "attenuate_masked": fader.attenuate_masked,
            "residual_region": fader.residual_region,
            "mapping": soft.mapping,
            "calibrated": soft.is_calibrated,
            "tau": float(soft.tau),
            "temperature": float(soft.temperature),
        }
    return description


def export_onnx(
    module: AnomalyModule,
    output: str | Path,
    image_size: tuple[int, int],
    opset: int = DEFAULT_OPSET,
    embed_masks: bool = False,
) -> dict[str, Any]:
    """Export a stage module to ONNX (checked with ``onnx.checker``) and write its side-car ``.json``.

    The graph is traced at batch size 1 with static shapes and its batch axis is then declared dynamic
    (``batch``). Tracing with ``dynamic_axes`` fails in the TorchScript exporter: the Prewitt kernels of the
    MSGMS map (``models/losses.py``, ``_gradient_magnitude``) are ``repeat``-ed by a channel count read from the
    input's shape, which a dynamic batch axis turns into a convolution weight of unknown shape. Every shape in the
    graph other than the batch axis is fixed, and nothing mixes images across the batch, so the relabelled graph
    is valid for any batch size (the tests check batch sizes other than 1).

    Args:
        module: Stage-1 or stage-2 module.
        output: The ``.onnx`` file; the side-car is the same path with ``.json``.
        image_size: Height and width of the graph.
        opset: ONNX opset.
        embed_masks: Bake the masks into the graph (``checkerboard`` and ``none`` only).

    Returns:
        The side-car description.

    Raises:
        ConfigError: When the size does not fit the model or masks cannot be embedded for this method.
    """
    output = Path(output)
    detector = build_detector(module, image_size, embed_masks)
    description = describe(module, detector, image_size, opset)
    images = torch.rand(1, 3, *image_size, generator=torch.Generator().manual_seed(0)).to(module.device)
    args = (images,) if embed_masks else (images, ear_model(module).masks(images))
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks of the model turn into constants of this fixed-size graph, which is what is wanted.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            detector,
            args,
            buffer,
            input_names=[entry["name"] for entry in description["inputs"]],
            output_names=[entry["name"] for entry in description["outputs"]],
            opset_version=opset,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]  # intermediate shapes inferred for batch 1
    onnx.checker.check_model(model, full_check=True)
    atomic_write_bytes(output, model.SerializeToString())
    atomic_write_json(output.with_suffix(".json"), description)
    log.info("exported %s (%dx%d, masks %s) to %s", module.stage, *image_size,
             "embedded" if embed_masks else "as input", output)  # fmt: skip
    return description


def export_checkpoint(
    ckpt: str | Path,
    output: str | Path,
    fmt: str = "onnx",
    masks: str = "input",
    image_size: str | None = None,
    opset: int = DEFAULT_OPSET,
    vit_weights: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint and export it (what ``fader-export`` runs).

    Args:
        ckpt: Stage-1 or stage-2 checkpoint.
        output: The ``.onnx`` file.
        fmt: Export format (``format=``); only ``onnx``.
        masks: ``input`` (masks are a model input) or ``embedded`` (``checkerboard``/``none`` only).
        image_size: ``N`` or ``H,W``; ``None``: the checkpoint's size.
        opset: ONNX opset.
        vit_weights: ViT state dict for a model with attention masking.
        force: Accept an ``image_size`` that differs from the checkpoint's.

    Returns:
        The side-car description.

    Raises:
        ConfigError: On an unknown format or mask mode, or a size that does not fit the model.
        CheckpointError: When the checkpoint cannot be loaded.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    if masks not in MASK_MODES:
        raise ConfigError(f"masks={masks!r} is unknown; use one of {', '.join(MASK_MODES)}")
    output = Path(output)
    if output.is_dir():
        raise ConfigError(f"output={output} is a folder; name the .onnx file to write, e.g. output={output}/model.onnx")
    if output.suffix == ".json":
        raise ConfigError(f"output={output} would be overwritten by its own .json side-car; use a .onnx name")
    writable_folder(output.parent, "output's folder")
    module = load_module(ckpt, "cpu", vit_weights)
    size = resolve_image_size(image_size, module, run_entry(ckpt, module.stage), force)
    return export_onnx(module, output, size, opset, embed_masks=masks == "embedded")


def _command(args: dict[str, str]) -> int:
    export_checkpoint(
        args["ckpt"],
        args["output"],
        args.get("format", "onnx"),
        args.get("masks", "input"),
        args.get("image_size"),
        to_int("opset", args.get("opset", str(DEFAULT_OPSET)), minimum=7),
        args.get("vit_weights"),
        to_bool("force", args.get("force", "false")),
    )
    sys.stdout.write(f"wrote {args['output']} and {Path(args['output']).with_suffix('.json')}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring).

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when a bad argument, checkpoint or size stopped the export.
    """
    return run_cli(argv, __doc__, KEYS, ("ckpt", "output"), _command)


if __name__ == "__main__":
    sys.exit(main())

"""Export the whole inference graph of a checkpoint as a self-contained deployment model (``fader-export``).

:func:`export_checkpoint` does the work of :mod:`fader_lightning.cli.export`, whose docstring describes the graph,
the mask modes and the formats; :func:`export_model` exports a loaded module.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from fader_lightning.data.dataset import AnomalyDataset
from fader_lightning.data.samples import NORMAL, Sample, list_images
from fader_lightning.data.transforms import build_transform
from fader_lightning.errors import ConfigError
from fader_lightning.masking import MaskGenerator
from fader_lightning.models import EARModel, FADeRModel, FADeRModule
from fader_lightning.models.base_module import AnomalyModule
from fader_lightning.models.loading import open_checkpoint
from fader_lightning.models.scoring import CALIBRATED_FORMULA, AnomalyScorer, scaled_kernel_size
from fader_lightning.utils.io import atomic_write_bytes, atomic_write_json, check_apart, staged, writable_folder

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {"onnx": ".onnx", "onnx-int8": ".onnx", "openvino": ".xml"}
"""Export formats and the suffix of their model file."""
MASK_MODES: tuple[str, ...] = ("auto", "input", "embedded")
MIN_OPSET = 13
"""The oldest ONNX opset accepted: the oldest that expresses every graph (``aten::unflatten`` needs 13)."""
OPENVINO_CONFIG: dict[str, str] = {"INFERENCE_PRECISION_HINT": "f32"}
"""``compile_model`` settings that give float32 results, recorded in an OpenVINO export's side-car."""
MAX_CALIBRATION_IMAGES = 64
"""INT8 calibration reads at most this many images of ``calibration_dir`` (evenly spread over the sorted names)."""


class ExportableDetector(nn.Module):
    """Pure-torch inference graph: ``images[, masks] -> (anomaly_map, score[, soft_mask])``.

    It only calls the model's own pieces (mask graph, obfuscation, U-Net encode/decode, FADeR's skip transform,
    scorer), so the exported graph computes what :meth:`~fader_lightning.models.base_module.AnomalyModule.infer`
    computes.

    Args:
        ear: The EAR model (frozen stage 1 under FADeR).
        fader: The FADeR skip transform, or ``None`` for stage 1.
        mask_graph: The mask generator's graph module
            (:meth:`~fader_lightning.masking.base.MaskGenerator.graph_masks`) that computes the masks when
            :meth:`forward` gets none, or ``None`` when the masks are an input.
    """

    def __init__(self, ear: EARModel, fader: FADeRModel | None = None, mask_graph: nn.Module | None = None) -> None:
        super().__init__()
        self.ear = ear
        self.fader = fader
        self.mask_graph = mask_graph

    def forward(self, images: Tensor, masks: Tensor | None = None) -> tuple[Tensor, ...]:
        """Score a batch.

        Args:
            images: Images ``(B, 3, H, W)`` in [0, 1].
            masks: Masks ``(B, P, H, W)``, ``1`` = hidden; ``None`` computes them with the mask graph.

        Returns:
            Anomaly maps ``(B, 1, H, W)`` and scores ``(B,)``, plus FADeR's soft mask ``(B, 1, H / P, W / P)``.
        """
        if masks is None:
            masks = self.mask_graph(images)
        if self.fader is None:
            return self.ear.evaluate(images, masks)[1:]
        out = self.fader.detect(self.ear, images, masks)
        return out["anomaly_map"], out["score"], out["soft"]


def mask_generator(ear: EARModel) -> MaskGenerator:
    """The model's mask generator, unwrapped from the mask cache.

    Args:
        ear: The EAR model.

    Returns:
        The generator.
    """
    return getattr(ear.masker, "generator", ear.masker)


def build_detector(module: AnomalyModule, image_size: tuple[int, int], masks: str = "auto") -> ExportableDetector:
    """Wrap a stage module into an :class:`ExportableDetector` for one image size.

    Args:
        module: Stage-1 or stage-2 module (in eval mode).
        image_size: Height and width of the exported graph.
        masks: ``auto`` (masks in the graph when the method allows it, else an input), ``input`` or ``embedded``
            (in the graph, or an error).

    Returns:
        The detector, in eval mode.

    Raises:
        ConfigError: When the size does not fit the U-Net stride, ``masks=embedded`` is asked of a method whose
            masks cannot be computed in a graph, or FADeR's patch size is not a multiple of its deepest skip's
            stride (ONNX cannot pool those skips).
    """
    ear = module.ear
    ear.unet.check_input_size(*image_size)
    ear.unet.set_speed(channels_last=False, bf16=False)  # a plain float32 graph; runtimes pick their own layouts
    generator = mask_generator(ear)
    mask_graph = None if masks == "input" else generator.graph_masks(image_size)
    if mask_graph is None and masks == "embedded":
        raise ConfigError(
            f"masks=embedded cannot compute the masks of masking={generator.name} inside the graph: "
            f"{generator.graph_masks_unavailable}; export with masks=auto (or masks=input) and compute the masks "
            "outside the graph with that method"
        )
    fader = module.fader if isinstance(module, FADeRModule) else None
    deepest_stride = 2 ** (len(ear.unet.skip_channels) - 1)
    if fader is not None and fader.source == "skip_features" and fader.patch_size % deepest_stride:
        raise ConfigError(
            f"cannot export FADeR with patch_size={fader.patch_size}: its patch features average-pool every skip "
            f"(down to 1/{deepest_stride} resolution) to the patch grid with adaptive_avg_pool2d "
            "(models/fader/model.py, patch_features), which ONNX only supports when the grid divides the skip size; "
            f"this needs a patch size that is a multiple of {deepest_stride}"
        )
    return ExportableDetector(ear, fader, mask_graph).to(module.device).eval()


def describe_masking(detector: ExportableDetector, image_size: tuple[int, int]) -> tuple[dict, dict | None]:
    """The side-car's ``masking`` entry, and the ``masks`` input when the masks are not computed in the graph.

    Args:
        detector: The exported wrapper.
        image_size: Height and width of the graph.

    Returns:
        The entry and the input description (``None`` for masks in the graph).
    """
    ear, (height, width) = detector.ear, image_size
    generator = mask_generator(ear)
    masking: dict[str, Any] = {
        "name": generator.name,
        "settings": generator.settings(),
        "in_graph": detector.mask_graph is not None,
        "num_passes": ear.masker.num_passes,
    }
    if detector.mask_graph is not None:
        return masking, None
    can_embed = generator.graph_masks(image_size) is not None
    masking["reason"] = "exported with masks=input" if can_embed else generator.graph_masks_unavailable
    masks = {
        "name": "masks",
        "shape": ["batch", ear.masker.num_passes, height, width],
        "dtype": "float32",
        "description": f"1 = hidden pixel; compute with masking method {generator.name!r} and its settings",
    }
    return masking, masks


def describe_scoring(scorer: AnomalyScorer, height: int) -> dict[str, dict[str, Any]]:
    """The side-car's ``scoring`` and ``thresholds`` entries.

    Args:
        scorer: The exported model's scorer.
        height: Image height of the graph (the smoothing kernel scales with it).

    Returns:
        ``{"scoring": ..., "thresholds": ...}``.
    """
    lows = scorer.normal_lows
    kernel = scorer.kernel_size or scaled_kernel_size(height, scorer.reference_size, scorer.reference_kernel)
    return {
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
        # calibrated on normal images when training ended: label = score > image (null: not calibrated); the lows
        # are their smallest score and map value, for scores on the calibrated scale (the threshold at 0.5)
        "thresholds": {
            "image": scorer.image_threshold,
            "pixel": scorer.pixel_threshold,
            "image_low": lows[0] if lows else None,
            "pixel_low": lows[1] if lows else None,
            "calibrated_scale": CALIBRATED_FORMULA,
        },
    }


RESIZE_CALLS = {"area": "cv2.INTER_AREA", "linear": "cv2.INTER_LINEAR", "cubic": "cv2.INTER_CUBIC"}
"""The OpenCV flag of each ``data.interpolation``: what training resized with (albumentations calls OpenCV)."""


def describe_preprocessing(interpolation: str, image_size: tuple[int, int]) -> dict[str, str]:
    """The side-car's ``preprocessing`` entry: the calls and dtypes that reproduce the scores of ``fader-predict``.

    Args:
        interpolation: The checkpoint's resize method.
        image_size: Height and width of the graph.

    Returns:
        ``decode``, ``resize`` and ``to_input``, each a library call.
    """
    height, width = image_size
    return {
        "decode": "numpy.array(PIL.Image.open(path).convert('RGB')): uint8 (H, W, 3) RGB of an 8-bit file (16-bit "
        "files: value * 255 / 65535, rounded, first)",
        "resize": f"cv2.resize(rgb, ({width}, {height}), interpolation={RESIZE_CALLS[interpolation]}) on that uint8 "
        "array, as training did: another resize (PIL's BOX, or the same call on floats) moves the scores "
        "(docs/CALIBRATION.md measures it)",
        "to_input": "resized.astype(numpy.float32).transpose(2, 0, 1)[None] / 255.0: (1, 3, H, W) in [0, 1]",
    }


def reference_code(description: dict[str, Any], model_file: str, sidecar_file: str) -> list[str] | None:
    """A minimal Python scorer of the exported ONNX model that needs numpy, OpenCV, Pillow and onnxruntime only.

    Args:
        description: The side-car.
        model_file: The model's file name.
        sidecar_file: The side-car's file name.

    Returns:
        Its lines, or ``None`` when the graph also takes masks (they need the masking method).
    """
    if len(description["inputs"]) != 1:
        return None
    height, width = description["image_size"]
    flag = RESIZE_CALLS[description["interpolation"]]
    return [
        "import json",
        "import cv2",
        "import numpy as np",
        "import onnxruntime as ort",
        "from PIL import Image",
        f"sidecar = json.load(open({sidecar_file!r}))",
        f"session = ort.InferenceSession({model_file!r}, providers=['CPUExecutionProvider'])",
        "def score(path):",
        "    rgb = np.array(Image.open(path).convert('RGB'), dtype=np.uint8)",
        f"    resized = cv2.resize(rgb, ({width}, {height}), interpolation={flag})",
        "    images = resized.astype(np.float32).transpose(2, 0, 1)[None] / 255.0",
        "    anomaly_map, value = session.run(['anomaly_map', 'score'], {'images': images})[:2]",
        "    return float(value[0]), bool(value[0] > sidecar['thresholds']['image']), anomaly_map[0, 0]",
    ]


def describe_fader(fader: FADeRModel, image_size: tuple[int, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The side-car's ``fader`` entry and the ``soft_mask`` output.

    Args:
        fader: The exported FADeR model.
        image_size: Height and width of the graph.

    Returns:
        The entry and the output description.
    """
    soft, (height, width) = fader.soft_masker, image_size
    output = {
        "name": "soft_mask",
        "shape": ["batch", 1, height // fader.patch_size, width // fader.patch_size],
        "dtype": "float32",
        "description": "skip weights on the patch grid, 1 - sigmoid((pred - tau) / T)",
    }
    entry = {
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
    return entry, output


def describe(
    module: AnomalyModule, detector: ExportableDetector, image_size: tuple[int, int], opset: int, fmt: str
) -> dict[str, Any]:
    """The side-car JSON of an exported model.

    Args:
        module: The exported stage module.
        detector: Its exported wrapper.
        image_size: Height and width of the graph.
        opset: ONNX opset.
        fmt: Export format.

    Returns:
        Format, inputs, outputs, mask method, fill, scoring and (FADeR) soft-mask settings.
    """
    ear, (height, width) = detector.ear, image_size
    interpolation = module.preprocessing["interpolation"]
    images = {
        "name": "images",
        "shape": ["batch", 3, height, width],
        "dtype": "float32",
        "description": f"RGB in [0, 1], resized to image_size with {interpolation!r} interpolation, as in training",
    }
    masking, masks = describe_masking(detector, image_size)
    outputs = [
        {"name": "anomaly_map", "shape": ["batch", 1, height, width], "dtype": "float32"},
        {
            "name": "score",
            "shape": ["batch"],
            "dtype": "float32",
            "description": f"{ear.scorer.pooling} of anomaly_map",
        },
    ]
    description: dict[str, Any] = {
        "format": fmt,
        "opset": opset,
        "stage": module.stage,
        "image_size": [height, width],
        "interpolation": interpolation,
        "preprocessing": describe_preprocessing(interpolation, image_size),
        "inputs": [images] if masks is None else [images, masks],
        "outputs": outputs,
        "masking": masking,
        "fill": {"fill": ear.obfuscation.fill, "block": ear.obfuscation.block},
        **describe_scoring(ear.scorer, height),
    }
    # how the thresholds were chosen on normal images: the method and its target false-positive rate
    description["thresholds"]["calibration"] = module.calibration_settings.as_dict()
    if detector.fader is not None:
        description["fader"], soft_mask = describe_fader(detector.fader, image_size)
        outputs.append(soft_mask)
    return description


def trace_onnx(detector: ExportableDetector, description: dict[str, Any], opset: int) -> onnx.ModelProto:
    """Export the detector to an ONNX model (checked with ``onnx.checker``) with a dynamic batch axis.

    The graph is traced at batch size 1 with static shapes and its batch axis is then declared dynamic
    (``batch``). Tracing with ``dynamic_axes`` fails in the TorchScript exporter: the Prewitt kernels of the
    MSGMS map (``models/losses.py``, ``_gradient_magnitude``) are ``repeat``-ed by a channel count read from the
    input's shape, which a dynamic batch axis turns into a convolution weight of unknown shape. Every shape in the
    graph other than the batch axis is fixed, and nothing mixes images across the batch, so the relabelled graph
    is valid for any batch size (the tests check batch sizes other than 1).

    Args:
        detector: The detector (its inputs and outputs named by ``description``).
        description: Its side-car description (see :func:`describe`).
        opset: ONNX opset.

    Returns:
        The model.
    """
    height, width = description["image_size"]
    device = next(detector.parameters()).device
    images = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    args = (images,) if detector.mask_graph is not None else (images, detector.ear.masks(images))
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks of the model turn into constants of this fixed-size graph, which is what is wanted.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            torch.onnx.export(
                detector,
                args,
                buffer,
                input_names=[entry["name"] for entry in description["inputs"]],
                output_names=[entry["name"] for entry in description["outputs"]],
                opset_version=opset,
                dynamo=False,
            )
        except (torch.onnx.errors.OnnxExporterError, RuntimeError) as err:
            if "opset" not in str(err).lower():
                raise
            raise ConfigError(
                f"opset={opset} cannot be exported by this torch ({str(err).splitlines()[0]}); use opset=17 "
                "(conf/export.yaml)"
            ) from err
    model = onnx.load_from_string(buffer.getvalue())
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]  # intermediate shapes inferred for batch 1
    onnx.checker.check_model(model, full_check=True)
    return model


def check_arguments(output: str | Path, fmt: str, masks: str, calibrated: bool) -> tuple[list[Path], Path]:
    """Check the export arguments before any work and name the files the export writes.

    Args:
        output: The ``output=`` model file.
        fmt: Export format.
        masks: Mask mode.
        calibrated: Whether calibration images (``calibration_dir``) are given.

    Returns:
        The model files (OpenVINO: the ``.xml``, then its ``.bin`` weights) and the side-car ``.json``.

    Raises:
        ConfigError: On an unknown format or mask mode; an ``output`` that is a folder, that the side-car or the
            weights would overwrite, or (OpenVINO) that is not an ``.xml`` file; a file to write that is an
            existing folder; ``onnx-int8`` without calibration images, or calibration images for another format;
            ``openvino`` without the openvino package.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    if masks not in MASK_MODES:
        raise ConfigError(f"masks={masks!r} is unknown; use one of {', '.join(MASK_MODES)}")
    if fmt == "onnx-int8" and not calibrated:
        raise ConfigError(
            "format=onnx-int8 needs calibration_dir=DIR, a folder of normal images (e.g. the training set's good "
            "images) that calibrates the INT8 ranges"
        )
    if fmt != "onnx-int8" and calibrated:
        raise ConfigError(f"calibration_dir is only used by format=onnx-int8; drop it for format={fmt}")
    if fmt == "openvino" and importlib.util.find_spec("openvino") is None:
        raise ConfigError(
            "format=openvino needs the openvino package: pip install openvino (or the project's [deploy] extra)"
        )
    output, suffix = Path(output), FORMATS[fmt]
    if output.is_dir():
        raise ConfigError(
            f"output={output} is a folder; name the {suffix} file to write, e.g. output={output}/model{suffix}"
        )
    sidecar = output.with_suffix(".json")
    if sidecar == output:
        raise ConfigError(f"output={output} would be overwritten by its own .json side-car; use a {suffix} name")
    if fmt == "openvino" and output.suffix != ".xml":
        raise ConfigError(
            f"output={output}: format=openvino writes FILE.xml and its weights FILE.bin; name the .xml file, "
            f"e.g. output={output.with_suffix('.xml')}"
        )
    files = [output, output.with_suffix(".bin")] if fmt == "openvino" else [output]
    for path in (*files, sidecar):
        if path.is_dir():
            raise ConfigError(f"output={output} would replace the folder {path}; choose another output name")
    described = _described_files(sidecar)
    if described and described != {path.name for path in files}:
        raise ConfigError(
            f"output={output} would replace {sidecar}, the side-car of another exported model "
            f"({', '.join(sorted(described))}); give this export another name, or delete that model first"
        )
    return files, sidecar


def _described_files(sidecar: Path) -> set[str]:
    """The model files an existing side-car describes (empty when there is none, or it does not say)."""
    try:
        return set(json.loads(sidecar.read_text()).get("files") or ())
    except (OSError, ValueError, AttributeError):
        return set()


def calibration_paths(folder: str | Path) -> list[Path]:
    """The INT8 calibration images of ``calibration_dir``.

    Args:
        folder: A folder of normal images (not recursive).

    Returns:
        At most :data:`MAX_CALIBRATION_IMAGES` image files, evenly spread over the sorted names.

    Raises:
        ConfigError: When the folder does not exist or holds no image.
    """
    folder = Path(folder)
    paths = list_images(folder)
    if not paths:
        what = "holds no image (.png, .jpg, ...)" if folder.is_dir() else "is not a folder"
        raise ConfigError(
            f"calibration_dir={folder} {what}; point it to a folder of normal images, e.g. the training set's good "
            "images"
        )
    if len(paths) > MAX_CALIBRATION_IMAGES:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, MAX_CALIBRATION_IMAGES).round().astype(int)]
    return paths


def calibration_images(paths: Sequence[Path], image_size: tuple[int, int], interpolation: str) -> Tensor:
    """Read calibration images, resized exactly like training.

    Args:
        paths: Image files (see :func:`calibration_paths`).
        image_size: Height and width of the graph.
        interpolation: The model's resize interpolation.

    Returns:
        Images ``(N, 3, H, W)`` in [0, 1].

    Raises:
        DataError: When an image cannot be read.
    """
    samples = [Sample(path, "calibration", NORMAL, "good", None, "calibration") for path in paths]
    dataset = AnomalyDataset(samples, build_transform(image_size, interpolation))
    return torch.stack([dataset[index]["image"] for index in range(len(dataset))])


def calibration_feeds(detector: ExportableDetector, images: Tensor, batch_size: int = 4) -> list[dict[str, np.ndarray]]:
    """The graph inputs of the calibration images, in batches.

    Args:
        detector: The exported detector (masks that are an input are computed with the model's mask method).
        images: Images ``(N, 3, H, W)``.
        batch_size: Images per batch.

    Returns:
        One ``{input name: array}`` dict per batch.
    """
    feeds = []
    with torch.no_grad():
        for batch in images.split(batch_size):
            feed = {"images": batch.cpu().numpy()}
            if detector.mask_graph is None:
                feed["masks"] = detector.ear.masks(batch).cpu().numpy()
            feeds.append(feed)
    return feeds


def write_onnx(model: onnx.ModelProto, files: Sequence[Path]) -> None:
    """Write the float32 ONNX model.

    Args:
        model: The model.
        files: The ``.onnx`` file.
    """
    atomic_write_bytes(files[0], model.SerializeToString())


def write_openvino(model: onnx.ModelProto, files: Sequence[Path]) -> None:
    """Convert the ONNX model to OpenVINO IR (float32 weights) and write the ``.xml`` and ``.bin``.

    Args:
        model: The model.
        files: The ``.xml`` file and its ``.bin`` weights (the same name with ``.bin``, which OpenVINO gives them).
    """
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "model.onnx"
        source.write_bytes(model.SerializeToString())
        ov.save_model(ov.convert_model(source), files[0], compress_to_fp16=False)


def unet_nodes(model: onnx.ModelProto, detector: ExportableDetector) -> list[str]:
    """Names of the exported nodes that belong to the U-Net.

    The exporter names a node after the chain of sub-modules called to reach it. The U-Net runs through its
    ``encode``/``decode`` methods, so its own name does not appear and its nodes start with the name of one of its
    children (``/encoder_blocks.0/...``, ``/head/Conv``); the mask graph, scorer and FADeR predictor have names of
    their own.

    Args:
        model: The exported model.
        detector: The detector it was exported from.

    Returns:
        The node names.
    """
    children = {name for name, _ in detector.ear.unet.named_children()}
    return [node.name for node in model.graph.node if node.name.lstrip("/").split("/")[0].split(".")[0] in children]


def inline_constant_identities(model: onnx.ModelProto) -> None:
    """Let the consumers of ``Identity(initializer)`` nodes read the initializer itself, and drop those nodes.

    The exporter shares equal constants (biases of several convolutions) through ``Identity`` nodes; the quantiser
    only quantises a bias, and ONNX Runtime only fuses a quantised convolution, when the bias is an initializer.

    Args:
        model: The model, changed in place.
    """
    initializers = {tensor.name for tensor in model.graph.initializer}
    outputs = {value.name for value in model.graph.output}
    aliases = {
        node.output[0]: node.input[0]
        for node in model.graph.node
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs
    }
    for node in model.graph.node:
        node.input[:] = [aliases.get(name, name) for name in node.input]
    kept = [node for node in model.graph.node if not (node.op_type == "Identity" and node.output[0] in aliases)]
    del model.graph.node[:]
    model.graph.node.extend(kept)


def write_onnx_int8(
    model: onnx.ModelProto, files: Sequence[Path], feeds: Sequence[dict[str, np.ndarray]], nodes: Sequence[str]
) -> None:
    """Quantise the given nodes of the ONNX model to INT8 (static, QDQ) and write it.

    Weights are symmetric int8 per output channel, activations uint8 per tensor with MinMax ranges calibrated on
    ``feeds``.

    Args:
        model: The float32 model.
        files: The ``.onnx`` file.
        feeds: Calibration inputs, one dict of input name to array per batch.
        nodes: Names of the nodes to quantise (see :func:`unet_nodes`).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.pending = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.pending, None)

    model = onnx.ModelProto.FromString(model.SerializeToString())
    inline_constant_identities(model)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model.int8.onnx"
        quantize_static(
            model,
            target,
            Feeds(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=list(nodes),
        )
        atomic_write_bytes(files[0], target.read_bytes())


def graph_scores(session: Any, feeds: Sequence[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Image scores and largest map values of a graph on its calibration inputs.

    Args:
        session: An onnxruntime session.
        feeds: Its inputs, batch by batch.

    Returns:
        Scores and map peaks, one per image.
    """
    scores, peaks = [], []
    for feed in feeds:
        anomaly_map, score = session.run(["anomaly_map", "score"], feed)[:2]
        scores.append(score.astype(np.float64))
        peaks.append(anomaly_map.reshape(len(score), -1).max(axis=1).astype(np.float64))
    return np.concatenate(scores), np.concatenate(peaks)


def int8_thresholds(
    model: onnx.ModelProto, int8_file: Path, feeds: Sequence[dict[str, np.ndarray]], thresholds: dict[str, Any]
) -> None:
    """Move the thresholds onto the INT8 model's own scale (in place), and record the float ones.

    Quantisation moves every score; each threshold and low moves by the median difference between the INT8 and the
    float graph's scores (image) or map peaks (pixel) on the calibration images.

    Args:
        model: The float32 model.
        int8_file: The written INT8 model.
        feeds: The calibration inputs.
        thresholds: The side-car's ``thresholds`` entry (float values; changed in place).
    """
    import onnxruntime as ort  # the deploy extras, as for the quantiser

    if thresholds["image"] is None:
        return
    options = {"providers": ["CPUExecutionProvider"]}
    float_scores = graph_scores(ort.InferenceSession(model.SerializeToString(), **options), feeds)
    int8_scores = graph_scores(ort.InferenceSession(str(int8_file), **options), feeds)
    image_shift, pixel_shift = (float(np.median(q - f)) for q, f in zip(int8_scores, float_scores, strict=True))
    thresholds["float"] = {key: thresholds[key] for key in ("image", "pixel", "image_low", "pixel_low")}
    for key, shift in (("image", image_shift), ("image_low", image_shift), ("pixel", pixel_shift),
                       ("pixel_low", pixel_shift)):  # fmt: skip
        if thresholds[key] is not None:
            thresholds[key] += shift
    thresholds["int8"] = (
        f"the float thresholds and lows moved by the median INT8 - float difference of the scores "
        f"({image_shift:+.4g}) and map peaks ({pixel_shift:+.4g}) of {len(int8_scores[0])} calibration images"
    )


def write_format(
    model: onnx.ModelProto,
    files: Sequence[Path],
    description: dict[str, Any],
    detector: ExportableDetector,
    calibration: Tensor | None,
) -> None:
    """Write the model files of the side-car's format, and add what the format records to the side-car.

    Args:
        model: The float32 ONNX model.
        files: The model files to write (see :func:`check_arguments`).
        description: The side-car (its ``format``; changed in place).
        detector: The exported detector.
        calibration: The ``onnx-int8`` calibration images.
    """
    fmt = description["format"]
    if fmt == "onnx":
        write_onnx(model, files)
    elif fmt == "openvino":
        write_openvino(model, files)
        description["openvino"] = {
            "compile_config": dict(OPENVINO_CONFIG),
            "description": "float32 like the other formats; OpenVINO's CPU plugin otherwise runs in bfloat16 on "
            "CPUs that support it (AMX, AVX512-BF16), which changes anomaly maps by about 1e-2",
        }
    else:
        feeds = calibration_feeds(detector, calibration)
        write_onnx_int8(model, files, feeds, unet_nodes(model, detector))
        int8_thresholds(model, files[0], feeds, description["thresholds"])
        description["quantization"] = {
            "method": "static, QDQ, MinMax calibration",
            "weights": "int8, symmetric, per output channel",
            "activations": "uint8, per tensor",
            "quantized": "U-Net convolutions; masks, scoring and FADeR's predictor stay float32",
            "calibration_images": len(calibration),
        }


def export_model(
    module: AnomalyModule,
    output: str | Path,
    image_size: tuple[int, int],
    *,
    fmt: str,
    masks: str,
    opset: int,
    calibration: Tensor | None = None,
) -> dict[str, Any]:
    """Export a stage module in one format and write its side-car ``.json``.

    The model files and the side-car are written to a temporary folder beside them and swapped in together: an
    export that fails leaves an earlier model whole, and a new model never meets an earlier one's weights or side-car.

    Args:
        module: Stage-1 or stage-2 module.
        output: The model file (``.onnx``; ``.xml`` for OpenVINO); the side-car is the same path with ``.json``.
        image_size: Height and width of the graph.
        fmt: ``onnx``, ``onnx-int8`` or ``openvino``.
        masks: ``auto``, ``input`` or ``embedded`` (see :func:`build_detector`).
        opset: ONNX opset.
        calibration: Normal images ``(N, 3, H, W)`` that calibrate ``onnx-int8`` (see :func:`calibration_images`).

    Returns:
        The side-car description.

    Raises:
        ConfigError: On a bad argument (see :func:`check_arguments`), a size that does not fit the model, or
            ``masks=embedded`` for a method whose masks cannot be computed in a graph.
    """
    files, sidecar = check_arguments(output, fmt, masks, calibration is not None)
    detector = build_detector(module, image_size, masks)
    description = describe(module, detector, image_size, opset, fmt)
    model = trace_onnx(detector, description, opset)
    description["files"] = [path.name for path in files]
    if fmt != "openvino":
        description["preprocessing"]["python"] = reference_code(description, files[0].name, sidecar.name)
    with staged(sidecar.parent, [path.name for path in (*files, sidecar)]) as staging:
        write_format(model, [staging / path.name for path in files], description, detector, calibration)
        atomic_write_json(staging / sidecar.name, description)
    mode = "in the graph" if detector.mask_graph is not None else "as input"
    log.info("exported %s (%dx%d, %s, masks %s) to %s", module.stage, *image_size, fmt, mode, files[0])
    return description


def export_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Load a checkpoint and export it (what ``fader-export`` runs).

    Every option is checked before the checkpoint is read.

    Args:
        cfg: The ``conf/export.yaml`` config: ``ckpt_path``, ``output``, ``format``, ``masks``, ``calibration_dir``
            (required by ``onnx-int8``, refused otherwise), ``image_size``, ``force``, ``opset`` and ``vit_weights``.

    Returns:
        The side-car description.

    Raises:
        ConfigError: On an unknown format or mask mode, a bad output or calibration folder, an output (model,
            weights or side-car) that is an input (``ckpt_path``, ``calibration_dir``, ``vit_weights``), or a size that
            does not fit the model.
        CheckpointError: When the checkpoint cannot be loaded.
    """
    calibration_dir = cfg.calibration_dir
    if isinstance(cfg.opset, bool) or not isinstance(cfg.opset, int) or cfg.opset < MIN_OPSET:
        raise ConfigError(f"opset={cfg.opset!r} is invalid; use an integer >= {MIN_OPSET} (conf/export.yaml: 17)")
    files, sidecar = check_arguments(cfg.output, cfg.format, cfg.masks, calibration_dir is not None)
    inputs = {"ckpt_path": cfg.ckpt_path, "calibration_dir": calibration_dir, "vit_weights": cfg.vit_weights}
    check_apart("output", files[0], inputs, writes=[*files[1:], sidecar])
    paths = None if calibration_dir is None else calibration_paths(calibration_dir)
    writable_folder(files[0].parent, "output's folder", [path.name for path in (*files, sidecar)])
    opened = open_checkpoint(cfg.ckpt_path, "cpu", cfg.vit_weights)
    module, size = opened.module, opened.input_size(cfg.image_size, "image_size", cfg.force)
    calibration = None if paths is None else calibration_images(paths, size, module.preprocessing["interpolation"])
    return export_model(
        module, cfg.output, size, fmt=cfg.format, masks=cfg.masks, opset=cfg.opset, calibration=calibration
    )

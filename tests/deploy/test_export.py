"""fader-export: ONNX Runtime, OpenVINO and INT8 models against the torch modules, side-car JSON, argument errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image

from conftest import EAR_SETTINGS, TINY_UNET, command_cfg, compose_train_cfg, fader_module, run_command
from fader_lightning.cli.export import main
from fader_lightning.data.dataset import AnomalyDataset
from fader_lightning.data.samples import ANOMALOUS, NORMAL, Sample, list_images
from fader_lightning.data.transforms import build_transform
from fader_lightning.deploy.export import FORMATS, OPENVINO_CONFIG, export_checkpoint, export_model
from fader_lightning.deploy.predict import predict
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.jobs.train import train
from fader_lightning.models import EARModule, FADeRModel, FADeRModule
from fader_lightning.models.checkpoint_file import write_checkpoint

RUN = ["data.category=synth_object", "data.image_size=64", "data.n_train=8", "data.size=64", TINY_UNET,
       "stage=both", "trainer.max_epochs=1", "fader.trainer.max_epochs=1", "test=false", "logger=none",
       "trainer.enable_progress_bar=false", "masking=saliency", "data.val_policy=none",
       "model.scoring.normalize=none"]  # fmt: skip
OPSET = 17
"""The opset of conf/export.yaml."""
MODULES = {"ear": EARModule, "fader": FADeRModule}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stage-1 (saliency masks, computed per image) and FADeR checkpoints after one epoch each, and their data."""
    folder = tmp_path_factory.mktemp("export")
    results = train(compose_train_cfg(folder, RUN))
    return {
        **{stage: Path(entry["checkpoint"]) for stage, entry in results.items()},
        "data": folder / "data" / "synthetic" / "synth_object",
    }


def run_onnx(path: Path, **inputs: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: value.numpy() for name, value in inputs.items()})


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("stage", ["ear", "fader"])
def test_onnx_matches_torch(checkpoints: dict[str, Path], tmp_path: Path, stage: str, size: int) -> None:
    output = tmp_path / f"{stage}.onnx"
    force = ["force=true"] if size != 64 else []  # trained at 64 px: another size only when forced
    args = [f"ckpt_path={checkpoints[stage]}", "format=onnx", "masks=input", f"output={output}", f"image_size={size}"]
    assert run_command(main, [*args, *force]) == 0
    module = MODULES[stage].load_from_checkpoint(checkpoints[stage]).eval()
    # batch 3, not the traced batch of 1: the batch axis must really be dynamic
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(size))
    images[0] = 0.5  # a flat image as well
    with torch.no_grad():
        expected = module.infer(images)
    outputs = run_onnx(output, images=images, masks=expected["masks"])
    assert np.abs(outputs[0] - expected["anomaly_map"].numpy()).max() < 1e-4
    assert np.abs(outputs[1] - expected["score"].numpy()).max() < 1e-4
    sidecar = json.loads(output.with_suffix(".json").read_text())
    assert sidecar["image_size"] == [size, size] and sidecar["masking"]["name"] == "saliency"
    assert [entry["name"] for entry in sidecar["inputs"]] == ["images", "masks"]
    assert sidecar["masking"]["in_graph"] is False and sidecar["masking"]["reason"] == "exported with masks=input"
    graph_input = onnx.load(str(output)).graph.input[0].type.tensor_type.shape
    assert [d.dim_param or d.dim_value for d in graph_input.dim] == ["batch", 3, size, size]
    if stage == "fader":
        patch = module.fader.patch_size
        assert outputs[2].shape == (3, 1, size // patch, size // patch)
        # the calibrated soft mask is a steep sigmoid (1/T ~ 1e4): float noise of 1e-8 on the prediction shows
        expected_soft = F.avg_pool2d(expected["soft_mask"], patch).numpy()
        assert np.abs(outputs[2] - expected_soft).max() < 1e-3
        soft = module.fader.soft_masker
        assert sidecar["fader"]["tau"] == float(soft.tau) and sidecar["fader"]["temperature"] == float(soft.temperature)
        assert sidecar["fader"]["calibrated"] is True


def test_embedded_checkerboard_masks(tmp_path: Path) -> None:
    module = EARModule(
        **EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "checkerboard", "cell_size": 16}
    )
    module.eval()
    output = tmp_path / "checker.onnx"
    sidecar = export_model(module, output, (64, 64), fmt="onnx", masks="embedded", opset=OPSET)
    assert [entry["name"] for entry in sidecar["inputs"]] == ["images"] and sidecar["masking"]["in_graph"]
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = module.infer(images)
    (amap, score) = run_onnx(output, images=images)
    assert np.abs(amap - expected["anomaly_map"].numpy()).max() < 1e-4
    assert np.abs(score - expected["score"].numpy()).max() < 1e-4


def test_masks_of_a_random_method_stay_an_input(tmp_path: Path) -> None:
    masking = {"name": "random_multi", "cell_sizes": [8], "n": 2}
    module = EARModule(**EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking=masking).eval()
    with pytest.raises(ConfigError, match="masks=embedded cannot compute the masks of masking=random_multi"):
        export_model(module, tmp_path / "x.onnx", (64, 64), fmt="onnx", masks="embedded", opset=OPSET)
    assert not list(tmp_path.iterdir())
    sidecar = export_model(module, tmp_path / "auto.onnx", (64, 64), fmt="onnx", masks="auto", opset=OPSET)
    assert [entry["name"] for entry in sidecar["inputs"]] == ["images", "masks"]
    assert sidecar["masking"]["in_graph"] is False and "random cell partitions" in sidecar["masking"]["reason"]
    assert [value.name for value in onnx.load(str(tmp_path / "auto.onnx")).graph.input] == ["images", "masks"]


def test_fader_patch_size_that_onnx_cannot_pool(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    module = fader_module(str(checkpoints["ear"]), patch_size=2).eval()
    with pytest.raises(ConfigError, match="multiple of 4"):
        export_model(module, tmp_path / "x.onnx", (64, 64), fmt="onnx", masks="auto", opset=OPSET)


def test_bad_format(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format='tflite' is unknown; use one of onnx"):
        export_checkpoint(
            command_cfg("export", ckpt_path=checkpoints["ear"], output=tmp_path / "x.onnx", format="tflite")
        )
    assert run_command(main, [f"ckpt_path={checkpoints['ear']}", "format=tflite", f"output={tmp_path / 'x.onnx'}"]) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_onnx_matches_torch_with_residual_and_visible_only_attenuation(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    module = FADeRModule.load_from_checkpoint(checkpoints["fader"]).eval()
    trained = module.fader
    module.fader = FADeRModel(trained.skip_channels, trained.patch_size, levels=trained.levels, use="both",
                         attenuate_masked=False, residual_region="masked").eval()  # fmt: skip
    module.fader.soft_masker.calibrate(torch.randn(500, generator=torch.Generator().manual_seed(3)))
    module.fader.residual_fit.copy_(torch.tensor([0.02, 0.01]))
    output = tmp_path / "both.onnx"
    export_model(module, output, (64, 64), fmt="onnx", masks="input", opset=OPSET)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected = module.infer(images)
    outputs = run_onnx(output, images=images, masks=expected["masks"])
    assert np.abs(outputs[0] - expected["anomaly_map"].numpy()).max() < 1e-4
    sidecar = json.loads(output.with_suffix(".json").read_text())["fader"]
    assert (sidecar["use"], sidecar["residual_region"], sidecar["attenuate_masked"]) == ("both", "masked", False)


def test_the_checkpoint_decides_the_size_and_another_one_must_be_forced(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    moved = tmp_path / "elsewhere" / "model.ckpt"  # out of its run folder: no metrics.json to read the size from
    moved.parent.mkdir()
    moved.write_bytes(checkpoints["fader"].read_bytes())
    description = export_checkpoint(command_cfg("export", ckpt_path=moved, output=tmp_path / "own.onnx"))
    assert description["image_size"] == [64, 64] and description["interpolation"] == "area"
    assert run_command(main, [f"ckpt_path={moved}", f"output={tmp_path / 'big.onnx'}", "image_size=128"]) == 1
    assert "image_size=[128, 128] differs from the [64, 64] the checkpoint was trained at" in capsys.readouterr().err
    assert not (tmp_path / "big.onnx").exists()


ORT_ONLY = """
import sys

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
assert [value.name for value in session.get_inputs()] == ["images"], session.get_inputs()
outputs = session.run(None, {"images": np.load(sys.argv[2])})
np.savez(sys.argv[3], *outputs)
assert "fader_lightning" not in sys.modules and "torch" not in sys.modules
"""


def run_onnxruntime_alone(model: Path, images: torch.Tensor, folder: Path) -> list[np.ndarray]:
    """Run a model on images in a fresh process that imports only numpy and onnxruntime."""
    np.save(folder / "images.npy", images.numpy())
    command = [sys.executable, "-c", ORT_ONLY, str(model), str(folder / "images.npy"), str(folder / "out.npz")]
    proc = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(folder / "out.npz") as outputs:
        return [outputs[f"arr_{index}"] for index in range(len(outputs.files))]


def checkerboard_modules(folder: Path) -> dict[str, EARModule | FADeRModule]:
    """Untrained stage-1 and FADeR modules with checkerboard masks."""
    stage1 = EARModule(
        **EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "checkerboard", "cell_size": 8}
    )
    checkpoint = write_checkpoint(stage1.eval(), folder / "checkerboard.ckpt")
    return {"ear": stage1, "fader": fader_module(str(checkpoint)).eval()}


def assert_outputs_match(outputs: list[np.ndarray], expected: dict[str, torch.Tensor], stage: str, tol: float) -> None:
    """Anomaly maps and scores within ``tol``; FADeR's soft mask within 1e-3 (a steep calibrated sigmoid)."""
    assert np.abs(outputs[0] - expected["anomaly_map"].numpy()).max() < tol
    assert np.abs(outputs[1] - expected["score"].numpy()).max() < tol
    if stage == "fader":
        patch = expected["anomaly_map"].shape[-1] // outputs[2].shape[-1]
        assert np.abs(outputs[2] - F.avg_pool2d(expected["soft_mask"], patch).numpy()).max() < 1e-3


@pytest.mark.parametrize("stage", ["ear", "fader"])
@pytest.mark.parametrize("masking", ["saliency", "checkerboard"])
def test_onnxruntime_alone_scores_images_with_the_masks_in_the_graph(
    checkpoints: dict[str, Path], tmp_path: Path, masking: str, stage: str
) -> None:
    """Within 1e-4 of eager ``infer`` (maps and scores), the only input being the images."""
    output = tmp_path / "model.onnx"
    if masking == "saliency":
        assert (
            run_command(main, [f"ckpt_path={checkpoints[stage]}", f"output={output}"]) == 0
        )  # masks=auto is the default
        module = MODULES[stage].load_from_checkpoint(checkpoints[stage]).eval()
    else:
        module = checkerboard_modules(tmp_path)[stage]
        export_model(module, output, (64, 64), fmt="onnx", masks="auto", opset=OPSET)
    sidecar = json.loads(output.with_suffix(".json").read_text())
    assert sidecar["masking"]["in_graph"] is True and "reason" not in sidecar["masking"]
    assert [entry["name"] for entry in sidecar["inputs"]] == ["images"]
    thresholds = sidecar["thresholds"]  # what a deployment needs to decide and to report calibrated scores
    assert thresholds["image"] == module.scorer.image_threshold
    assert (thresholds["image_low"], thresholds["pixel_low"]) == (module.scorer.normal_lows or (None, None))
    # batch 3, not the traced batch of 1; images with structure (a constant image has a saliency of rounding noise)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    images[0] = torch.linspace(0, 1, 64).view(1, 1, 64) * torch.linspace(1, 0.2, 64).view(1, 64, 1)
    with torch.no_grad():
        expected = module.infer(images)
    assert_outputs_match(run_onnxruntime_alone(output, images, tmp_path), expected, stage, tol=1e-4)


def test_the_sidecars_reference_code_reproduces_fader_predict(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """The side-car's Python lines, run with numpy, OpenCV, Pillow and onnxruntime alone, on files of other sizes."""
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted((checkpoints["data"] / "test").rglob("*.png"))[:4]
    for index, path in enumerate(sources):
        image = Image.open(path).resize((100 + 7 * index, 90))
        (image.convert("L") if index == 0 else image).save(folder / f"{index}.png")  # an 8-bit grayscale file too
    output = tmp_path / "model.onnx"
    assert run_command(main, [f"ckpt_path={checkpoints['ear']}", f"output={output}"]) == 0
    sidecar = json.loads((tmp_path / "model.json").read_text())
    assert "interpolation=cv2.INTER_AREA" in sidecar["preprocessing"]["resize"]
    script = "\n".join([*sidecar["preprocessing"]["python"], REFERENCE_RUN])
    files = [str(path) for path in sorted(folder.glob("*.png"))]
    proc = subprocess.run([sys.executable, "-c", script, *files], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = json.loads(proc.stdout)
    result = predict(command_cfg("predict", ckpt_path=checkpoints["ear"], input=folder, output=tmp_path / "pred"))
    for row in result.rows:
        score, label = reference[row["path"]]
        assert score == pytest.approx(row["score"], abs=1e-4) and label == bool(row["label"])


REFERENCE_RUN = """
import sys
print(json.dumps({path: score(path)[:2] for path in sys.argv[1:]}))
assert "fader_lightning" not in sys.modules and "torch" not in sys.modules
"""


def test_openvino_ir_matches_torch(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """FADeR (stage 1 inside it), compiled with the side-car's float32 setting: within 1e-4 of eager ``infer``."""
    stage = "fader"
    output = tmp_path / "model.xml"
    assert run_command(main, [f"ckpt_path={checkpoints[stage]}", "format=openvino", f"output={output}"]) == 0
    sidecar = json.loads((tmp_path / "model.json").read_text())
    assert sidecar["format"] == "openvino" and sidecar["files"] == ["model.xml", "model.bin"]
    assert (tmp_path / "model.bin").stat().st_size > 0 and sidecar["masking"]["in_graph"]
    compiled = ov.Core().compile_model(str(output), "CPU", sidecar["openvino"]["compile_config"])
    assert [port.get_any_name() for port in compiled.outputs] == [entry["name"] for entry in sidecar["outputs"]]
    module = MODULES[stage].load_from_checkpoint(checkpoints[stage]).eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = module.infer(images)
    result = compiled({"images": images.numpy()})
    assert_outputs_match([result[port] for port in compiled.outputs], expected, stage, tol=1e-4)


def auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """Probability that an anomalous image scores above a normal one (ties count half)."""
    pairs = anomalous[:, None] - normal[None, :]
    return float(np.mean(pairs > 0) + 0.5 * np.mean(pairs == 0))


def test_int8_model_keeps_the_ranking_of_the_float_model(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """Calibrated on the training images: image AUROC within 0.05 of float, maps correlated >= 0.99."""
    data = checkpoints["data"]
    float_model, int8_model = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    assert run_command(main, [f"ckpt_path={checkpoints['ear']}", f"output={float_model}"]) == 0
    args = [
        f"ckpt_path={checkpoints['ear']}",
        "format=onnx-int8",
        f"output={int8_model}",
        f"calibration_dir={data}/train/good",
    ]
    assert run_command(main, args) == 0
    sidecar = json.loads((tmp_path / "int8.json").read_text())
    assert sidecar["format"] == "onnx-int8" and sidecar["quantization"]["calibration_images"] == 8
    ops = {node.op_type for node in onnx.load(str(int8_model)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    samples = [Sample(path, "test", NORMAL if folder.name == "good" else ANOMALOUS, folder.name, None, "synth")
               for folder in sorted((data / "test").iterdir()) for path in list_images(folder)]  # fmt: skip
    dataset = AnomalyDataset(samples, build_transform(64, sidecar["interpolation"]))
    images = torch.stack([dataset[index]["image"] for index in range(len(dataset))]).numpy()
    labels = np.array([sample.label for sample in samples])
    (float_maps, float_scores), (int8_maps, int8_scores) = (run_onnx(path, images=torch.from_numpy(images))
                                                            for path in (float_model, int8_model))  # fmt: skip
    float_auroc = auroc(float_scores[labels == NORMAL], float_scores[labels == ANOMALOUS])
    int8_auroc = auroc(int8_scores[labels == NORMAL], int8_scores[labels == ANOMALOUS])
    assert float_auroc > 0.7  # the set is learnable: the bound below is not met by two useless models
    assert float_auroc - int8_auroc <= 0.05
    assert np.corrcoef(float_maps.ravel(), int8_maps.ravel())[0, 1] >= 0.99
    # the INT8 thresholds sit on its own scale: the float ones moved by the median score shift on the calibration set
    normal = AnomalyDataset(
        [Sample(path, "train", NORMAL, "good", None, "synth") for path in list_images(data / "train" / "good")],
        build_transform(64, sidecar["interpolation"]),
    )
    calibration = torch.stack([normal[index]["image"] for index in range(len(normal))])
    (_, float_normal), (_, int8_normal) = (run_onnx(path, images=calibration) for path in (float_model, int8_model))
    thresholds = sidecar["thresholds"]
    assert thresholds["float"]["image"] == json.loads((tmp_path / "float.json").read_text())["thresholds"]["image"]
    shift = float(np.median(int8_normal.astype(np.float64) - float_normal))
    assert thresholds["image"] == pytest.approx(thresholds["float"]["image"] + shift, abs=1e-5)
    assert thresholds["image_low"] == pytest.approx(thresholds["float"]["image_low"] + shift, abs=1e-5)
    assert "8 calibration images" in thresholds["int8"]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_bad_outputs_are_refused_before_any_work(tmp_path: Path, fmt: str) -> None:
    missing = tmp_path / "missing.ckpt"  # every check comes first: passing them would only reach this checkpoint
    calibration = {"calibration_dir": str(tmp_path / "normal")} if fmt == "onnx-int8" else {}
    (tmp_path / "normal").mkdir()
    (tmp_path / "normal" / "a.png").write_bytes(b"")  # listed, never read: the checks do not decode images
    suffix = FORMATS[fmt]
    (tmp_path / "a_file").write_text("")
    cases = {
        tmp_path: "is a folder; name the",
        tmp_path / "model.json": r"overwritten by its own \.json side-car",
        tmp_path / "a_file" / f"model{suffix}": "output's folder=.*a_file is a file",
    }
    if fmt == "openvino":
        cases[tmp_path / "model.bin"] = "name the .xml file"
    (tmp_path / "taken.json").mkdir()
    cases[tmp_path / f"taken{suffix}"] = "would replace the folder"
    # a side-car describing another exported model (here a model.other) is never silently replaced
    (tmp_path / "other.json").write_text(json.dumps({"files": ["other.model"]}))
    cases[tmp_path / f"other{suffix}"] = r"the side-car of another exported model \(other\.model\)"
    before = sorted(tmp_path.rglob("*"))

    def export_cfg(ckpt: Path, output: Path) -> DictConfig:
        return command_cfg("export", ckpt_path=ckpt, output=output, format=fmt, **calibration)

    for output, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            export_checkpoint(export_cfg(missing, output))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="not writable"):
            export_checkpoint(
                command_cfg("export", ckpt_path=missing, output=locked / f"model{suffix}", format=fmt, **calibration)
            )
        locked.rmdir()
    assert sorted(tmp_path.rglob("*")) == before
    with pytest.raises(CheckpointError):
        export_checkpoint(
            command_cfg("export", ckpt_path=missing, output=tmp_path / f"model{suffix}", format=fmt, **calibration)
        )


def test_bad_masks_and_calibration_arguments(tmp_path: Path) -> None:
    missing, output = tmp_path / "missing.ckpt", tmp_path / "model.onnx"
    with pytest.raises(ConfigError, match="masks='outside' is unknown; use one of auto, input, embedded"):
        export_checkpoint(command_cfg("export", ckpt_path=missing, output=output, masks="outside"))
    with pytest.raises(ConfigError, match="format=onnx-int8 needs calibration_dir=DIR"):
        export_checkpoint(command_cfg("export", ckpt_path=missing, output=output, format="onnx-int8"))
    with pytest.raises(ConfigError, match="calibration_dir is only used by format=onnx-int8"):
        export_checkpoint(command_cfg("export", ckpt_path=missing, output=output, calibration_dir=tmp_path))
    with pytest.raises(ConfigError, match=r"calibration_dir=.* holds no image"):
        export_checkpoint(
            command_cfg("export", ckpt_path=missing, output=output, format="onnx-int8", calibration_dir=tmp_path)
        )
    with pytest.raises(ConfigError, match=r"calibration_dir=.*nowhere is not a folder"):
        export_checkpoint(
            command_cfg(
                "export", ckpt_path=missing, output=output, format="onnx-int8", calibration_dir=tmp_path / "nowhere"
            )
        )
    for opset in ("new", 12, 7):  # 7-12 cannot express aten::unflatten
        with pytest.raises(ConfigError, match=f"opset={opset!r} is invalid; use an integer >= 13"):
            export_checkpoint(command_cfg("export", ckpt_path=missing, output=output, opset=opset))
    assert run_command(main, [f"ckpt_path={missing}", f"output={output}", "format=onnx-int8"]) == 1
    assert not output.exists()


@pytest.mark.parametrize("opset", [13, 99])
def test_every_accepted_opset_exports_or_is_named(tmp_path: Path, opset: int) -> None:
    module = EARModule(**EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]}, masking={"name": "saliency"}).eval()
    output = tmp_path / "m.onnx"
    if opset == 99:  # newer than this torch exports
        with pytest.raises(ConfigError, match=r"opset=99 cannot be exported by this torch .*use opset=17"):
            export_model(module, output, (64, 64), fmt="onnx", masks="auto", opset=opset)
        assert not output.exists()
        return
    sidecar = export_model(module, output, (64, 64), fmt="onnx", masks="auto", opset=opset)
    assert sidecar["opset"] == 13 and onnx.load(output).opset_import[0].version == 13


def test_an_output_that_is_an_input_is_refused(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    trained = tmp_path / "model.ckpt"  # a real checkpoint: an export over it would succeed
    trained.write_bytes(checkpoints["ear"].read_bytes())
    (tmp_path / "link.onnx").symlink_to(trained)
    (tmp_path / "weights.bin").write_bytes(b"vit")
    cases = {
        (f"output={trained}",): rf"output={trained} is ckpt_path={trained}: writing it would replace that input",
        (f"output={tmp_path / 'link.onnx'}",): r"link\.onnx is ckpt_path=",
        (f"output={tmp_path / 'model.onnx'}",): r"model\.onnx \(its file .*model\.json\) is vit_weights=",
        (f"output={tmp_path / 'weights.xml'}", "format=openvino"): r"weights\.xml \(its file .*weights\.bin\) is vit",
    }
    before = {path: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    for args, message in cases.items():
        vit = tmp_path / ("model.json" if "model.onnx" in args[0] else "weights.bin")
        vit.touch()
        assert run_command(main, [f"ckpt_path={trained}", *args, f"vit_weights={vit}"]) == 1
        assert re.search(message, capsys.readouterr().err), args
    assert {path: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == {
        **before,
        tmp_path / "model.json": b"",
    }


def test_a_failed_reexport_leaves_the_earlier_openvino_model_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = (EARModule(**EAR_SETTINGS, unet={"widths": [8, 16, 32, 64]},
                               masking={"name": "checkerboard", "cell_size": 8}).eval() for _ in range(2))  # fmt: skip
    output = tmp_path / "model" / "model.xml"
    export_model(first, output, (64, 64), fmt="openvino", masks="auto", opset=OPSET)
    files = [output, output.with_suffix(".bin"), output.with_suffix(".json")]
    earlier = [path.read_bytes() for path in files]

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # the model files are written, then the side-car fails
        patch.setattr("fader_lightning.deploy.export.atomic_write_json", disk_full)
        with pytest.raises(OSError, match="No space left"):
            export_model(second, output, (64, 64), fmt="openvino", masks="auto", opset=OPSET)
    assert [path.read_bytes() for path in files] == earlier
    assert sorted(path.name for path in output.parent.iterdir()) == ["model.bin", "model.json", "model.xml"]
    export_model(second, output, (64, 64), fmt="openvino", masks="auto", opset=OPSET)
    assert output.with_suffix(".bin").read_bytes() != earlier[1]  # replaced together, the new weights with them
    compiled = ov.Core().compile_model(str(output), "CPU", dict(OPENVINO_CONFIG))
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = second.infer(images)
    assert np.abs(compiled({"images": images.numpy()})[compiled.outputs[1]] - expected["score"].numpy()).max() < 1e-4


def test_links_in_the_outputs_folder_matter_only_where_the_export_writes(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A user's folder may hold links (a .venv, a data folder); a side-car that is a link out of it is refused."""
    folder, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / ".venv").symlink_to(elsewhere)
    assert run_command(main, [f"ckpt_path={checkpoints['ear']}", f"output={folder / 'model.onnx'}"]) == 0
    assert (folder / "model.onnx").is_file() and not any(elsewhere.iterdir())
    (elsewhere / "notes.json").write_text("{}")
    (folder / "other.json").symlink_to(elsewhere / "notes.json")
    assert run_command(main, [f"ckpt_path={checkpoints['ear']}", f"output={folder / 'other.onnx'}"]) == 1
    assert re.search(
        r"other\.json is a symbolic link to .*notes\.json, outside the output folder", capsys.readouterr().err
    )
    assert (elsewhere / "notes.json").read_text() == "{}"

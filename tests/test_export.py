"""fader-export: ONNX Runtime against the torch modules, side-car JSON, argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.errors import ConfigError
from fader_lightning.export import export_checkpoint, export_onnx, main
from fader_lightning.models import FADeR, FADeRModule, InpaintingModule
from fader_lightning.train import train

RUN = ["data.category=synth_object", "data.image_size=64", "data.n_train=8", "data.size=64", TINY_UNET,
       "stage=both", "trainer.max_epochs=1", "fader.max_epochs=1", "test=false", "logger=none",
       "trainer.enable_progress_bar=false"]  # fmt: skip
MODULES = {"ear": InpaintingModule, "fader": FADeRModule}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stage-1 (saliency masks, computed per image) and FADeR checkpoints after one epoch each."""
    results = train(compose_train_cfg(tmp_path_factory.mktemp("export"), RUN))
    return {stage: Path(entry["checkpoint"]) for stage, entry in results.items()}


def run_onnx(path: Path, **inputs: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: value.numpy() for name, value in inputs.items()})


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("stage", ["ear", "fader"])
def test_onnx_matches_torch(checkpoints: dict[str, Path], tmp_path: Path, stage: str, size: int) -> None:
    output = tmp_path / f"{stage}.onnx"
    force = ["force=true"] if size != 64 else []  # trained at 64 px: another size only when forced
    assert main([f"ckpt={checkpoints[stage]}", "format=onnx", f"output={output}", f"image_size={size}", *force]) == 0
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
    module = InpaintingModule(unet={"widths": [8, 16, 32, 64]}, masking={"name": "checkerboard", "cell_size": 16})
    module.eval()
    output = tmp_path / "checker.onnx"
    sidecar = export_onnx(module, output, (64, 64), embed_masks=True)
    assert [entry["name"] for entry in sidecar["inputs"]] == ["images"] and sidecar["masking"]["embedded"]
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = module.infer(images)
    (amap, score) = run_onnx(output, images=images)
    assert np.abs(amap - expected["anomaly_map"].numpy()).max() < 1e-4
    assert np.abs(score - expected["score"].numpy()).max() < 1e-4


def test_embedded_masks_need_an_image_independent_method(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="masking=saliency computes one per image"):
        export_checkpoint(checkpoints["ear"], tmp_path / "x.onnx", masks="embedded", image_size="64")


def test_fader_patch_size_that_onnx_cannot_pool(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    module = FADeRModule(str(checkpoints["ear"]), patch_size=2).eval()
    with pytest.raises(ConfigError, match="multiple of 4"):
        export_onnx(module, tmp_path / "x.onnx", (64, 64))


def test_bad_format(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format='tflite' is unknown; use one of onnx"):
        export_checkpoint(checkpoints["ear"], tmp_path / "x.onnx", fmt="tflite")
    assert main([f"ckpt={checkpoints['ear']}", "format=tflite", f"output={tmp_path / 'x.onnx'}"]) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_onnx_matches_torch_with_residual_and_visible_only_attenuation(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    module = FADeRModule.load_from_checkpoint(checkpoints["fader"]).eval()
    trained = module.fader
    module.fader = FADeR(trained.skip_channels, trained.patch_size, levels=trained.levels, use="both",
                         attenuate_masked=False, residual_region="masked").eval()  # fmt: skip
    module.fader.soft_masker.calibrate(torch.randn(500, generator=torch.Generator().manual_seed(3)))
    module.fader.residual_fit.copy_(torch.tensor([0.02, 0.01]))
    output = tmp_path / "both.onnx"
    export_onnx(module, output, (64, 64))
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected = module.infer(images)
    outputs = run_onnx(output, images=images, masks=expected["masks"])
    assert np.abs(outputs[0] - expected["anomaly_map"].numpy()).max() < 1e-4
    sidecar = json.loads(output.with_suffix(".json").read_text())["fader"]
    assert (sidecar["use"], sidecar["residual_region"], sidecar["attenuate_masked"]) == ("both", "masked", False)


def test_the_checkpoint_decides_the_size_and_another_one_must_be_forced(
    checkpoints: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    moved = tmp_path / "elsewhere" / "model.ckpt"  # out of its run folder: no metrics.json to read the size from
    moved.parent.mkdir()
    moved.write_bytes(checkpoints["fader"].read_bytes())
    description = export_checkpoint(moved, tmp_path / "own.onnx")
    assert description["image_size"] == [64, 64] and description["interpolation"] == "area"
    assert main([f"ckpt={moved}", f"output={tmp_path / 'big.onnx'}", "image_size=128"]) == 1
    assert "image_size=128 differs from the [64, 64] the checkpoint was trained at" in caplog.text
    assert not (tmp_path / "big.onnx").exists()

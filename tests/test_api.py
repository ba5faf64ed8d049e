"""The Python API: ``Detector`` on any kind of image, ``train`` from the packaged configs, and an installed wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT, TINY_UNET
from fader_lightning.api import Detector, train
from fader_lightning.data.image_io import read_image
from fader_lightning.data.transforms import build_transform
from fader_lightning.deploy.detector import as_rgb_uint8
from fader_lightning.errors import ConfigError, DataError
from fader_lightning.models import FADeRModule

SIZE = 48
OVERRIDES = ["data.category=synth_object", f"data.image_size={SIZE}", "data.n_train=8", "data.n_test_good=2",
             "data.n_test_defect=1", TINY_UNET, "stage=both", "trainer.max_epochs=1", "fader.trainer.max_epochs=1",
             "logger=none", "trainer.enable_progress_bar=false", "callbacks.overlays.num_samples=0"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One api.train job run from a folder of its own (paths.root_dir is the working directory)."""
    tmp = tmp_path_factory.mktemp("api")
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        return tmp, train(OVERRIDES)
    finally:
        os.chdir(cwd)


def test_train_composes_the_packaged_configs_from_any_folder(trained: tuple[Path, dict]) -> None:
    tmp, results = trained
    assert set(results) == {"ear", "fader"}
    run_dir = Path(results["fader"]["run_dir"])
    # the template's layout under the working directory, each run folder named by what it is
    assert run_dir.parent == tmp / "logs" / "train" / "runs" / "synthetic-synth_object-checkerboard-s0"
    assert Path(results["fader"]["checkpoint"]).is_file() and (run_dir / "metrics.json").is_file()
    assert results["ear"]["config"]["data"]["image_size"] == SIZE


def test_train_refuses_sweeps_and_bad_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fader-train -m"):
        train(["experiment=table_demo"], output_dir=tmp_path / "sweep")
    with pytest.raises(ConfigError, match="do not compose"):
        train(["data=no_such_dataset"], output_dir=tmp_path / "bad")
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "bad").exists()


def test_detector_scores_files_arrays_and_tensors_like_the_module(trained: tuple[Path, dict], tmp_path: Path) -> None:
    tmp, results = trained
    shipped = tmp_path / "model.ckpt"  # outside its run folder: the checkpoint alone decides size and thresholds
    shutil.copyfile(results["fader"]["checkpoint"], shipped)
    detector = Detector.from_checkpoint(shipped, device="cpu")
    assert detector.stage == "fader" and detector.image_size == (SIZE, SIZE)
    files = sorted((tmp / "data" / "synthetic" / "synth_object" / "test").rglob("*.png"))
    module = FADeRModule.load_from_checkpoint(shipped).eval()
    transform = build_transform(SIZE)
    batch = torch.stack([torch.from_numpy(transform(image=read_image(p))["image"]).permute(2, 0, 1).float() / 255
                         for p in files])  # fmt: skip
    with torch.no_grad():
        expected = module.infer(batch)
    found = detector.predict(files, batch_size=2)
    assert [d.source for d in found] == [str(p) for p in files]
    torch.testing.assert_close(torch.tensor([d.score for d in found]), expected["score"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.from_numpy(found[0].anomaly_map), expected["anomaly_map"][0, 0])
    threshold, pixel = module.scorer.image_threshold, module.scorer.pixel_threshold
    assert [d.label for d in found] == [bool(s > threshold) for s in expected["score"]]
    assert np.array_equal(found[0].mask, (expected["anomaly_map"][0, 0] > pixel).numpy())
    assert all(0.0 <= d.calibrated_score <= 1.0 and (d.calibrated_score > 0.5) == d.label for d in found)
    # the same image as a PIL image, a uint8 array and a (3, H, W) tensor gives the same score
    rgb = read_image(files[0])
    forms = [Image.open(files[0]), rgb, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255]
    for form in forms:
        assert detector.predict(form)[0].score == pytest.approx(found[0].score, abs=1e-6)
    assert len(detector.predict(batch)) == len(files)  # a (B, 3, H, W) batch


def test_the_recorded_rates_at_the_threshold_are_what_the_deployed_detector_does(trained: tuple[Path, dict]) -> None:
    tmp, results = trained
    files = sorted((tmp / "data" / "synthetic" / "synth_object" / "test").rglob("*.png"))
    for stage, entry in results.items():
        found = Detector.from_checkpoint(entry["checkpoint"], device="cpu").predict(files)
        normal = [d.label for d, path in zip(found, files, strict=True) if path.parent.name == "good"]
        anomalous = [d.label for d, path in zip(found, files, strict=True) if path.parent.name != "good"]
        metrics = entry["metrics"]
        assert metrics["image_fpr_at_threshold"] == pytest.approx(np.mean(normal)), stage
        assert metrics["image_tpr_at_threshold"] == pytest.approx(np.mean(anomalous)), stage
        balanced = (np.mean(anomalous) + 1 - np.mean(normal)) / 2
        assert metrics["image_balanced_accuracy_at_threshold"] == pytest.approx(balanced), stage
        assert all(0 <= metrics[key] <= 1 for key in ("pixel_fpr_at_threshold", "pixel_tpr_at_threshold",
                                                       "pro_at_threshold"))  # fmt: skip


def test_detector_refuses_non_finite_and_too_small_images_by_name(trained: tuple[Path, dict], tmp_path: Path) -> None:
    detector = Detector.from_checkpoint(trained[1]["ear"]["checkpoint"], device="cpu")
    side = detector.minimum_side
    assert 1 < side <= SIZE
    good = np.full((SIZE, SIZE, 3), 0.5, dtype=np.float32)
    nan, inf = good.copy(), torch.from_numpy(good.copy()).permute(2, 0, 1)
    nan[3, 4, 0] = np.nan
    inf[0, 0, 0] = -torch.inf
    with pytest.raises(DataError, match=r"image 0 \(ndarray of shape \(48, 48, 3\)\) holds NaN or infinite values"):
        detector.predict(nan)
    with pytest.raises(DataError, match=r"image 1 \(Tensor of shape \(3, 48, 48\)\) holds NaN or infinite"):
        detector.predict([good, inf])
    with pytest.raises(DataError, match=rf"image 2 .* is 1x1 pixels, below the {side} pixels a side"):
        detector.predict([good, good, np.zeros((1, 1, 3), dtype=np.uint8)])
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (SIZE, side - 1)).save(tiny)
    with pytest.raises(DataError, match=rf"{tiny} is {side - 1}x{SIZE} pixels"):
        detector.predict([good, tiny])
    Image.new("RGB", (side, side)).save(tiny)  # the smallest side is scored
    assert len(detector.predict([tiny, good])) == 2


def test_image_forms_are_decoded_like_files(tmp_path: Path) -> None:
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert np.array_equal(as_rgb_uint8(gray), read_image(tmp_path / "gray.png"))
    sixteen = gray.astype(np.uint16) * 257
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    assert np.array_equal(as_rgb_uint8(sixteen), read_image(tmp_path / "sixteen.png"))
    rgba = np.dstack([np.repeat(gray[..., None], 3, -1), np.full_like(gray, 7)])
    assert np.array_equal(as_rgb_uint8(rgba), np.repeat(gray[..., None], 3, -1))
    assert np.array_equal(as_rgb_uint8(gray.astype(np.float32) / 255), as_rgb_uint8(gray))
    with pytest.raises(DataError, match=r"\(2, 3, 4, 5\)"):
        as_rgb_uint8(np.zeros((2, 3, 4, 5)))
    with pytest.raises(DataError, match=r"missing\.png"):
        as_rgb_uint8(tmp_path / "missing.png")


INSTALLED = """
import sys
from pathlib import Path
import fader_lightning
from fader_lightning.api import Detector, train
site = Path(sys.argv[1])
assert Path(fader_lightning.__file__).resolve().is_relative_to(site), fader_lightning.__file__
results = train(sys.argv[2:])
detector = Detector.from_checkpoint(results["fader"]["checkpoint"], device="cpu")
images = sorted(Path("data/synthetic/synth_object/test").rglob("*.png"))
print("SCORED", len(detector.predict(images)), results["fader"]["metrics"]["image_auroc"])
"""


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_trains_evaluates_and_predicts(tmp_path: Path) -> None:
    """The wheel (configs as package data) unpacked into a site folder, used from a folder that is not the repo."""
    project = tmp_path / "project"  # a copy, so that the build leaves nothing in the repository
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, project / name)
    for name in ("src", "conf"):
        shutil.copytree(REPO_ROOT / name, project / name, symlinks=True,
                        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))  # fmt: skip
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
             str(project)]  # fmt: skip
    proc = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    site = tmp_path / "site"
    with zipfile.ZipFile(next(wheels.glob("*.whl"))) as wheel:
        wheel.extractall(site)
    assert (site / "fader_lightning" / "conf" / "train.yaml").is_file()
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("FADER_ROOT", None)
    proc = subprocess.run([sys.executable, "-c", INSTALLED, str(site), *OVERRIDES], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SCORED 4" in proc.stdout
    (ckpt,) = (work / "logs" / "train" / "runs").glob("*/*/checkpoints/fader/last.ckpt")
    evaluate = [sys.executable, "-m", "fader_lightning.cli.evaluate", f"ckpt_path={ckpt}", "logger=none",
                "trainer.enable_progress_bar=false", "hydra.run.dir=eval_run"]  # fmt: skip
    proc = subprocess.run(evaluate, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "eval_run" / "metrics.json").is_file()

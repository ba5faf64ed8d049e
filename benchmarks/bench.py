"""``make bench``: cost and speed of every piece, measured in one run on this machine.

Writes ``results/bench.json`` and ``results/bench.md``. Latencies are medians over repeats after a
warm-up, at batch 1 and 256x256 unless stated. Models use random weights: cost does not depend on
the values. Ratios (FADeR overhead, random_multi vs single mask, U-Net vs its FLOP-bound limit) are
computed from numbers measured in this same run, since absolute times on shared machines are noisy. The
deployment exports (onnxruntime with the saliency masks in the graph, OpenVINO IR, INT8 ONNX) are timed the
same way, each also as a ratio to eager torch stage 1. The last lines time the same small ``fader-train -m``
sweep one job at a time and two at once (``threads=auto``, and every core per job for comparison).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import onnxruntime as ort
import openvino
import timm
import torch
from bench_common import (
    EAR_CONFIG,
    EAR_SETTINGS,
    FADER_LR,
    FADER_SETTINGS,
    MVTEC_SETTINGS,
    UNET,
    bottle_or_synthetic,
    markdown_breakdown,
    matmul_gflops,
    median_ms,
)
from omegaconf import OmegaConf

from fader_lightning.configs import CONFIG_DIR
from fader_lightning.data import MVTecADDataModule
from fader_lightning.deploy.export import FORMATS, export_model
from fader_lightning.masking import build_mask_generator
from fader_lightning.models import EARModule, FADeRModule
from fader_lightning.models.complexity import count_macs, count_parameters
from fader_lightning.models.fader.model import feature_dim, ranking_loss
from fader_lightning.results import load_results
from fader_lightning.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

SIZE = 256
VIT = OmegaConf.load(Path(CONFIG_DIR) / "masking" / "attention.yaml").model_name
"""The DINO ViT of ``masking=attention``."""
DEPLOYED_IN_GRAPH = ("onnx_stage1_masks_in_graph", "openvino_stage1_masks_in_graph", "onnx_int8_stage1_masks_in_graph")
"""Latency lines of the self-contained exports (saliency masks computed in the graph), each also a ratio to torch."""


def stage1(masking: dict[str, Any]) -> EARModule:
    """An untrained stage-1 module with the default U-Net."""
    return EARModule(unet=dict(UNET), masking=masking, **EAR_SETTINGS).eval()


def costs(image: torch.Tensor, ear: EARModule, fader: FADeRModule) -> dict[str, dict[str, float]]:
    """Parameters and MACs of the U-Net, the FADeR MLP and the ViT mask generator."""
    unet = ear.ear.unet
    grid = (SIZE // fader.fader.patch_size,) * 2
    d_in = feature_dim(fader.fader.source, unet.skip_channels, fader.fader.patch_size)
    vit = timm.create_model(VIT, pretrained=False).eval()
    return {
        "unet": {"params": count_parameters(unet), "gmacs": count_macs(unet, image) / 1e9},
        "fader_mlp": {
            "params": count_parameters(fader.fader),
            "gmacs": count_macs(fader.fader.predictor, (d_in, *grid)) / 1e9,
        },
        "vit_mask_generator": {
            "params": count_parameters(vit),
            "gmacs": count_macs(vit, (3, 224, 224)) / 1e9,
            "note": "conv + linear layers; the attention matmuls add about 4%",
        },
    }


def deployed_ms(
    module: torch.nn.Module, image: torch.Tensor, folder: Path, name: str, fmt: str = "onnx", masks: str = "auto"
) -> float:
    """Latency of an exported model in its runtime: onnxruntime, or OpenVINO (with its side-car's settings).

    Masks that are an input of the graph are computed beforehand and not timed.

    Args:
        module: The stage module.
        image: Batch ``(1, 3, SIZE, SIZE)``.
        folder: Scratch folder for the model.
        name: File name stem.
        fmt: Export format; ``onnx-int8`` is calibrated on a few random images (latency does not depend on them).
        masks: Mask mode of the export.

    Returns:
        The median latency in ms.
    """
    path = folder / f"{name}{FORMATS[fmt]}"
    calibration = (
        torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) if fmt == "onnx-int8" else None
    )
    opset = OmegaConf.load(Path(CONFIG_DIR) / "export.yaml").opset  # fader-export's
    description = export_model(module, path, (SIZE, SIZE), fmt=fmt, masks=masks, opset=opset, calibration=calibration)
    feeds = {"images": image.numpy()}
    if not description["masking"]["in_graph"]:
        with torch.inference_mode():
            feeds["masks"] = module.ear.masks(image).numpy()
    if fmt == "openvino":
        compiled = openvino.Core().compile_model(str(path), "CPU", description["openvino"]["compile_config"])
        return median_ms(lambda: compiled(feeds))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return median_ms(lambda: session.run(None, feeds))


def latencies(image: torch.Tensor, folder: Path) -> dict[str, float]:
    """Inference latency of each detector and mask generator: torch, onnxruntime, OpenVINO and INT8 ONNX.

    ``onnx_stage1`` and ``onnx_stage1_fader`` take the masks as an input (computed and not timed); the
    ``*_masks_in_graph`` lines run the whole self-contained graph, saliency masks included, like eager
    ``torch_stage1_saliency``.
    """
    out: dict[str, float] = {}
    ear = stage1({"name": "saliency"})
    fader = FADeRModule.from_config(ear, **FADER_SETTINGS).eval()  # on the same stage-1 model
    riad = stage1({"name": "random_multi"})
    weights = folder / "vit.pth"
    torch.save(timm.create_model(VIT, pretrained=False).state_dict(), weights)
    with torch.inference_mode():
        # stage 1 and stage 1 + FADeR alternate, round by round, so slow drifts of the machine hit both alike
        rounds = [(median_ms(lambda: ear.infer(image), 3, 1), median_ms(lambda: fader.infer(image), 3, 1))
                  for _ in range(5)]  # fmt: skip
        out["torch_stage1_saliency"] = statistics.median(a for a, _ in rounds)
        out["torch_stage1_fader"] = statistics.median(b for _, b in rounds)
        out["fader_overhead_paired"] = statistics.median(b / a for a, b in rounds)
        out["torch_random_multi"] = median_ms(lambda: riad.infer(image), repeats=5)
        for name, settings in (
            ("saliency", {}),
            ("checkerboard", {}),
            ("attention", {"model_name": VIT, "weights_path": str(weights)}),
        ):
            generator = build_mask_generator(name, **settings).eval()
            out[f"torch_mask_{name}"] = median_ms(lambda g=generator: g(image))
        out["torch_unet"] = median_ms(lambda: ear.ear.unet(image))
    out["onnx_stage1"] = deployed_ms(ear, image, folder, "ear", masks="input")
    out["onnx_stage1_fader"] = deployed_ms(fader, image, folder, "fader", masks="input")
    out["onnx_stage1_masks_in_graph"] = deployed_ms(ear, image, folder, "ear_in_graph")
    out["openvino_stage1_masks_in_graph"] = deployed_ms(ear, image, folder, "ear_openvino", "openvino")
    out["onnx_int8_stage1_masks_in_graph"] = deployed_ms(ear, image, folder, "ear_int8", "onnx-int8")
    return out


def train_throughput(folder: Path, batch: int = 4) -> dict[str, float]:
    """Images per second of a training step of each stage (stage 2 after its features are cached)."""
    ear = stage1({"name": "saliency"}).train()
    images = torch.rand(batch, 3, SIZE, SIZE)
    optimizer = torch.optim.Adam(ear.ear.unet.parameters(), EAR_CONFIG.optimizer.lr)

    def stage1_step() -> None:
        loss = ear.loss_fn(ear.ear.reconstruct(images, ear.ear.training_masks(images)), images)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    adam = functools.partial(torch.optim.Adam, lr=FADER_LR)
    # its own stage-1 model: FADeR freezes the one it is given, and stage 1 trains above
    fader = FADeRModule.from_config(stage1({"name": "saliency"}), **FADER_SETTINGS, optimizer=adam).train()
    fader_optimizer = fader.configure_optimizers()
    fader._features_and_targets(images)  # first epoch: frozen features and GT targets are cached

    def stage2_step() -> None:
        features, targets = fader._features_and_targets(images)
        ranking_loss(fader.fader.predictor(features), targets).backward()
        fader_optimizer.step()
        fader_optimizer.zero_grad()

    def stage2_first_epoch() -> None:
        fader._features_and_targets(torch.rand_like(images))  # new images: frozen forward + targets

    return {
        "stage1_img_per_s": batch / (median_ms(stage1_step, repeats=3, warmup=1) / 1000),
        "stage2_img_per_s": batch / (median_ms(stage2_step, repeats=10, warmup=2) / 1000),
        "stage2_first_epoch_img_per_s": batch / (median_ms(stage2_first_epoch, repeats=3, warmup=1) / 1000),
    }


def loader_epoch_seconds(root: Path, category: str, workers: int) -> float:
    """Wall time to iterate one training epoch of the data at 256x256."""
    dm = MVTecADDataModule(root, category, **{**MVTEC_SETTINGS, "image_size": SIZE, "num_workers": workers})
    dm.setup()
    start = time.perf_counter()
    for _ in dm.train_dataloader():
        pass
    return time.perf_counter() - start


def test_pass_rss(root: Path, category: str) -> dict[str, float]:
    """Peak RSS of a full stage-1 test pass with every metric, in a fresh process.

    The kernel's peak counter is reset (``/proc/self/clear_refs``) just before the test pass, so the peak
    is the test pass's own, not that of importing torch.
    """
    data = {**MVTEC_SETTINGS, "image_size": SIZE, "eval_batch_size": 8}
    code = (
        "import json, re, torch, lightning as L\n"
        "from pathlib import Path\n"
        "def status(key):\n"
        "    return int(re.search(key + r':\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)) / 1024\n"
        "from fader_lightning.data import MVTecADDataModule\n"
        "from fader_lightning.models import EARModule\n"
        f"dm = MVTecADDataModule({str(root)!r}, {category!r}, **{data!r})\n"
        f"m = EARModule(unet={UNET!r}, masking={{'name': 'saliency'}}, **{EAR_SETTINGS!r})\n"
        "Path('/proc/self/clear_refs').write_text('5')\n"
        "before = status('VmRSS')\n"
        "L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(m, dm, verbose=False)\n"
        "peak = status('VmHWM')\n"
        "print(json.dumps({'test_images': len(dm.test_samples), 'rss_before_test_mb': before,"
        " 'peak_rss_test_mb': peak, 'test_rss_growth_mb': peak - before,"
        " 'maps_float16_mb': len(dm.test_samples) * 256 * 256 * 2 / 2**20}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sweep_seconds(folder: Path, n_jobs: int, threads: str = "auto", name: str = "timed", epochs: int = 3) -> float:
    """Wall time of one small ``fader-train -m`` sweep (2 generated categories, 32 training images at 128 px).

    Args:
        folder: Scratch folder (data and sweep outputs).
        n_jobs: Jobs at once: 1 runs them one at a time (Hydra's basic launcher), more uses the joblib launcher.
        threads: The jobs' ``threads`` setting.
        name: Tells apart sweeps of the same settings (each needs a folder of its own).
        epochs: Training epochs of each job.

    Returns:
        Seconds from the command's start to its end, imports and data checks included.

    Raises:
        RuntimeError: When a job of the sweep did not finish with status ``ok``.
    """
    sweep = folder / f"sweep_{name}_j{n_jobs}_t{threads}"
    cmd = [sys.executable, "-m", "fader_lightning.cli.train", "-m", "data.category=synth_texture,synth_object",
           "data.image_size=128", "data.size=128", "data.n_train=32", f"trainer.max_epochs={epochs}",
           f"threads={threads}", "logger=none", "callbacks.overlays.num_samples=0", "trainer.enable_progress_bar=false",
           f"paths.data_dir={folder / 'sweep_data'}", f"paths.log_dir={folder / 'sweep_logs'}",
           f"hydra.sweep.dir={sweep}"]  # fmt: skip
    if n_jobs > 1:
        cmd += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    statuses = [load_results(job)["ear"]["status"] for job in sorted(sweep.glob("[0-9]*"))]
    if statuses != ["ok", "ok"]:
        raise RuntimeError(f"benchmark sweep {sweep} did not run both jobs: {statuses}")
    return seconds


def sweep_ratios(folder: Path) -> dict[str, float]:
    """The same sweep one job at a time and two at once, with ``threads=auto`` and with every core per job."""
    sweep_seconds(folder, 1, name="warmup", epochs=1)  # generates the data, so that no timed sweep pays for it
    cores = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    sequential = sweep_seconds(folder, 1)
    return {
        "sweep_s_one_at_a_time": sequential,
        "sweep_s_two_at_once": sweep_seconds(folder, 2),
        "sweep_s_two_at_once_all_cores_each": sweep_seconds(folder, 2, threads=cores),
    }


def speed_breakdown(path: Path) -> dict[str, Any] | None:
    """The test-pass breakdown ``make bench-speed`` wrote to ``speed.json``, or ``None`` before it ran."""
    try:
        return json.loads(path.read_text()).get("breakdown")
    except (OSError, ValueError):
        return None


def markdown(report: dict[str, Any]) -> str:
    """Render the report as Markdown tables."""
    lines = ["# fader-lightning benchmark", "", f"Machine: {report['machine']}", ""]
    lines += ["| component | params (M) | GMACs |", "| --- | ---: | ---: |"]
    for name, cost in report["costs"].items():
        lines.append(f"| {name} | {cost['params'] / 1e6:.3f} | {cost['gmacs']:.3f} |")
    lines += ["", "| latency, batch 1, 256x256 | ms |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.1f} |" for name, value in report["latency_ms"].items()]
    lines += ["", "| ratio / throughput | value | target |", "| --- | ---: | --- |"]
    lines += [
        f"| {name} | {value['value']:.3f} | {value.get('target', '')} |" for name, value in report["ratios"].items()
    ]
    lines += ["", "| other | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in report["other"].items()]
    breakdown = report.get("test_pass_breakdown")
    lines += ["", "## Where a test pass spends its time", ""]
    if breakdown:
        lines += ["From `make bench-speed` (`speed.json` in the same folder), measured in its own run.", "",
                  markdown_breakdown(breakdown)]  # fmt: skip
    else:
        lines.append("Not measured yet: `make bench-speed` measures it (about 10 minutes) and the next `make bench` "
                     "shows it here.")  # fmt: skip
    return "\n".join(lines) + "\n"


def run(out_dir: Path) -> dict[str, Any]:
    """Measure everything and write the report.

    Args:
        out_dir: Folder of ``bench.json`` and ``bench.md``.

    Returns:
        The report.
    """
    torch.manual_seed(0)
    image = torch.rand(1, 3, SIZE, SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gflops = matmul_gflops()
        lat = latencies(image, folder)
        ear = stage1({"name": "saliency"})
        fader = FADeRModule.from_config(ear, **FADER_SETTINGS)
        cost = costs(image, ear, fader)
        train = train_throughput(folder)
        root, category = bottle_or_synthetic(folder)
        loader = {f"loader_epoch_s_workers{w}": loader_epoch_seconds(root, category, w) for w in (0, 2)}
        rss = test_pass_rss(root, category)
        sweeps = sweep_ratios(folder)
    flop_bound_ms = 2 * cost["unet"]["gmacs"] / gflops * 1000
    report = {
        "machine": f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, data {category}",
        "costs": cost,
        "latency_ms": lat,
        "ratios": {
            "fader_overhead (stage1+FADeR / stage1, median of paired rounds)": {
                "value": lat.pop("fader_overhead_paired"),
                "target": "<= 1.05",
            },
            "onnx fader_overhead": {"value": lat["onnx_stage1_fader"] / lat["onnx_stage1"], "target": "<= 1.05"},
            "random_multi / single mask": {
                "value": lat["torch_random_multi"] / lat["torch_stage1_saliency"],
                "target": ">= 8",
            },
            "unet latency / FLOP-bound limit": {"value": lat["torch_unet"] / flop_bound_ms, "target": "<= 3"},
            "onnx stage1 / torch stage1": {"value": lat["onnx_stage1"] / lat["torch_stage1_saliency"]},
            **{
                f"{name} / torch stage1": {"value": lat[name] / lat["torch_stage1_saliency"]}
                for name in DEPLOYED_IN_GRAPH
            },
            "sweep wall time, 2 jobs at once / one at a time (threads=auto)": {
                "value": sweeps["sweep_s_two_at_once"] / sweeps["sweep_s_one_at_a_time"],
                "target": "<= 1.0",
            },
            "sweep wall time, 2 jobs at once with every core each / one at a time": {
                "value": sweeps["sweep_s_two_at_once_all_cores_each"] / sweeps["sweep_s_one_at_a_time"],
            },
        },
        "other": {"matmul_gflops": gflops, "unet_flop_bound_ms": flop_bound_ms, **train, **loader, **rss, **sweeps},
        "test_pass_breakdown": speed_breakdown(out_dir / "speed.json"),
    }
    atomic_write_json(out_dir / "bench.json", report)
    atomic_write_text(out_dir / "bench.md", markdown(report))
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python benchmarks/bench.py [--out results]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run(args.out)
    sys.stdout.write(markdown(report))
    sys.stdout.write(f"\nwritten: {args.out / 'bench.json'}, {args.out / 'bench.md'}\n")


if __name__ == "__main__":
    main()

"""``make bench-speed``: where a test pass spends its time, the U-Net's speed switches, and how cost grows.

Writes ``results/speed.json``, ``results/speed.md`` and ``results/scaling.png``, all measured in one run on this
machine, with random weights (cost does not depend on the values) and the default U-Net (widths 64-512):

1. **Test-pass breakdown** at 128 and 256 px, batch 8, saliency masks, on MVTec bottle (``$FADER_DATA_DIR/mvtec_ad``)
   or a generated stand-in of its size, after a warm-up pass: milliseconds per image of decoding, resizing, mask
   generation, the U-Net forward, scoring, the metrics, the overlays and the W&B sample table (offline), and the rest
   of a pass (collation, Lightning); then the whole ``Trainer.test`` pass (default callbacks; files already checked,
   model calibrated, as after fitting; the first pass, which also checks and calibrates, is reported too) against the
   model forward alone (``infer`` of a fresh module on batches already in memory), both in images per second, and the
   same pass with the decoding in one loader worker.
2. **Speed switches** of the U-Net forward (batch 1) and training step (batch 4) at 256 px: channels-last, bfloat16
   autocast, both, ``torch.compile`` and a frozen TorchScript graph (oneDNN fusion), each as a ratio to the FLOP
   bound, the time the U-Net's MACs take at the measured float32 matmul throughput.
3. **Scaling** over 64, 128, 256 and 512 px: test latency per image and training images per second, and the peak
   memory of test passes over 20, 40 and 80 images (``results/scaling.png``).

Ratios are taken within this run, so they hold on a noisy machine where absolute times do not.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fader_lightning.callbacks import OverlayWriter
from fader_lightning.callbacks.wandb_samples import WandbSampleTable
from fader_lightning.cli.bench import EAR_SETTINGS, MVTEC_SETTINGS, UNET, bottle_or_synthetic, matmul_gflops, median_ms
from fader_lightning.configs import literal_settings
from fader_lightning.data import MVTecADDataModule
from fader_lightning.data.image_io import read_image
from fader_lightning.data.transforms import build_transform
from fader_lightning.models import EARModule
from fader_lightning.models.complexity import count_macs
from fader_lightning.models.unet import UNet
from fader_lightning.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from fader_lightning.utils.wandb_setup import RunFolderWandbLogger

log = logging.getLogger(__name__)

BATCH = 8
"""Test batch size (``data.eval_batch_size``'s default is 16; 8 keeps 512 px within memory)."""
TRAIN_BATCH = 4
SIZES = (64, 128, 256, 512)
BREAKDOWN_SIZES = (128, 256)
MEMORY_IMAGES = (20, 40, 80)
SALIENCY = literal_settings("masking/saliency")


def stage1(size: int, speed: dict[str, bool] | None = None) -> EARModule:
    """A stage-1 module with random weights, saliency masks (cached in memory) and ``conf/``'s settings."""
    settings = {**EAR_SETTINGS, "speed": speed or EAR_SETTINGS["speed"]}
    return EARModule(**settings, unet=dict(UNET), masking=dict(SALIENCY), image_size=size).eval()


def datamodule(root: Path, category: str, size: int, check_cache: Path | None = None) -> MVTecADDataModule:
    """The test data at ``size``, batch :data:`BATCH`; setup decodes every file unless ``check_cache`` knows it."""
    settings = {**MVTEC_SETTINGS, "image_size": size, "eval_batch_size": BATCH, "check_cache": check_cache}
    return MVTecADDataModule(root, category, **settings)


def test_seconds(module: EARModule, dm: MVTecADDataModule, callbacks: list[L.Callback], logger: Any = False) -> float:
    """Wall time of a whole ``Trainer.test`` pass (setup, loading, inference, metrics, callbacks)."""
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=logger, callbacks=callbacks, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    start = time.perf_counter()
    trainer.test(module, dm, verbose=False)
    return time.perf_counter() - start


def breakdown(root: Path, category: str, size: int, folder: Path) -> dict[str, float]:
    """Milliseconds per image of each part of a test pass, and the whole pass against the forward alone.

    Args:
        root: MVTec-layout root.
        category: Category under it.
        size: Image side.
        folder: Scratch folder (overlays, W&B run).

    Returns:
        ``{part}_ms`` per image, ``test_img_per_s``, ``forward_img_per_s`` and their ratio.
    """
    dm = datamodule(root, category, size)
    dm.setup("test")
    paths = [sample.image_path for sample in dm.test_samples]
    n = len(paths)
    start = time.perf_counter()
    decoded = [read_image(path) for path in paths]
    out = {"images": n, "decode_ms": 1000 * (time.perf_counter() - start) / n}
    transform = build_transform(size, EAR_SETTINGS["interpolation"])
    start = time.perf_counter()
    resized = [transform(image=image)["image"] for image in decoded]
    out["resize_ms"] = 1000 * (time.perf_counter() - start) / n
    images = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float().div(255) for image in resized])
    batches = list(images.split(BATCH))
    # As after fitting: the files are checked and the model is calibrated (on the training normals), so the passes
    # below test it and nothing else. The first pass does both, and warms the kernels.
    checked, trained = folder / f"checked{size}.json", stage1(size)
    first_s = test_seconds(trained, datamodule(root, category, size, checked), [])
    out["test_first_run_img_per_s"] = n / first_s
    module = copy.deepcopy(trained)
    model = module.model
    with torch.inference_mode():
        start = time.perf_counter()
        masks = [model.masker(batch) for batch in batches]  # every mask computed, as in a first pass
        out["masks_ms"] = 1000 * (time.perf_counter() - start) / n
        obfuscated = [model.obfuscation(batch, mask[:, :1]) for batch, mask in zip(batches, masks, strict=True)]
        start = time.perf_counter()
        recons = [model.unet(batch) for batch in obfuscated]
        out["unet_ms"] = 1000 * (time.perf_counter() - start) / n
        start = time.perf_counter()
        scored = [model.scorer(batch, recon) for batch, recon in zip(batches, recons, strict=True)]
        out["scoring_ms"] = 1000 * (time.perf_counter() - start) / n
        start = time.perf_counter()
        store = module.store
        store.reset()
        labels = torch.tensor([sample.label for sample in dm.test_samples])
        gt = torch.zeros(n, size, size)
        gt[labels == 1, : size // 4, : size // 4] = 1  # any defect region: metric cost does not depend on it
        for index, (amap, score) in enumerate(scored):
            rows = slice(index * BATCH, index * BATCH + len(score))
            store.update(score, labels[rows], amap, gt[rows])
        store.compute()
        out["metrics_ms"] = 1000 * (time.perf_counter() - start) / n
        fresh = copy.deepcopy(trained)  # the compute of a test step, nothing else
        start = time.perf_counter()
        for batch in batches:
            fresh.infer(batch)
        out["forward_img_per_s"] = n / (time.perf_counter() - start)
    plain_s = test_seconds(copy.deepcopy(trained), datamodule(root, category, size, checked), [])
    overlays = OverlayWriter(folder / f"overlays{size}", num_samples=8, selection="spread")
    with_overlays_s = test_seconds(copy.deepcopy(trained), datamodule(root, category, size, checked), [overlays])
    wandb_logger = RunFolderWandbLogger(save_dir=str(folder / f"wandb{size}"), offline=True, project="bench")
    table = WandbSampleTable(num_samples=16, selection="spread")
    with_wandb_s = test_seconds(
        copy.deepcopy(trained), datamodule(root, category, size, checked), [table], wandb_logger
    )
    wandb_logger.experiment.finish()
    overlap = datamodule(root, category, size, checked)
    overlap.num_workers = 1  # decoding in a worker process, beside the compute
    overlays_overlapped = OverlayWriter(folder / f"overlays{size}_w1", num_samples=8, selection="spread")
    overlapped_s = test_seconds(copy.deepcopy(trained), overlap, [overlays_overlapped])
    out["overlays_ms"] = 1000 * (with_overlays_s - plain_s) / n
    out["wandb_ms"] = 1000 * (with_wandb_s - plain_s) / n
    out["other_ms"] = 1000 * plain_s / n - 1000 / out["forward_img_per_s"] - out["decode_ms"] - out["resize_ms"]
    out["test_img_per_s"] = n / with_overlays_s  # the default callbacks: overlays, no W&B
    out["test_over_forward"] = out["test_img_per_s"] / out["forward_img_per_s"]
    out["test_workers1_img_per_s"] = n / overlapped_s
    out["test_workers1_over_forward"] = out["test_workers1_img_per_s"] / out["forward_img_per_s"]
    return out


def step_ms(model: UNet, images: torch.Tensor, bf16: bool) -> float:
    """Median milliseconds of one training step (forward, L2 loss, backward, Adam)."""
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = (model(images) - images).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return median_ms(step, repeats=3, warmup=1)


def switches(size: int = 256) -> dict[str, Any]:
    """U-Net forward and training step under each speed switch, as ratios to the FLOP bound.

    Args:
        size: Image side.

    Returns:
        Milliseconds and ratios per switch, the FLOP bounds and the matmul throughputs they come from.
    """
    gflops_fp32 = matmul_gflops()
    a = torch.randn(1024, 1024, dtype=torch.bfloat16)
    gflops_bf16 = 2 * 1024**3 / (median_ms(lambda: a @ a, repeats=20) / 1000) / 1e9
    image, batch = torch.rand(1, 3, size, size), torch.rand(TRAIN_BATCH, 3, size, size)
    macs = count_macs(UNet(widths=UNET["widths"]), image)
    bound_ms = 2 * macs / (gflops_fp32 * 1e9) * 1000
    train_bound_ms = 3 * bound_ms * TRAIN_BATCH  # backward costs about twice the forward
    variants = {"eager": (False, False), "channels_last": (True, False), "bf16": (False, True),
                "channels_last+bf16": (True, True)}  # fmt: skip
    inference, training = {}, {}
    for name, (channels_last, bf16) in variants.items():
        unet = UNet(widths=UNET["widths"]).set_speed(channels_last, bf16).eval()
        with torch.inference_mode():
            inference[name] = median_ms(lambda unet=unet: unet(image), repeats=5, warmup=2)
        training[name] = step_ms(UNet(widths=UNET["widths"]).set_speed(channels_last, bf16).train(), batch, bf16)
    eager = UNet(widths=UNET["widths"]).set_speed(True, False).eval()
    start = time.perf_counter()
    compiled = torch.compile(eager)
    with torch.inference_mode():
        compiled(image)
        compile_s = time.perf_counter() - start
        inference["channels_last+compile"] = median_ms(lambda: compiled(image), repeats=5, warmup=1)
        frozen = torch.jit.freeze(torch.jit.trace(eager, image))
        inference["channels_last+torchscript_freeze"] = median_ms(lambda: frozen(image), repeats=5, warmup=2)
    return {
        "size": size,
        "matmul_gflops_fp32": gflops_fp32,
        "matmul_gflops_bf16": gflops_bf16,
        "unet_gmacs": macs / 1e9,
        "flop_bound_ms": bound_ms,
        "train_flop_bound_ms": train_bound_ms,
        "compile_s": compile_s,
        "inference_ms": inference,
        "inference_over_bound": {name: value / bound_ms for name, value in inference.items()},
        "train_step_ms": training,
        "train_over_bound": {name: value / train_bound_ms for name, value in training.items()},
    }


def scaling() -> dict[str, dict[str, float]]:
    """Test latency per image (batch :data:`BATCH`) and training images per second at each size (default speed)."""
    out = {}
    for size in SIZES:
        module = stage1(size)
        images = torch.rand(BATCH, 3, size, size)
        with torch.inference_mode():
            module.infer(images)  # masks cached: the latency of a later test pass
            latency = median_ms(lambda module=module, images=images: module.infer(images), repeats=3, warmup=1)
        speed = EAR_SETTINGS["speed"]
        unet = UNet(widths=UNET["widths"]).set_speed(speed["channels_last"], speed["bf16"]).train()
        step = step_ms(unet, torch.rand(TRAIN_BATCH, 3, size, size), speed["bf16"])
        out[str(size)] = {"test_ms_per_image": latency / BATCH, "train_img_per_s": TRAIN_BATCH / (step / 1000)}
    return out


MEMORY_PROBE = """
import json, re, sys, lightning as L
from pathlib import Path
from fader_lightning.cli.bench_speed import datamodule, stage1
def status(key):
    return int(re.search(key + r':\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)) / 1024
root, category, size, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
dm = datamodule(root, category, size)
dm.setup('test')
dm.test_samples = (dm.test_samples * (count // len(dm.test_samples) + 1))[:count]
module = stage1(size)
Path('/proc/self/clear_refs').write_text('5')
before = status('VmRSS')
L.Trainer(accelerator='cpu', logger=False, enable_progress_bar=False, enable_model_summary=False).test(
    module, dm, verbose=False)
print(json.dumps({'rss_before_mb': before, 'peak_mb': status('VmHWM')}))
"""


def test_memory(root: Path, category: str, size: int = 128) -> dict[str, dict[str, float]]:
    """Peak memory of test passes over :data:`MEMORY_IMAGES` images (the test set repeated), each in its own process.

    Returns:
        Per image count: RSS before the pass, its peak, and the float16 maps the store keeps
        (``2 * count * size**2`` bytes).
    """
    out = {}
    for count in MEMORY_IMAGES:
        args = [sys.executable, "-c", MEMORY_PROBE, str(root), category, str(size), str(count)]
        proc = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1800)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        out[str(count)] = {**row, "maps_mb": 2 * count * size * size / 2**20}
    return out


def plot(report: dict[str, Any], path: Path) -> Path:
    """``scaling.png``: latency and training throughput against image size, peak memory against test images."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 3.6))
    axes = figure.subplots(1, 3)
    sizes = [int(size) for size in report["scaling"]]
    rows = list(report["scaling"].values())
    axes[0].plot(sizes, [row["test_ms_per_image"] for row in rows], "o-")
    axes[0].set(xscale="log", yscale="log", xlabel="image side (px)", ylabel="test ms / image", xticks=sizes,
                xticklabels=[str(size) for size in sizes], title="test latency (batch 8)")  # fmt: skip
    axes[1].plot(sizes, [row["train_img_per_s"] for row in rows], "o-", color="tab:orange")
    axes[1].set(xscale="log", yscale="log", xlabel="image side (px)", ylabel="images / s", xticks=sizes,
                xticklabels=[str(size) for size in sizes], title="training throughput (batch 4)")  # fmt: skip
    counts = [int(count) for count in report["memory"]]
    memory = list(report["memory"].values())
    axes[2].plot(counts, [row["peak_mb"] - row["rss_before_mb"] for row in memory], "o-", label="peak - before")
    axes[2].plot(counts, [row["maps_mb"] for row in memory], "s--", label="float16 maps")
    axes[2].set(xlabel="test images", ylabel="MB", title="test-pass memory (128 px)")
    axes[2].legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return atomic_write_bytes(path, buffer.getvalue())


def markdown_breakdown(breakdown: dict[str, dict[str, float]]) -> str:
    """The test-pass breakdown as a Markdown table, one column per image size."""
    lines: list[str] = []
    parts = ("decode", "resize", "masks", "unet", "scoring", "metrics", "overlays", "wandb", "other")
    sizes = list(breakdown)
    lines += ["| part | " + " | ".join(f"{size} px" for size in sizes) + " |", "| --- |" + " ---: |" * len(sizes)]
    for part in parts:
        lines.append(f"| {part} | " + " | ".join(f"{breakdown[s][f'{part}_ms']:.1f}" for s in sizes) + " |")
    totals = (("forward_img_per_s", "model forward alone, img/s"), ("test_img_per_s", "whole test pass, img/s"),
              ("test_over_forward", "test pass / forward (target >= 0.7)"),
              ("test_first_run_img_per_s", "first pass (decode check, calibration, cold kernels), img/s"),
              ("test_workers1_img_per_s", "test pass, decoding in 1 worker, img/s"),
              ("test_workers1_over_forward", "the same / forward"))  # fmt: skip
    for key, label in totals:
        lines.append(f"| {label} | " + " | ".join(f"{breakdown[s][key]:.2f}" for s in sizes) + " |")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = ["# Speed", "", f"Machine: {report['machine']}. Data: {report['data']}.", ""]
    lines += ["## Where a test pass spends its time (ms per image)", "", markdown_breakdown(report["breakdown"])]
    switch = report["switches"]
    lines += ["", f"## U-Net speed switches at {switch['size']} px (ratio to the float32 FLOP bound)", "",
              f"FLOP bound: {switch['unet_gmacs']:.1f} GMACs at {switch['matmul_gflops_fp32']:.0f} GFLOP/s = "
              f"{switch['flop_bound_ms']:.0f} ms (bf16 matmul: {switch['matmul_gflops_bf16']:.0f} GFLOP/s); "
              f"torch.compile took {switch['compile_s']:.0f} s.", "",
              "| switch | forward ms | forward / bound | train step ms | train / bound |",
              "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, value in switch["inference_ms"].items():
        train = switch["train_step_ms"].get(name)
        train_text = f"{train:.0f} | {switch['train_over_bound'][name]:.2f}" if train else "- | -"
        lines.append(f"| {name} | {value:.0f} | {switch['inference_over_bound'][name]:.2f} | {train_text} |")
    lines += ["", "## Scaling", "", "| px | test ms / image | train img / s |", "| ---: | ---: | ---: |"]
    for size, row in report["scaling"].items():
        lines.append(f"| {size} | {row['test_ms_per_image']:.1f} | {row['train_img_per_s']:.2f} |")
    lines += ["", "| test images | RSS before (MB) | peak (MB) | peak - before | float16 maps (MB) |",
              "| ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for count, row in report["memory"].items():
        lines.append(f"| {count} | {row['rss_before_mb']:.0f} | {row['peak_mb']:.0f} | "
                     f"{row['peak_mb'] - row['rss_before_mb']:.0f} | {row['maps_mb']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


SECTIONS: tuple[str, ...] = ("breakdown", "switches", "scaling", "memory")


def run(out_dir: Path, sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    """Measure the sections and write ``speed.json``, ``speed.md`` and ``scaling.png`` under ``out_dir``.

    Args:
        out_dir: Results folder.
        sections: What to measure; the other sections are kept from an earlier ``speed.json`` there.

    Returns:
        The report.
    """
    torch.manual_seed(0)
    earlier = out_dir / "speed.json"
    report = json.loads(earlier.read_text()) if earlier.is_file() and set(sections) != set(SECTIONS) else {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        root, category = bottle_or_synthetic(folder)
        report.update(
            machine=f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
            data=f"{category} ({root})",
            speed=EAR_SETTINGS["speed"],
        )
        measure = {
            "breakdown": lambda: {str(size): breakdown(root, category, size, folder) for size in BREAKDOWN_SIZES},
            "switches": switches,
            "scaling": scaling,
            "memory": lambda: test_memory(root, category),
        }
        for section in sections:
            report[section] = measure[section]()
    missing = [section for section in SECTIONS if section not in report]
    if missing:
        raise SystemExit(f"bench-speed: no earlier {earlier} holds {', '.join(missing)}; run every section once")
    atomic_write_json(out_dir / "speed.json", report)
    atomic_write_text(out_dir / "speed.md", markdown(report))
    plot(report, out_dir / "scaling.png")
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the speed benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    parser.add_argument(
        "--sections",
        type=lambda text: tuple(part.strip() for part in text.split(",") if part.strip()),
        default=SECTIONS,
        help=f"comma-separated subset of {','.join(SECTIONS)} to measure again (the rest is kept from speed.json)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections {','.join(unknown)} is unknown; use some of {','.join(SECTIONS)}")
    logging.basicConfig(level=logging.WARNING)
    report = run(args.out, args.sections)
    sys.stdout.write(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

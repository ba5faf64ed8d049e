"""``make bench-speed``: where a test pass spends its time, the U-Net's speed switches, and how cost grows.

Writes ``results/speed.json``, ``results/speed.md`` and ``results/scaling.png``, all measured in one run on this
machine, with random weights (cost does not depend on the values) and the default U-Net (widths 64-512):

1. **Test-pass breakdown** at 128 and 256 px, batch 8, saliency masks, on MVTec bottle (``$FADER_DATA_DIR/mvtec_ad``)
   or a generated stand-in of its size, after a warm-up pass: milliseconds per image of decoding, resizing, reading a
   resized image from the disk cache, mask generation, the U-Net forward, scoring, the metrics, the overlays (drawn
   in the pass, and the wait for the background writer at the end of a job), the W&B sample table (offline), and
   the rest of a pass (collation, Lightning). Then whole ``Trainer.test`` passes (files already checked, model
   calibrated, as after fitting; the first pass, which also checks and calibrates, is reported too) against the
   model forward alone (``infer`` of a fresh module on batches already in memory), both in images per second:
   overlays drawn in the pass and every file decoded (as before the background writer and the image cache); the
   default pass with an empty image cache, which its setup fills (an evaluation on images no job has read), and
   with a filled one (a training job's test pass, whose setup filled the cache before fitting, and later jobs);
   and decoding in one loader worker instead.
2. **Speed switches** of the U-Net forward (batch 1) and training step (batch 4) at 256 px: channels-last, bfloat16
   autocast, both, ``torch.compile`` and a frozen TorchScript graph (oneDNN fusion), each as a ratio to the FLOP
   bound, the time the U-Net's MACs take at the measured float32 matmul throughput. The forwards are timed in
   interleaved rounds, each against the throughput measured just before it.
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from bench_common import (
    EAR_SETTINGS,
    MVTEC_SETTINGS,
    UNET,
    bottle_or_synthetic,
    markdown_breakdown,
    matmul_gflops,
    median_ms,
)

from fader_lightning.callbacks import OverlayWriter
from fader_lightning.callbacks.wandb_samples import WandbSampleTable
from fader_lightning.configs import literal_settings
from fader_lightning.data import MVTecADDataModule
from fader_lightning.data.image_cache import ResizedImageCache
from fader_lightning.data.image_io import read_image
from fader_lightning.data.transforms import build_transform
from fader_lightning.models import EARModule
from fader_lightning.models.complexity import count_macs
from fader_lightning.models.unet import UNet
from fader_lightning.utils.background import background_writes
from fader_lightning.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from fader_lightning.utils.wandb_setup import RunFolderWandbLogger

log = logging.getLogger(__name__)

BATCH = 8
"""Test batch size (``data.eval_batch_size``'s default is 16; 8 keeps 512 px within memory)."""
TRAIN_BATCH = 4
ROUNDS = 5
"""Interleaved rounds of the speed-switch forwards, each against the matmul throughput measured just before it."""
SIZES = (64, 128, 256, 512)
BREAKDOWN_SIZES = (128, 256)
MEMORY_IMAGES = (20, 40, 80)
SALIENCY = literal_settings("masking/saliency")


def stage1(size: int, speed: dict[str, bool] | None = None) -> EARModule:
    """A stage-1 module with random weights, saliency masks (cached in memory) and ``conf/``'s settings."""
    settings = {**EAR_SETTINGS, "speed": speed or EAR_SETTINGS["speed"]}
    return EARModule(**settings, unet=dict(UNET), masking=dict(SALIENCY), image_size=size).eval()


def datamodule(
    root: Path, category: str, size: int, check_cache: Path | None = None, **settings: Any
) -> MVTecADDataModule:
    """The test data at ``size``, batch :data:`BATCH`; setup decodes every file unless ``check_cache`` knows it.

    ``settings`` replace ``conf/data/mvtec.yaml``'s (``image_cache``, ``num_workers``).
    """
    settings = {**MVTEC_SETTINGS, "image_size": size, "eval_batch_size": BATCH, "check_cache": check_cache, **settings}
    return MVTecADDataModule(root, category, **settings)


def test_seconds(module: EARModule, dm: MVTecADDataModule, callbacks: list[L.Callback], logger: Any = False) -> float:
    """Wall time of a whole ``Trainer.test`` pass (setup, loading, inference, metrics, callbacks).

    The seconds the pass spent in the model's ``infer`` are left in ``module.infer_seconds``.
    """
    module.infer_seconds = 0.0
    infer = module.infer

    def timed(images: torch.Tensor) -> dict[str, torch.Tensor]:
        start = time.perf_counter()
        out = infer(images)
        module.infer_seconds += time.perf_counter() - start
        return out

    module.infer = timed  # for this pass only: a copy of the module must not call this one's method
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=logger, callbacks=callbacks, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    start = time.perf_counter()
    try:
        trainer.test(module, dm, verbose=False)
    finally:
        del module.infer
    return time.perf_counter() - start


def background_pass(module: EARModule, dm: MVTecADDataModule, callbacks: list[L.Callback]) -> dict[str, float]:
    """A test pass whose overlays are drawn by the background writer, as in a job.

    Returns:
        The pass's ``seconds``, the seconds its forwards took (``infer_seconds``), and the seconds waited for the
        writer after it (``wait_seconds``).
    """
    with background_writes():
        seconds = test_seconds(module, dm, callbacks)
        start = time.perf_counter()
    return {"seconds": seconds, "infer_seconds": module.infer_seconds, "wait_seconds": time.perf_counter() - start}


def breakdown(root: Path, category: str, size: int, folder: Path) -> dict[str, float]:
    """Milliseconds per image of each part of a test pass, and the whole pass against the forward alone.

    Args:
        root: MVTec-layout root.
        category: Category under it.
        size: Image side.
        folder: Scratch folder (overlays, W&B run).

    Returns:
        ``{part}_ms`` per image; ``forward_img_per_s``; and, for each pass, ``test_{pass}_img_per_s``, its ratio to
        the forward alone (``test_{pass}_over_forward``) and the share of the pass its own forwards took
        (``test_{pass}_forward_share``: the same ratio within one pass, so a slow spell of a shared machine moves
        both sides). The passes:

        - ``before``: overlays drawn in the pass, every file decoded;
        - ``cold_cache``: overlays drawn by the background writer; setup fills the empty image cache, training
          images included, as for an evaluation on images no job has read;
        - ``cached``: the same with the cache filled: the test pass of a training job, whose setup filled it before
          fitting, and of every later job;
        - ``workers1``: decoding in one loader worker instead of the cache.
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
    model = module.ear
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

    def overlays(name: str) -> list[L.Callback]:
        return [OverlayWriter(folder / f"overlays{size}_{name}", num_samples=8, selection="spread")]

    def data(**settings: Any) -> MVTecADDataModule:
        return datamodule(root, category, size, checked, **settings)

    plain_s = test_seconds(copy.deepcopy(trained), data(), [])
    before = copy.deepcopy(trained)
    before_s = test_seconds(before, data(), overlays("sync"))  # drawn in the pass, as before
    wandb_logger = RunFolderWandbLogger(save_dir=str(folder / f"wandb{size}"), offline=True, project="bench")
    table = WandbSampleTable(num_samples=16, selection="spread")
    with_wandb_s = test_seconds(copy.deepcopy(trained), data(), [table], wandb_logger)
    wandb_logger.experiment.finish()
    cache = folder / f"images{size}"
    passes = {"before": {"seconds": before_s, "infer_seconds": before.infer_seconds}}
    # a job's default pass: overlays drawn by the background writer, resized images cached on disk
    passes["cold_cache"] = background_pass(copy.deepcopy(trained), data(image_cache=cache), overlays("cold"))
    cached = ResizedImageCache(cache, dm.image_size, dm.interpolation)
    start = time.perf_counter()
    missing = sum(cached.load(sample) is None for sample in dm.test_samples)
    out["cache_read_ms"] = 1000 * (time.perf_counter() - start) / n
    if missing:
        raise RuntimeError(f"bench-speed: {missing} of {n} test images are missing from the image cache {cache}")
    passes["cached"] = background_pass(copy.deepcopy(trained), data(image_cache=cache), overlays("warm"))
    passes["workers1"] = background_pass(copy.deepcopy(trained), data(num_workers=1), overlays("workers"))
    out["overlays_ms"] = 1000 * (before_s - plain_s) / n
    out["wandb_ms"] = 1000 * (with_wandb_s - plain_s) / n
    out["other_ms"] = 1000 * plain_s / n - 1000 / out["forward_img_per_s"] - out["decode_ms"] - out["resize_ms"]
    out["overlays_wait_ms"] = 1000 * max(passes["cold_cache"]["wait_seconds"], passes["cached"]["wait_seconds"]) / n
    for key, measured in passes.items():
        out[f"test_{key}_img_per_s"] = n / measured["seconds"]
        out[f"test_{key}_over_forward"] = out[f"test_{key}_img_per_s"] / out["forward_img_per_s"]
        out[f"test_{key}_forward_share"] = measured["infer_seconds"] / measured["seconds"]
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

    The forward of every switch is timed in :data:`ROUNDS` interleaved rounds, each right after a measurement of the
    matmul throughput it is compared with, so that a slow spell of a shared machine moves both sides of a ratio.

    Args:
        size: Image side.

    Returns:
        Milliseconds and ratios per switch (medians over the rounds, and each round's ratio), the FLOP bounds and the
        matmul throughputs they come from.
    """
    a = torch.randn(1024, 1024, dtype=torch.bfloat16)
    gflops_bf16 = 2 * 1024**3 / (median_ms(lambda: a @ a, repeats=20) / 1000) / 1e9
    image, batch = torch.rand(1, 3, size, size), torch.rand(TRAIN_BATCH, 3, size, size)
    macs = count_macs(UNet(widths=UNET["widths"]), image)
    variants = {"eager": (False, False), "channels_last": (True, False), "bf16": (False, True),
                "channels_last+bf16": (True, True)}  # fmt: skip
    forwards = {name: UNet(widths=UNET["widths"]).set_speed(*switch).eval() for name, switch in variants.items()}
    default = forwards["channels_last"]
    start = time.perf_counter()
    compiled = torch.compile(default)
    with torch.inference_mode():
        compiled(image)
        compile_s = time.perf_counter() - start
        forwards["channels_last+compile"] = compiled
        forwards["channels_last+torchscript_freeze"] = torch.jit.freeze(torch.jit.trace(default, image))
        rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in forwards}  # (ms, GFLOP/s)
        for _ in range(ROUNDS):
            for name, forward in forwards.items():
                gflops = matmul_gflops()
                rounds[name].append((median_ms(lambda forward=forward: forward(image), repeats=3, warmup=1), gflops))
    throughputs = [gflops for measured in rounds.values() for _, gflops in measured]
    gflops_fp32 = statistics.median(throughputs)
    bound_ms = 2 * macs / (gflops_fp32 * 1e9) * 1000
    train_bound_ms = 3 * bound_ms * TRAIN_BATCH  # backward costs about twice the forward
    training = {name: step_ms(UNet(widths=UNET["widths"]).set_speed(*switch).train(), batch, switch[1])
                for name, switch in variants.items()}  # fmt: skip
    ratios = {name: [ms / (2 * macs / (gflops * 1e9) * 1000) for ms, gflops in measured]
              for name, measured in rounds.items()}  # fmt: skip
    return {
        "size": size,
        "rounds": ROUNDS,
        "matmul_gflops_fp32": gflops_fp32,
        "matmul_gflops_fp32_range": [min(throughputs), max(throughputs)],
        "matmul_gflops_bf16": gflops_bf16,
        "unet_gmacs": macs / 1e9,
        "flop_bound_ms": bound_ms,
        "train_flop_bound_ms": train_bound_ms,
        "compile_s": compile_s,
        "inference_ms": {name: statistics.median(ms for ms, _ in measured) for name, measured in rounds.items()},
        "inference_over_bound": {name: statistics.median(values) for name, values in ratios.items()},
        "inference_over_bound_rounds": ratios,
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
sys.path.insert(0, sys.argv[5])
from bench_speed import datamodule, stage1
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
        here = str(Path(__file__).resolve().parent)
        args = [sys.executable, "-c", MEMORY_PROBE, str(root), category, str(size), str(count), here]
        proc = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1800)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        out[str(count)] = {**row, "maps_mb": 2 * count * size * size / 2**20}
    return out


def by_number(rows: dict[str, Any]) -> list[tuple[int, Any]]:
    """Rows keyed by a number as text (an image side, a count), in numeric order: JSON keeps them as sorted text."""
    return sorted((int(key), row) for key, row in rows.items())


def plot(report: dict[str, Any], path: Path) -> Path:
    """``scaling.png``: latency and training throughput against image size, peak memory against test images."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 3.6))
    axes = figure.subplots(1, 3)
    sizes, rows = zip(*by_number(report["scaling"]), strict=True)
    axes[0].plot(sizes, [row["test_ms_per_image"] for row in rows], "o-")
    axes[0].set(xscale="log", yscale="log", xlabel="image side (px)", ylabel="test ms / image", xticks=sizes,
                xticklabels=[str(size) for size in sizes], title="test latency (batch 8)")  # fmt: skip
    axes[1].plot(sizes, [row["train_img_per_s"] for row in rows], "o-", color="tab:orange")
    axes[1].set(xscale="log", yscale="log", xlabel="image side (px)", ylabel="images / s", xticks=sizes,
                xticklabels=[str(size) for size in sizes], title="training throughput (batch 4)")  # fmt: skip
    counts, memory = zip(*by_number(report["memory"]), strict=True)
    axes[2].plot(counts, [row["peak_mb"] - row["rss_before_mb"] for row in memory], "o-", label="peak - before")
    axes[2].plot(counts, [row["maps_mb"] for row in memory], "s--", label="float16 maps")
    axes[2].set(xlabel="test images", ylabel="MB", title="test-pass memory (128 px)")
    axes[2].legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return atomic_write_bytes(path, buffer.getvalue())


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = ["# Speed", "", f"Machine: {report['machine']}. Data: {report['data']}.", ""]
    lines += ["## Where a test pass spends its time", "", markdown_breakdown(report["breakdown"])]
    switch = report["switches"]
    low, high = switch["matmul_gflops_fp32_range"]
    lines += ["", f"## U-Net speed switches at {switch['size']} px (ratio to the float32 FLOP bound)", "",
              f"FLOP bound: {switch['unet_gmacs']:.1f} GMACs at {switch['matmul_gflops_fp32']:.0f} GFLOP/s "
              f"(measured {low:.0f}-{high:.0f} over the rounds) = {switch['flop_bound_ms']:.0f} ms (bf16 matmul: "
              f"{switch['matmul_gflops_bf16']:.0f} GFLOP/s); torch.compile took {switch['compile_s']:.0f} s. "
              f"The forward ratio is the median of {switch['rounds']} rounds, each against the throughput measured "
              "just before it.", "",
              "| switch | forward ms | forward / bound | each round | train step ms | train / bound |",
              "| --- | ---: | ---: | --- | ---: | ---: |"]  # fmt: skip
    for name, value in switch["inference_ms"].items():
        train = switch["train_step_ms"].get(name)
        train_text = f"{train:.0f} | {switch['train_over_bound'][name]:.2f}" if train else "- | -"
        each = ", ".join(f"{ratio:.2f}" for ratio in switch["inference_over_bound_rounds"][name])
        lines.append(f"| {name} | {value:.0f} | {switch['inference_over_bound'][name]:.2f} | {each} | {train_text} |")
    lines += ["", "## Scaling", "", "| px | test ms / image | train img / s |", "| ---: | ---: | ---: |"]
    for size, row in by_number(report["scaling"]):
        lines.append(f"| {size} | {row['test_ms_per_image']:.1f} | {row['train_img_per_s']:.2f} |")
    lines += ["", "| test images | RSS before (MB) | peak (MB) | peak - before | float16 maps (MB) |",
              "| ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for count, row in by_number(report["memory"]):
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

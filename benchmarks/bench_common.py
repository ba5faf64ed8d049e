"""What the benchmarks share: ``conf/``'s settings of the modules they build, timing, and the data they measure on."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.utils.benchmark as benchmark
from omegaconf import OmegaConf

from fader_lightning.configs import CONFIG_DIR, literal_settings
from fader_lightning.data.synthetic import make_mvtec_tree
from fader_lightning.models.loading import STAGE1_SOURCE_KEYS

UNET = {"widths": [64, 128, 256, 512]}
EAR_CONFIG = OmegaConf.load(Path(CONFIG_DIR) / "model" / "ear.yaml")
EAR_SETTINGS = {
    "fpr_limit": EAR_CONFIG.fpr_limit,
    "map_storage": EAR_CONFIG.map_storage,
    "speed": literal_settings("model/ear")["speed"],
    "interpolation": literal_settings("data/mvtec")["interpolation"],
}
"""What ``conf/`` gives a stage-1 module besides its network and masking."""
FADER_SETTINGS = {
    **literal_settings("fader/default", exclude=("trainer", *STAGE1_SOURCE_KEYS)),
    "seed": 0,
}
"""``conf/fader/default.yaml``'s stage-2 settings."""
MVTEC_SETTINGS = {**literal_settings("data/mvtec", exclude=("root", "category")), "seed": 0}
"""``conf/data/mvtec.yaml``'s settings."""
FADER_LR = OmegaConf.load(Path(CONFIG_DIR) / "fader" / "default.yaml").optimizer.lr


def median_ms(fn: Callable[[], object], repeats: int = 10, warmup: int = 3) -> float:
    """Median wall time of a call in milliseconds, timed with ``torch.utils.benchmark``.

    The timer runs the call with torch's current thread count and synchronises CUDA around it, so GPU work is
    timed to its end.

    Args:
        fn: The call.
        repeats: Timed repeats.
        warmup: Untimed calls first.

    Returns:
        The median in ms.
    """
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    if warmup:
        timer.timeit(warmup)
    return 1000 * statistics.median(timer.timeit(1).median for _ in range(repeats))


def matmul_gflops(n: int = 1024) -> float:
    """Measured fp32 matmul throughput of this CPU (all threads torch uses).

    Args:
        n: Matrix side.

    Returns:
        GFLOP/s.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / (median_ms(lambda: a @ b, repeats=20) / 1000) / 1e9


def bottle_or_synthetic(folder: Path) -> tuple[Path, str]:
    """MVTec bottle from ``$FADER_DATA_DIR/mvtec_ad`` when present, else a generated stand-in of its size."""
    mvtec = Path(os.environ.get("FADER_DATA_DIR", "data")) / "mvtec_ad"
    if (mvtec / "bottle").is_dir():
        return mvtec, "bottle"
    root = make_mvtec_tree(folder / "synthetic", ["bottle_like"], n_train=60, n_test_good=20, n_test_defect=32,
                           size=900)  # fmt: skip
    return root, "bottle_like"


def markdown_breakdown(breakdown: dict[str, dict[str, float]]) -> str:
    """The test-pass breakdown as a Markdown table, one column per image size."""
    lines: list[str] = []
    parts = ("decode", "resize", "cache_read", "masks", "unet", "scoring", "metrics", "overlays", "overlays_wait",
             "wandb", "other")  # fmt: skip
    sizes = list(breakdown)
    lines += ["| part (ms per image) | " + " | ".join(f"{size} px" for size in sizes) + " |",
              "| --- |" + " ---: |" * len(sizes)]  # fmt: skip
    for part in parts:
        lines.append(f"| {part} | " + " | ".join(f"{breakdown[s][f'{part}_ms']:.1f}" for s in sizes) + " |")
    totals = [
        ("forward_img_per_s", "model forward alone, img/s"),
        ("test_first_run_img_per_s", "first pass (decode check, calibration, cold kernels), img/s"),
    ]
    passes = (("before", "overlays drawn in the pass, every file decoded"),
              ("cold_cache", "overlays in the background, setup fills the empty image cache (a first evaluation)"),
              ("cached", "overlays in the background, images read from the cache (a training job, later jobs)"),
              ("workers1", "overlays in the background, decoding in 1 loader worker"))  # fmt: skip
    for key, label in passes:
        totals += [(f"test_{key}_img_per_s", f"test pass, {label}, img/s"),
                   (f"test_{key}_over_forward", "/ forward alone"),
                   (f"test_{key}_forward_share", "share of the pass in its own forwards")]  # fmt: skip
    for key, label in totals:
        lines.append(f"| {label} | " + " | ".join(f"{breakdown[s][key]:.2f}" for s in sizes) + " |")
    return "\n".join(lines)

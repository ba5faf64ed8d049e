"""``fader-aggregate``: collect sweeps into tables, a chart and provenance (see :mod:`fader_lightning.aggregate`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fader_lightning.aggregate.report import aggregate
from fader_lightning.errors import FaderError


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``fader-aggregate``."""
    parser = argparse.ArgumentParser(
        prog="fader-aggregate", description="Collect training sweeps into tables, a chart and provenance."
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep or run folders")
    parser.add_argument("--name", required=True, help="output folder name under --out")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results root (default: results)")
    parser.add_argument("--aupro", action="store_true", help="also show AUPRO")
    parser.add_argument(
        "--diagnostics", action="store_true", help="also show FADeR's test-pass diagnostics (docs/METHOD.md)"
    )
    parser.add_argument(
        "--operating-point",
        action="store_true",
        help="also show the error rates at the thresholds calibrated on normal images (FPR, TPR, F1, PRO)",
    )
    parser.add_argument(
        "--latex-metrics",
        type=lambda text: [metric.strip() for metric in text.split(",") if metric.strip()],
        default=None,
        metavar="M1,M2",
        help="metrics of table.tex, e.g. image_auroc,aupro (default: all the table shows)",
    )
    parser.add_argument("--wandb", action="store_true", help="log the table and files to W&B (offline without a key)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fader-aggregate``; print the files written and the Markdown table.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when the files were written (failed cells are marked, not fatal), 2 when nothing was found.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = aggregate(
            args.sweep_dirs, args.name, args.out, args.aupro, use_wandb=args.wandb,
            include_diagnostics=args.diagnostics, latex_metrics=args.latex_metrics,
            include_operating_point=args.operating_point,
        )  # fmt: skip
    except FaderError as err:
        sys.stderr.write(f"fader-aggregate: {type(err).__name__}: {err}\n")
        return 2
    sys.stdout.write("".join(f"{key}: {path}\n" for key, path in paths.items()))
    sys.stdout.write("\n" + paths["markdown"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

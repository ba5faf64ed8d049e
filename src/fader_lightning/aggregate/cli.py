"""``fader-aggregate`` entry point: collect the sweeps, write every output and optionally log to W&B."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fader_lightning.aggregate.reading import collect, wandb_group
from fader_lightning.aggregate.table import build_table
from fader_lightning.aggregate.wandb_log import active_wandb_run, log_to_wandb
from fader_lightning.aggregate.writers import provenance, write_csv, write_latex, write_markdown
from fader_lightning.errors import ConfigError, FaderError
from fader_lightning.utils.io import atomic_write_json

log = logging.getLogger(__name__)


def aggregate(
    sweep_dirs: Sequence[Path],
    name: str,
    out_root: Path = Path("results"),
    include_aupro: bool = False,
    use_wandb: bool = False,
    include_diagnostics: bool = False,
    latex_metrics: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Collect the sweeps; write the tables (md, csv, tex), the chart (png, pdf, svg) and ``provenance.json``.

    Args:
        sweep_dirs: Sweep or run folders.
        name: Output folder name under ``out_root``.
        out_root: Results root.
        include_aupro: Show AUPRO next to image and pixel AUROC.
        use_wandb: Log to W&B (also done when a W&B run is already active).
        include_diagnostics: Tabulate the FADeR test-pass diagnostics next to the AUROCs.
        latex_metrics: The metrics ``table.tex`` shows (``None``: all of the table's).

    Returns:
        ``{"markdown", "csv", "latex", "chart", "chart_pdf", "chart_svg", "provenance"}`` → path written.

    Raises:
        ConfigError: When ``name`` is not a plain folder name.
        DataError: When no job is found (see :func:`collect`).
    """
    if not name or Path(name).name != name or name in {".", ".."}:
        raise ConfigError(f"--name {name!r} must be a plain folder name (results go to <out>/<name>/)")
    table = build_table(collect(sweep_dirs), include_aupro=include_aupro, include_diagnostics=include_diagnostics)
    out_dir = Path(out_root) / name
    from fader_lightning.aggregate.chart import write_chart  # matplotlib loads only when a chart is drawn

    charts = write_chart(table, out_dir / "chart.png")
    paths = {
        "markdown": write_markdown(table, out_dir / "table.md"),
        "csv": write_csv(table, out_dir / "table.csv"),
        "latex": write_latex(table, out_dir / "table.tex", name, latex_metrics),
        "chart": charts["png"],
        "chart_pdf": charts["pdf"],
        "chart_svg": charts["svg"],
        "provenance": atomic_write_json(out_dir / "provenance.json", provenance(table)),
    }
    log.info("results of %d categories written to %s", len(table.categories), out_dir)
    if use_wandb or active_wandb_run():
        log_to_wandb(table, paths, name, group=wandb_group(sweep_dirs), run_dir=out_dir)
    return paths


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
        )  # fmt: skip
    except FaderError as err:
        sys.stderr.write(f"fader-aggregate: {type(err).__name__}: {err}\n")
        return 2
    sys.stdout.write("".join(f"{key}: {path}\n" for key, path in paths.items()))
    sys.stdout.write("\n" + paths["markdown"].read_text())
    return 0

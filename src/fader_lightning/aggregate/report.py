"""Write a report of sweeps: the tables (md, csv, tex), the chart (png, pdf, svg) and ``provenance.json``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from fader_lightning.aggregate.reading import collect, wandb_group
from fader_lightning.aggregate.table import build_table
from fader_lightning.aggregate.wandb_log import active_wandb_run, log_to_wandb
from fader_lightning.aggregate.writers import provenance, write_csv, write_latex, write_markdown
from fader_lightning.errors import ConfigError
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
    include_operating_point: bool = False,
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
        include_operating_point: Tabulate the false- and true-positive rates, F1 and PRO at the thresholds calibrated
            on normal images, a column group of their own.

    Returns:
        ``{"markdown", "csv", "latex", "chart", "chart_pdf", "chart_svg", "provenance"}`` → path written.

    Raises:
        ConfigError: When ``name`` is not a plain folder name.
        DataError: When no job is found (see :func:`collect`).
    """
    if not name or Path(name).name != name or name in {".", ".."}:
        raise ConfigError(f"--name {name!r} must be a plain folder name (results go to <out>/<name>/)")
    table = build_table(collect(sweep_dirs), include_aupro=include_aupro, include_diagnostics=include_diagnostics,
                        include_operating_point=include_operating_point)  # fmt: skip
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

"""``chart.png`` (and ``chart.pdf``, ``chart.svg`` for papers): grouped bar chart of image AUROC per category.

One group per category, one bar per masking method × stage (EAR light, EAR+FADeR dark, one colour per method);
with variants, each (masking method, variant) pair gets its own pair of bars and colour. Drawn with matplotlib.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from matplotlib.figure import Figure

from fader_lightning.aggregate.table import (
    FAILED,
    NO_VARIANT,
    NOT_APPLICABLE,
    STAGE_LABELS,
    UNKNOWN,
    Stat,
    Table,
    group_label,
)
from fader_lightning.keys import EAR, FADER, IMAGE_AUROC
from fader_lightning.utils.io import atomic_write_bytes

CHART_METRIC, CHART_LABEL = IMAGE_AUROC, "image AUROC"
CHART_TITLE = f"{CHART_LABEL} per category: EAR vs EAR+FADeR for each masking method"
CHART_NOTES = "F failed, M missing, N not applicable; line: ±std over seeds"
PALETTE = ("#1f77b4", "#d66000", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
FORMATS: tuple[str, ...] = ("png", "pdf", "svg")
"""The files :func:`write_chart` writes: PNG for reports and W&B, PDF and SVG for papers."""
DATELESS = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}
"""Metadata that keeps a creation date out of the vector files, so the same table writes the same bytes."""


class Series(NamedTuple):
    """One bar per category: a stage of a masking method (and of a variant, when the table has variants)."""

    masking: str
    stage: str
    colour: str
    alpha: float
    variant: str = NO_VARIANT

    @property
    def label(self) -> str:
        """Legend text, e.g. ``saliency EAR+FADeR`` or ``saliency [fader.patch_size=4] EAR+FADeR``."""
        return f"{group_label(self.masking, self.variant)} {STAGE_LABELS[self.stage]}"


def _series(table: Table) -> list[Series]:
    series = []
    for i, (masking, variant) in enumerate(table.groups):
        colour = PALETTE[i % len(PALETTE)]
        series += [Series(masking, EAR, colour, 0.45, variant), Series(masking, FADER, colour, 1.0, variant)]
    return series


def _axis_low(stats: Iterable[Stat]) -> float:
    lowest = min((100 * stat.mean for stat in stats if stat.mean is not None), default=50.0)
    return float(max(0, min(50, 10 * math.floor(lowest / 10) - 10)))


def render_chart(table: Table) -> Figure:
    """Grouped bar chart of image AUROC: one group per category, one bar per masking method × stage.

    Args:
        table: The table.

    Returns:
        The matplotlib figure.
    """
    series = _series(table)
    categories = table.categories or (UNKNOWN,)
    stats = {
        (c, s): table.cell(c, s.masking, s.stage, s.variant).stat(CHART_METRIC) for c in categories for s in series
    }
    low = _axis_low(stats.values())
    width = 1.0 / (len(series) + 1)
    # a figure of its own (no pyplot state, no window): any number of charts in one process
    figure = Figure(figsize=(max(4.0, 0.28 * len(series) * len(categories) + 1.0) + 3.2, 4.4))
    axes = figure.subplots()
    for j, item in enumerate(series):
        for i, category in enumerate(categories):
            stat, x = stats[category, item], i + (j - (len(series) - 1) / 2) * width
            if stat.mean is None:
                mark = {FAILED: "F", NOT_APPLICABLE: "N"}.get(stat.status, "M")
                axes.text(x, low + 1, mark, ha="center", va="bottom", color="0.45", fontsize=8)
                continue
            error = 100 * stat.std if stat.std is not None else None
            axes.bar(x, 100 * stat.mean - low, width * 0.9, bottom=low, color=item.colour, alpha=item.alpha,
                     yerr=error, error_kw={"elinewidth": 0.8, "capsize": 0},
                     label=item.label if i == 0 else None)  # fmt: skip
    axes.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 6 else 0)
    axes.set_ylim(low, 100)
    axes.set_ylabel(f"{CHART_LABEL} (%)")
    axes.set_xlabel("category")
    figure.suptitle(CHART_TITLE, fontsize=10)
    axes.grid(axis="y", color="0.9")
    axes.set_axisbelow(True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title=CHART_NOTES,
                title_fontsize=7)  # fmt: skip
    figure.tight_layout()
    return figure


def write_chart(table: Table, path: Path) -> dict[str, Path]:
    """Write :func:`render_chart` as PNG, PDF and SVG next to each other, each atomically.

    Args:
        table: The table.
        path: The PNG file; the PDF and SVG take its name with their suffix.

    Returns:
        ``{"png": ..., "pdf": ..., "svg": ...}``.
    """
    figure = render_chart(table)
    written = {}
    for fmt in FORMATS:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt, dpi=150, bbox_inches="tight", metadata=DATELESS.get(fmt))
        written[fmt] = atomic_write_bytes(path.with_suffix(f".{fmt}"), buffer.getvalue())
    return written

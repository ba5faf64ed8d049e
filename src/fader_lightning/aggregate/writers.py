"""Writing the table: Markdown, LaTeX, tidy CSV records and the per-cell provenance record."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from itertools import product
from pathlib import Path
from typing import Any, NamedTuple

from fader_lightning.aggregate.table import FAILED, METRIC_LABELS, NOT_APPLICABLE, OK, STAGE_LABELS, Stat, Table
from fader_lightning.utils.io import atomic_write_text

STD_NOTE = "sample standard deviation over seeds (ddof=1); empty when n < 2"
LEGEND = (
    "Values in %: mean±std over seeds (sample std, ddof=1) when n>1. — no result, failed: every run failed, "
    "n/a: not applicable (FADeR on a multi-pass mask), "
    "* incomplete (some runs or categories missing or failed; see table.csv and provenance.json). "
    "mean: mean over categories of the per-category means."
)
CSV_FIELDS = (
    "category",
    "masking",
    "stage",
    "metric",
    "mean",
    "std",
    "n",
    "status",
    "run_dirs",
    "seeds",
    "git_commits",
)


class Style(NamedTuple):
    """Symbols of an output format."""

    pm: str
    missing: str
    failed: str = "failed"
    incomplete: str = "*"


MARKDOWN = Style("±", "—")
LATEX = Style(r"$\pm$", "---")
TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def format_stat(stat: Stat, style: Style = MARKDOWN) -> str:
    """Percent with one decimal, ``±std`` when n>1, ``*`` when incomplete, or the failed / missing mark."""
    if stat.mean is None:
        if stat.status == NOT_APPLICABLE:
            return "n/a"
        return style.failed if stat.status == FAILED else style.missing
    text = f"{100 * stat.mean:.1f}"
    if stat.std is not None:
        text += f"{style.pm}{100 * stat.std:.1f}"
    return text if stat.status == OK else text + style.incomplete


def display_rows(table: Table, style: Style = MARKDOWN) -> list[list[str]]:
    """Formatted table body: one row per category, then the ``mean`` row."""
    rows = [
        [category, *(format_stat(table.stat(category, column), style) for column in table.columns)]
        for category in table.categories
    ]
    return [*rows, ["mean", *(format_stat(table.mean(column), style) for column in table.columns)]]


def _markdown_line(texts: Sequence[str], widths: Sequence[int]) -> str:
    padded = [
        texts[0].ljust(widths[0]),
        *(text.rjust(width) for text, width in zip(texts[1:], widths[1:], strict=True)),
    ]
    return "| " + " | ".join(padded) + " |"


def to_markdown(table: Table) -> str:
    """The table as aligned GitHub Markdown, followed by its legend."""
    grid = [["category", *(column.label for column in table.columns)], *display_rows(table)]
    widths = [max(3, *(len(line[i]) for line in grid)) for i in range(len(grid[0]))]
    rule = ["-" * widths[0], *("-" * (width - 1) + ":" for width in widths[1:])]
    lines = [_markdown_line(line, widths) for line in [grid[0], rule, *grid[1:]]]
    return "\n".join(lines) + f"\n\n{LEGEND}\n"


def _tex(text: str) -> str:
    return "".join(TEX_ESCAPES.get(char, char) for char in text)


def _cmidrules(width: int, count: int) -> str:
    return "".join(rf"\cmidrule(lr){{{2 + i * width}-{1 + (i + 1) * width}}}" for i in range(count))


def to_latex(table: Table) -> str:
    r"""The table as a booktabs ``tabular`` with masking and stage header rows (needs ``\usepackage{booktabs}``)."""
    n_metrics, n_stages = len(table.metrics), len(STAGE_LABELS)
    group = n_metrics * n_stages
    maskings = [rf"\multicolumn{{{group}}}{{c}}{{{_tex(masking)}}}" for masking in table.maskings]
    stages = [
        rf"\multicolumn{{{n_metrics}}}{{c}}{{{label}}}" for _ in table.maskings for label in STAGE_LABELS.values()
    ]
    metrics = [_tex(METRIC_LABELS.get(column.metric, column.metric)) for column in table.columns]
    *body, mean = display_rows(table, LATEX)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{Results in \% (mean$\pm$std over seeds; --- no result; * incomplete).}",
        rf"\begin{{tabular}}{{l{'c' * len(table.columns)}}}",
        r"\toprule",
        " & ".join(["", *maskings]) + r" \\",
        _cmidrules(group, len(table.maskings)),
        " & ".join(["", *stages]) + r" \\",
        _cmidrules(n_metrics, n_stages * len(table.maskings)),
        " & ".join(["Category", *metrics]) + r" \\",
        r"\midrule",
        *(" & ".join([_tex(row[0]), *row[1:]]) + r" \\" for row in body),
        r"\midrule",
        " & ".join(["Mean", *mean[1:]]) + r" \\",
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _join(values: Iterable[Any]) -> str:
    return ";".join("" if value is None else str(value) for value in values)


def records(table: Table) -> list[dict[str, Any]]:
    """Tidy records: one per category × masking × stage × metric, with mean/std as fractions and provenance."""
    out = []
    for category, column in product(table.categories, table.columns):
        rows = table.cell(category, column.masking, column.stage).rows
        stat = table.stat(category, column)
        out.append(
            {
                **column._asdict(),
                "category": category,
                **stat._asdict(),
                "run_dirs": _join(row.run_dir for row in rows),
                "seeds": _join(row.seed for row in rows),
                "git_commits": _join(row.git_commit for row in rows),
            }
        )
    return out


def provenance(table: Table) -> dict[str, Any]:
    """For every cell, the runs it came from: folder, seed, status, commit, overrides, metrics and error."""
    cells = [
        {
            "category": cell.category,
            "masking": cell.masking,
            "stage": cell.stage,
            "status": cell.status,
            "runs": [
                {
                    "run_dir": row.run_dir,
                    "seed": row.seed,
                    "status": row.status,
                    "git_commit": row.git_commit,
                    "overrides": list(row.overrides),
                    "metrics": dict(row.metrics),
                    "error": row.error,
                }
                for row in cell.rows
            ],
        }
        for _, cell in sorted(table.cells.items())
    ]
    return {"std": STD_NOTE, "cells": cells}


def write_markdown(table: Table, path: Path) -> Path:
    """Write :func:`to_markdown` atomically."""
    return atomic_write_text(path, to_markdown(table))


def write_latex(table: Table, path: Path) -> Path:
    """Write :func:`to_latex` atomically."""
    return atomic_write_text(path, to_latex(table))


def write_csv(table: Table, path: Path) -> Path:
    """Write :func:`records` as CSV atomically (``std`` empty when n < 2, lists joined by ``;``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records(table))
    return atomic_write_text(path, buffer.getvalue())

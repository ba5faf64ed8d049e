"""Writing the table: Markdown, LaTeX, tidy CSV records and the per-cell provenance record.

When the table has variants (see :mod:`fader_lightning.aggregate.table`), the CSV gets a ``variant`` column after
``masking``, each provenance cell a ``variant`` key, and the LaTeX header a variant row under the masking row; without
variants every file is written exactly as before the variant axis existed.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from itertools import product
from pathlib import Path
from typing import Any, NamedTuple

from fader_lightning.aggregate.table import (
    FAILED,
    METRIC_LABELS,
    NOT_APPLICABLE,
    OK,
    STAGE_LABELS,
    Column,
    Stat,
    Table,
    variant_sort_key,
)
from fader_lightning.errors import ConfigError
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
VARIANT_FIELD = "variant"


def csv_fields(table: Table) -> tuple[str, ...]:
    """The CSV columns: :data:`CSV_FIELDS`, with ``variant`` after ``masking`` when the table has variants."""
    if not table.has_variants:
        return CSV_FIELDS
    at = CSV_FIELDS.index("masking") + 1
    return (*CSV_FIELDS[:at], VARIANT_FIELD, *CSV_FIELDS[at:])


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


def _spans(labels: Sequence[tuple[str, ...]]) -> list[tuple[tuple[str, ...], int]]:
    """Runs of equal consecutive labels as (label, length)."""
    spans: list[tuple[tuple[str, ...], int]] = []
    for label in labels:
        if spans and spans[-1][0] == label:
            spans[-1] = (label, spans[-1][1] + 1)
        else:
            spans.append((label, 1))
    return spans


def _header_rows(columns: Sequence[Column], label: Callable[[Column], tuple[str, ...]]) -> list[str]:
    r"""A header row and its cmidrules: a ``\multicolumn`` per run of columns of equal ``label`` (shows its end)."""
    spans = _spans([label(column) for column in columns])
    cells = [rf"\multicolumn{{{width}}}{{c}}{{{_tex(text[-1])}}}" for text, width in spans]
    starts = [2 + sum(width for _, width in spans[:i]) for i in range(len(spans))]
    rules = "".join(
        rf"\cmidrule(lr){{{start}-{start + width - 1}}}" for start, (_, width) in zip(starts, spans, strict=True)
    )
    return [" & ".join(["", *cells]) + r" \\", rules]


def _bold_best(stats: Sequence[Stat], columns: Sequence[Column], texts: Sequence[str]) -> list[str]:
    r"""``\textbf`` around the best value of each metric in a row (every metric is higher-is-better; ties all bold)."""
    best: dict[str, float] = {}
    for stat, column in zip(stats, columns, strict=True):
        if stat.mean is not None:
            best[column.metric] = max(best.get(column.metric, -math.inf), stat.mean)
    return [
        rf"\textbf{{{text}}}" if stat.mean is not None and stat.mean == best[column.metric] else text
        for stat, column, text in zip(stats, columns, texts, strict=True)
    ]


def to_latex(table: Table, label: str = "results", metrics: Sequence[str] | None = None) -> str:
    r"""The table as a booktabs ``tabular`` with masking, variant (if any) and stage header rows.

    The best value of each metric in a row is bold, the table is shrunk to the text width when it is wider
    (``adjustbox``), and ``\label{tab:<label>}`` lets a paper reference it. Needs the booktabs and adjustbox packages.

    Args:
        table: The table.
        label: The label's suffix (``fader-aggregate --name``).
        metrics: The metrics to show (e.g. ``["image_auroc", "aupro"]``); ``None``: all of the table's.

    Returns:
        The LaTeX source.

    Raises:
        ConfigError: When ``metrics`` names none of the table's metrics.
    """
    columns = [column for column in table.columns if metrics is None or column.metric in metrics]
    if not columns:
        shown = sorted({column.metric for column in table.columns})
        raise ConfigError(f"--latex-metrics {list(metrics or [])} selects no column; the table has {', '.join(shown)}")
    header = _header_rows(columns, lambda column: (column.masking, column.masking))
    if table.has_variants:
        header += _header_rows(columns, lambda column: (column.masking, column.variant, f"[{column.variant}]"))
    header += _header_rows(columns, lambda column: (column.masking, column.variant, STAGE_LABELS[column.stage]))
    names = [_tex(METRIC_LABELS.get(column.metric, column.metric)) for column in columns]
    rows = [(_tex(category), [table.stat(category, column) for column in columns]) for category in table.categories]
    rows.append(("Mean", [table.mean(column) for column in columns]))
    body = [
        " & ".join([name, *_bold_best(stats, columns, [format_stat(stat, LATEX) for stat in stats])]) + r" \\"
        for name, stats in rows
    ]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{Results in \% (mean$\pm$std over seeds; best per metric and row in bold; --- no result; "
        r"* incomplete).}",
        rf"\label{{tab:{_tex(label)}}}",
        r"\begin{adjustbox}{max width=\linewidth}",
        rf"\begin{{tabular}}{{l{'c' * len(columns)}}}",
        r"\toprule",
        *header,
        " & ".join(["Category", *names]) + r" \\",
        r"\midrule",
        *body[:-1],
        r"\midrule",
        body[-1],
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{adjustbox}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _join(values: Iterable[Any]) -> str:
    return ";".join("" if value is None else str(value) for value in values)


def records(table: Table) -> list[dict[str, Any]]:
    """Tidy records: one per category × masking × variant × stage × metric, with mean/std as fractions and provenance.

    Each record has the keys of :func:`csv_fields` and ``variant`` (``""`` when the table has none).
    """
    out = []
    for category, column in product(table.categories, table.columns):
        rows = table.cell(category, column.masking, column.stage, column.variant).rows
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


def _cell_order(category: str, masking: str, stage: str, variant: str) -> tuple[Any, ...]:
    return category, masking, variant_sort_key(variant), stage


def provenance(table: Table) -> dict[str, Any]:
    """For every cell, the runs it came from: folder, seed, status, commit, overrides, metrics and error.

    Cells are keyed by category, masking, stage and, when the table has variants, variant; only the (masking, variant)
    pairs of the table's columns are listed.
    """
    groups = set(table.groups)
    cells = [
        {
            "category": cell.category,
            "masking": cell.masking,
            **({VARIANT_FIELD: cell.variant} if table.has_variants else {}),
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
        for _, cell in sorted(table.cells.items(), key=lambda item: _cell_order(*item[0]))
        if (cell.masking, cell.variant) in groups
    ]
    return {"std": STD_NOTE, "cells": cells}


def write_markdown(table: Table, path: Path) -> Path:
    """Write :func:`to_markdown` atomically."""
    return atomic_write_text(path, to_markdown(table))


def write_latex(table: Table, path: Path, label: str = "results", metrics: Sequence[str] | None = None) -> Path:
    """Write :func:`to_latex` atomically."""
    return atomic_write_text(path, to_latex(table, label, metrics))


def write_csv(table: Table, path: Path) -> Path:
    """Write :func:`records` as CSV atomically (``std`` empty when n < 2, lists joined by ``;``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_fields(table), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records(table))
    return atomic_write_text(path, buffer.getvalue())

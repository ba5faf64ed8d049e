"""The results table: rows of jobs, seed statistics, cells and the paper's category × masking × stage layout.

Variants: a sweep that changes anything besides the category, the masking method and the seed (an ablation such as
``fader.patch_size=4,8,16``) gives each row a *variant*, e.g. ``fader.patch_size=4`` (see
:func:`fader_lightning.aggregate.reading.assign_variants`). Seeds are averaged within a variant, never across
variants, and the variant is part of the column group: masking method, then variant, then stage, then metric, with
headers such as ``saliency [fader.patch_size=4] EAR+FADeR I-AUROC``. Rows stay one per category, so an ablation
reads across a line. Only the (masking, variant) pairs that occur get columns. Every stage of a job carries the job's
variant: the EAR cells of a ``reuse_stage1`` ablation repeat the same stage-1 model under each variant, which keeps
every column pair an honest EAR vs EAR+FADeR comparison. Without varying keys the variant is ``""`` everywhere and
the table, its columns and every output are the same as without the variant axis.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any, NamedTuple

import numpy as np

from fader_lightning.keys import (
    AUPRO,
    EAR,
    FADER,
    IMAGE_AUROC,
    IMAGE_OPERATING_POINT,
    PIXEL_AUROC,
    PIXEL_OPERATING_POINT,
)

OK, FAILED, MISSING, PARTIAL = "ok", "failed", "missing", "partial"
NOT_APPLICABLE = "not_applicable"  # e.g. FADeR on the multi-pass random_multi baseline
UNKNOWN = "?"
STAGE_LABELS = {EAR: "EAR", FADER: "EAR+FADeR"}
DIAGNOSTIC_PREFIX = "diag."
# the test-pass diagnostics tabulated by --diagnostics (fader_lightning.metrics.diagnostics), in percent like the rest
DIAGNOSTIC_LABELS = {
    "diag.defect_pixels_masked": "defect px in M",
    "diag.patch_auroc_visible": "pred. AUROC visible",
    "diag.attenuated_visible_defect": "att. visible defect",
    "diag.attenuated_visible_normal": "att. visible normal",
    "diag.score_change_normal": "score change normal",
    "diag.score_change_anomalous": "score change anomalous",
}
# the deployable figures at the thresholds calibrated on normal images (never on test labels), a column group of their
# own (--operating-point); F1-max and its threshold are oracle figures and never tabulated
OPERATING_POINT_LABELS = dict(
    zip(
        (*IMAGE_OPERATING_POINT, *PIXEL_OPERATING_POINT),
        ("I-FPR@t", "I-TPR@t", "I-prec.@t", "I-F1@t", "I-bal.acc@t", "P-FPR@t", "P-TPR@t", "PRO@t"),
        strict=True,
    )
)
METRIC_LABELS = {
    IMAGE_AUROC: "I-AUROC", PIXEL_AUROC: "P-AUROC", AUPRO: "AUPRO", **DIAGNOSTIC_LABELS, **OPERATING_POINT_LABELS
}  # fmt: skip
DEFAULT_METRICS = (IMAGE_AUROC, PIXEL_AUROC)
NO_VARIANT = ""  # the variant of every row when the collection has no varying keys
DEFAULT_VARIANT = "default"  # jobs that set none of the varying keys, when others do


def group_label(masking: str, variant: str) -> str:
    """A masking method and, when there is one, its variant: ``saliency`` or ``saliency [fader.patch_size=4]``."""
    return f"{masking} [{variant}]" if variant else masking


def variant_sort_key(variant: str) -> tuple[bool, list[tuple[int, str]]]:
    """Sort key of variants: the default first, then natural order (``patch_size=4`` before ``patch_size=16``)."""
    parts = [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", variant)]
    return variant != DEFAULT_VARIANT, parts


@dataclass(frozen=True)
class Row:
    """One stage of one job, or one expected job that left no results.

    Attributes:
        category: Dataset category (``?`` when unknown).
        masking: Masking method (``?`` when unknown).
        stage: ``ear`` or ``fader``.
        status: ``ok``, ``failed``, ``missing`` or ``not_applicable``.
        run_dir: The job folder (the sweep folder for a job that never started).
        seed: Training seed.
        git_commit: Commit the job ran at.
        overrides: The job's Hydra overrides.
        metrics: Test metrics (fractions, not percent).
        error: Why the stage failed or is missing.
        variant: The job's values of the keys that vary across the collection, e.g. ``fader.patch_size=4``;
            ``""`` when nothing varies (see :func:`fader_lightning.aggregate.reading.assign_variants`).
        job_category: ``data.category`` as the job was asked it, where the row's category is one of several
            (a unified run's rows); ``None`` where they are the same.
    """

    category: str
    masking: str
    stage: str
    status: str
    run_dir: str
    seed: int | None = None
    git_commit: str | None = None
    overrides: tuple[str, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    variant: str = NO_VARIANT
    job_category: str | None = None

    def value(self, metric: str) -> float | None:
        """The metric's finite value when the stage succeeded, else ``None``."""
        value = self.metrics.get(metric) if self.status == OK else None
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class Stat(NamedTuple):
    """Mean ± sample std of one metric over the n runs that produced it, and the status of the group."""

    mean: float | None
    std: float | None
    n: int
    status: str


def _status(n_ok: int, n_rows: int, any_failed: bool, all_not_applicable: bool = False) -> str:
    if all_not_applicable:
        return NOT_APPLICABLE
    if n_ok and n_ok == n_rows:
        return OK
    if n_ok:
        return PARTIAL
    return FAILED if any_failed else MISSING


def summarize(rows: Sequence[Row], metric: str) -> Stat:
    """Mean, sample std (ddof=1) and count of a metric over the runs that produced it.

    Args:
        rows: Runs of one (category, masking, stage, variant).
        metric: Metric name.

    Returns:
        The statistics; status ``ok`` (every run has the value), ``partial``, ``failed`` or ``missing``.
    """
    values = [value for value in (row.value(metric) for row in rows) if value is not None]
    not_applicable = bool(rows) and all(row.status == NOT_APPLICABLE for row in rows)
    status = _status(len(values), len(rows), any(row.status == FAILED for row in rows), not_applicable)
    if not values:
        return Stat(None, None, 0, status)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return Stat(float(np.mean(values)), std, len(values), status)


@dataclass(frozen=True)
class Cell:
    """The runs of one (category, masking, stage, variant)."""

    category: str
    masking: str
    stage: str
    variant: str = NO_VARIANT
    rows: tuple[Row, ...] = ()

    @property
    def status(self) -> str:
        """``ok`` when every run succeeded, ``partial``, ``failed`` or ``missing``."""
        n_ok = sum(row.status == OK for row in self.rows)
        not_applicable = bool(self.rows) and all(row.status == NOT_APPLICABLE for row in self.rows)
        return _status(n_ok, len(self.rows), any(row.status == FAILED for row in self.rows), not_applicable)

    def stat(self, metric: str) -> Stat:
        """Statistics of one metric over the cell's runs."""
        return summarize(self.rows, metric)


class Column(NamedTuple):
    """One column of the table: a metric of a stage of a variant of a masking method."""

    masking: str
    stage: str
    metric: str
    variant: str = NO_VARIANT

    @property
    def group(self) -> str:
        """The masking method and, when there is one, the variant: ``saliency [fader.patch_size=4]``."""
        return group_label(self.masking, self.variant)

    @property
    def label(self) -> str:
        """Header text, e.g. ``saliency EAR+FADeR I-AUROC`` or ``saliency [fader.patch_size=4] EAR+FADeR I-AUROC``."""
        return f"{self.group} {STAGE_LABELS[self.stage]} {METRIC_LABELS.get(self.metric, self.metric)}"


@dataclass(frozen=True)
class Table:
    """Results laid out as in the paper: one row per category, columns masking × variant × stage × metric.

    Attributes:
        categories: Row labels, sorted.
        maskings: Masking methods, sorted.
        metrics: Metrics shown for each stage.
        cells: ``(category, masking, stage, variant)`` → cell.
        variants: Variants, default first then natural order; ``("",)`` when nothing varies.
    """

    categories: tuple[str, ...]
    maskings: tuple[str, ...]
    metrics: tuple[str, ...]
    cells: Mapping[tuple[str, str, str, str], Cell]
    variants: tuple[str, ...] = (NO_VARIANT,)

    @property
    def has_variants(self) -> bool:
        """Whether the collection has varying keys, i.e. a variant axis."""
        return self.variants != (NO_VARIANT,)

    @property
    def groups(self) -> list[tuple[str, str]]:
        """The (masking, variant) pairs that have runs, in display order; every masking when nothing varies."""
        used = {(masking, variant) for (_, masking, _, variant), cell in self.cells.items() if cell.rows}
        return [key for key in product(self.maskings, self.variants) if key in used or not self.has_variants]

    @property
    def columns(self) -> list[Column]:
        """Columns in display order: masking, then variant, then stage (EAR, EAR+FADeR), then metric."""
        return [
            Column(masking, stage, metric, variant)
            for (masking, variant), stage, metric in product(self.groups, STAGE_LABELS, self.metrics)
        ]

    def cell(self, category: str, masking: str, stage: str, variant: str = NO_VARIANT) -> Cell:
        """The runs of one (category, masking, stage, variant); empty when none."""
        return self.cells.get((category, masking, stage, variant)) or Cell(category, masking, stage, variant)

    def stat(self, category: str, column: Column) -> Stat:
        """Statistics of one table entry."""
        return self.cell(category, column.masking, column.stage, column.variant).stat(column.metric)

    def mean(self, column: Column) -> Stat:
        """Mean over categories of the per-category means, over the categories that have a value.

        Returns:
            n is the number of categories averaged; status ``ok`` only when every category's cell is complete.
        """
        stats = [self.stat(category, column) for category in self.categories]
        means = [stat.mean for stat in stats if stat.mean is not None]
        if not means:
            return Stat(None, None, 0, NOT_APPLICABLE if all(s.status == NOT_APPLICABLE for s in stats) else MISSING)
        complete = all(s.status in (OK, NOT_APPLICABLE) for s in stats)
        return Stat(float(np.mean(means)), None, len(means), OK if complete else PARTIAL)


def build_table(
    rows: Sequence[Row],
    metrics: Sequence[str] = DEFAULT_METRICS,
    include_aupro: bool = False,
    include_diagnostics: bool = False,
    include_operating_point: bool = False,
) -> Table:
    """Group rows into the paper's table; every category × masking × stage × variant gets a cell, empty ones included.

    Args:
        rows: Rows from :func:`collect` (their ``variant`` set by it).
        metrics: Metrics shown for each stage.
        include_aupro: Add ``aupro`` to the metrics.
        include_diagnostics: Add the test-pass diagnostics of :data:`DIAGNOSTIC_LABELS` (stage-1 cells show the
            ones that apply to it, the others are empty).
        include_operating_point: Add the figures at the calibrated thresholds (:data:`OPERATING_POINT_LABELS`).

    Returns:
        The table.
    """
    metrics = (*metrics, AUPRO) if include_aupro and AUPRO not in metrics else tuple(metrics)
    if include_operating_point:
        metrics = (*metrics, *(key for key in OPERATING_POINT_LABELS if key not in metrics))
    if include_diagnostics:
        metrics = (*metrics, *(key for key in DIAGNOSTIC_LABELS if key not in metrics))
    categories = tuple(sorted({row.category for row in rows}))
    maskings = tuple(sorted({row.masking for row in rows}))
    variants = tuple(sorted({row.variant for row in rows}, key=variant_sort_key)) or (NO_VARIANT,)
    grouped: dict[tuple[str, str, str, str], list[Row]] = {
        key: [] for key in product(categories, maskings, STAGE_LABELS, variants)
    }
    for row in rows:
        grouped.setdefault((row.category, row.masking, row.stage, row.variant), []).append(row)
    cells = {key: Cell(*key, rows=tuple(group)) for key, group in grouped.items()}
    return Table(categories, maskings, metrics, cells, variants)

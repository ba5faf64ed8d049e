"""``chart.png``: grouped bar chart of image AUROC per category, EAR vs EAR+FADeR for each masking method.

With variants, each (masking method, variant) pair gets its own pair of bars and colour.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

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
from fader_lightning.utils.io import atomic_write_bytes

CHART_METRIC, CHART_LABEL = "image_auroc", "image AUROC"
CHART_TITLE = f"{CHART_LABEL} per category: EAR vs EAR+FADeR for each masking method"
CHART_NOTES = ("F failed, M missing, N not applicable", "line: ±std over seeds")
PALETTE = ((31, 119, 180), (214, 96, 0), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))
FONT_SIZE = 14
HEIGHT = 440
LEFT, TOP, BOTTOM, MARGIN = 80, 50, 70, 20  # plot area offsets in pixels
BAR_W, GAP = 16, 18  # bar width, space between category groups
INK, GRID_INK, FAINT_INK = (30, 30, 30), (225, 225, 225), (120, 120, 120)
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class Series(NamedTuple):
    """One bar per category: a stage of a masking method (and of a variant, when the table has variants)."""

    masking: str
    stage: str
    colour: tuple[int, int, int]
    variant: str = NO_VARIANT

    @property
    def label(self) -> str:
        """Legend text, e.g. ``saliency EAR+FADeR`` or ``saliency [fader.patch_size=4] EAR+FADeR``."""
        return f"{group_label(self.masking, self.variant)} {STAGE_LABELS[self.stage]}"


class Plot(NamedTuple):
    """The plotting area in pixels and the lowest percent shown."""

    left: int
    top: int
    right: int
    bottom: int
    low: float

    def y(self, percent: float) -> float:
        """Pixel row of a value in percent."""
        return self.bottom - (percent - self.low) / (100 - self.low) * (self.bottom - self.top)


def _series(table: Table) -> list[Series]:
    series = []
    for i, (masking, variant) in enumerate(table.groups):
        dark = PALETTE[i % len(PALETTE)]
        light = tuple(int(c + (255 - c) * 0.55) for c in dark)
        series += [Series(masking, "ear", light, variant), Series(masking, "fader", dark, variant)]
    return series


def _text_width(font: Font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _axis_low(stats: Iterable[Stat]) -> float:
    lowest = min((100 * stat.mean for stat in stats if stat.mean is not None), default=50.0)
    return float(max(0, min(50, 10 * math.floor(lowest / 10) - 10)))


def _draw_axes(image: Image.Image, plot: Plot, font: Font) -> None:
    draw = ImageDraw.Draw(image)
    for tick in range(int(plot.low), 101, 10):
        y = plot.y(tick)
        draw.line([(plot.left, y), (plot.right, y)], fill=GRID_INK)
        draw.text((plot.left - 6, y), str(tick), fill=INK, font=font, anchor="rm")
    draw.line([(plot.left, plot.top), (plot.left, plot.bottom), (plot.right, plot.bottom)], fill=INK, width=1)
    label = f"{CHART_LABEL} (%)"
    strip = Image.new("RGB", (_text_width(font, label) + 4, FONT_SIZE + 6), "white")
    ImageDraw.Draw(strip).text((2, 1), label, fill=INK, font=font)
    rotated = strip.rotate(90, expand=True)
    image.paste(rotated, (8, int((plot.top + plot.bottom - rotated.height) / 2)))
    draw.text(((plot.left + plot.right) / 2, image.height - 8), "category", fill=INK, font=font, anchor="md")


def _draw_bar(draw: ImageDraw.ImageDraw, plot: Plot, x: float, stat: Stat, series: Series, font: Font) -> None:
    if stat.mean is None:
        mark = {FAILED: "F", NOT_APPLICABLE: "N"}.get(stat.status, "M")
        draw.text((x + BAR_W / 2, plot.bottom - 2), mark, fill=FAINT_INK, font=font, anchor="mb")
        return
    draw.rectangle([x, plot.y(100 * stat.mean), x + BAR_W - 2, plot.bottom], fill=series.colour)
    if stat.std is not None:
        centre, low, high = x + BAR_W / 2 - 1, 100 * (stat.mean - stat.std), 100 * (stat.mean + stat.std)
        draw.line([(centre, plot.y(max(low, plot.low))), (centre, plot.y(min(high, 100)))], fill=INK, width=1)


def _draw_legend(draw: ImageDraw.ImageDraw, x: int, y: int, series: Sequence[Series], font: Font) -> None:
    for i, item in enumerate(series):
        top = y + i * (FONT_SIZE + 8)
        draw.rectangle([x, top, x + 14, top + 14], fill=item.colour)
        draw.text((x + 20, top + 7), item.label, fill=INK, font=font, anchor="lm")
    for i, note in enumerate(CHART_NOTES):
        draw.text((x, y + len(series) * (FONT_SIZE + 8) + 6 + i * (FONT_SIZE + 6)), note, fill=FAINT_INK, font=font)


def render_chart(table: Table) -> Image.Image:
    """Grouped bar chart of image AUROC: one group per category, one bar per masking method × stage.

    Args:
        table: The table.

    Returns:
        The RGB image.
    """
    font = ImageFont.load_default(size=FONT_SIZE)
    series = _series(table)
    categories = table.categories or (UNKNOWN,)
    stats = {
        (c, s): table.cell(c, s.masking, s.stage, s.variant).stat(CHART_METRIC) for c in categories for s in series
    }
    group_w = max(len(series) * BAR_W, *(_text_width(font, category) for category in categories)) + GAP
    legend_w = max([_text_width(font, s.label) + 20 for s in series] + [_text_width(font, n) for n in CHART_NOTES])
    plot = Plot(LEFT, TOP, LEFT + group_w * len(categories), HEIGHT - BOTTOM, _axis_low(stats.values()))
    width = max(plot.right + 2 * MARGIN + legend_w, _text_width(font, CHART_TITLE) + 2 * MARGIN)
    image = Image.new("RGB", (width, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    _draw_axes(image, plot, font)
    for i, category in enumerate(categories):
        left = plot.left + i * group_w + (group_w - len(series) * BAR_W) / 2
        for j, item in enumerate(series):
            _draw_bar(draw, plot, left + j * BAR_W, stats[category, item], item, font)
        draw.text((plot.left + (i + 0.5) * group_w, plot.bottom + 6), category, fill=INK, font=font, anchor="ma")
    _draw_legend(draw, plot.right + MARGIN, TOP, series, font)
    draw.text((image.width / 2, 12), CHART_TITLE, fill=INK, font=font, anchor="ma")
    return image


def write_chart(table: Table, path: Path) -> Path:
    """Write :func:`render_chart` as PNG atomically."""
    buffer = io.BytesIO()
    render_chart(table).save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())

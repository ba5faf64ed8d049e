"""Drawing the generated data: normal images of two kinds, painted defects with exact masks, and saving them.

* ``texture``: a regular woven pattern with a little jitter and sensor noise.
* ``object``: a shaded disc on a flat background, with a little jitter in position and size.

Defects (``spot``, ``scratch``) are painted on top. The same seed and keys always draw the same pixels.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

DEFECT_TYPES: tuple[str, ...] = ("spot", "scratch")


def seeded_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (a category, a split, an index)."""
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


def normal_image(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one normal image.

    Args:
        kind: ``texture`` or ``object``.
        size: Side length in pixels.
        rng: Random generator.

    Returns:
        RGB float image in [0, 1], shape (size, size, 3).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    if kind == "texture":
        period = 8.0 + rng.uniform(-0.3, 0.3)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        weave = 0.5 + 0.25 * np.sin(2 * np.pi * period * xx + phase[0]) * np.sin(2 * np.pi * period * yy + phase[1])
        base = np.stack([weave * 0.9 + 0.05, weave * 0.75 + 0.1, weave * 0.5 + 0.2], axis=-1)
    else:
        cy, cx = 0.5 + rng.uniform(-0.03, 0.03, size=2)
        radius = 0.32 + rng.uniform(-0.01, 0.01)
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        inside = np.clip((radius - dist) * size / 2.0, 0.0, 1.0)
        shade = 0.55 + 0.35 * (1.0 - dist / radius).clip(0, 1)
        disc = np.stack([shade * 0.85, shade * 0.6, shade * 0.3], axis=-1)
        background = np.array([0.15, 0.18, 0.22])
        base = inside[..., None] * disc + (1.0 - inside[..., None]) * background
    return np.clip(base + rng.normal(0.0, 0.015, size=base.shape), 0.0, 1.0)


def paint_defect(image: np.ndarray, defect: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint one defect onto a copy of an image.

    Args:
        image: RGB float image in [0, 1].
        defect: ``spot`` (a coloured ellipse) or ``scratch`` (a thick bright line).
        rng: Random generator.

    Returns:
        The defective image and its boolean mask.
    """
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(0.3, 0.7, size=2) * size
    if defect == "spot":
        ry, rx = rng.uniform(0.05, 0.1, size=2) * size
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        colour = rng.uniform(0.0, 1.0, size=3)
    else:
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.2, 0.35) * size
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        mask = (np.abs(along) <= length / 2) & (np.abs(across) <= max(1.5, size / 64))
        colour = np.array([0.95, 0.95, 0.9])
    out = image.copy()
    out[mask] = colour
    return out, mask


def save_image(array: np.ndarray, path: Path, grayscale: bool = False) -> None:
    """Write a float image in [0, 1] as 8-bit PNG or JPEG (by the suffix), in colour or grayscale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels)
    if grayscale:
        image = image.convert("L")
    image.save(path, quality=95) if path.suffix.upper() == ".JPG" else image.save(path)


def category_kind(category: str) -> str:
    """``texture`` for a category named ``*texture*``, else ``object``."""
    return "texture" if "texture" in category else "object"

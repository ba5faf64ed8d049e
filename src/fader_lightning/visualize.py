"""Drawing: heat maps on a fixed scale, contours, colour bars, captions and the titled overlay panel of one image.

Heat maps use one documented scale (:class:`MapScale`): with a calibrated model, blue is the lowest map value of the
normal calibration images, the middle of the JET colours (green) is the pixel threshold, and red is as far above the
threshold as the normal values spread below it; so the background of a normal image stays blue whatever the image
and a defect is red. Models without stored calibration lows fall back to ``[0, threshold]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_HEIGHT = 12
"""Pixels per caption line."""
BAR_WIDTH = 56
"""Width of the colour bar strip, labels included."""
TITLE_HEIGHT = TEXT_HEIGHT + 2
"""Height of the title strip over each overlay panel (a one-line :func:`caption`)."""
HEAT_ALPHA = 0.5
"""Weight of the heat map where it is laid over the image."""
SOFT_MASK_COLORMAP = cv2.COLORMAP_VIRIDIS
"""FADeR's soft mask is a skip weight, not an anomaly score: its own colours (dark: attenuated, yellow: passed)."""


@dataclass(frozen=True)
class MapScale:
    """The value range a heat map's colours span, and the threshold marked on its colour bar.

    Attributes:
        low: Value shown as the coldest colour.
        high: Value shown as the hottest colour.
        threshold: The pixel threshold (NaN: none).
    """

    low: float
    high: float
    threshold: float = math.nan

    @classmethod
    def calibrated(cls, threshold: float | None, low: float | None) -> MapScale | None:
        """The fixed scale of a calibrated model: ``low`` to ``threshold + (threshold - low)``, threshold in the middle.

        Args:
            threshold: The pixel threshold (``None``: not calibrated).
            low: The lowest map value of the calibration images (``None``: not stored).

        Returns:
            The scale, or ``None`` when either value is missing.
        """
        if threshold is None or low is None:
            return None
        spread = max(threshold - low, 1e-12)
        return cls(low, threshold + spread, threshold)


def to_uint8_rgb(image: Tensor) -> np.ndarray:
    """Convert a (3, H, W) image in [0, 1] to an (H, W, 3) uint8 array.

    Args:
        image: The image.

    Returns:
        The array.
    """
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def heatmap(values: Tensor | np.ndarray, vmin: float, vmax: float, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Colour a (H, W) map between fixed bounds.

    Args:
        values: The map.
        vmin: Value shown as the coldest colour.
        vmax: Value shown as the hottest colour.
        colormap: OpenCV colour map: JET for anomaly maps, :data:`SOFT_MASK_COLORMAP` for FADeR's soft mask.

    Returns:
        RGB uint8 array (H, W, 3).
    """
    array = values.detach().float().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values, np.float32)
    scaled = ((array - vmin) / max(vmax - vmin, 1e-12)).clip(0, 1)
    return cv2.applyColorMap((scaled * 255).round().astype(np.uint8), colormap)[..., ::-1]


def blend(image: np.ndarray, heat: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """A heat map laid over an image.

    Args:
        image: RGB uint8 image.
        heat: RGB uint8 heat map of the same size.
        alpha: Weight of the heat map.

    Returns:
        RGB uint8 array.
    """
    return cv2.addWeighted(heat, alpha, image, 1.0 - alpha, 0.0)


def outline(image: np.ndarray, mask: Tensor, colour: tuple[int, int, int]) -> np.ndarray:
    """Draw the contour of a binary mask on an RGB image, over a white halo so that it shows on dark objects too.

    Args:
        image: RGB uint8 image.
        mask: Binary (H, W) mask.
        colour: RGB colour of the contour.

    Returns:
        A copy of the image with the contour.
    """
    out = np.ascontiguousarray(image.copy())
    contours, _ = cv2.findContours(mask.cpu().numpy().astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 255, 255), 3)
    cv2.drawContours(out, contours, -1, colour, 1)
    return out


def _text(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    cv2.putText(canvas, text, (x, y), FONT, 0.33, (255, 255, 255), 1, cv2.LINE_AA)


def colour_bar(height: int, scale: MapScale, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """A vertical bar for a map's scale, labelled with its bounds and the threshold.

    Args:
        height: Height in pixels (the panel's).
        scale: The scale the maps use.
        colormap: The maps' OpenCV colour map.

    Returns:
        RGB uint8 array (height, :data:`BAR_WIDTH`, 3) on a black background.
    """
    canvas = np.zeros((height, BAR_WIDTH, 3), np.uint8)
    ramp = np.linspace(scale.high, scale.low, height, dtype=np.float32)[:, None].repeat(10, axis=1)
    canvas[:, 2:12] = heatmap(ramp, scale.low, scale.high, colormap)
    marks = [(scale.high, 8), (scale.low, height - 2)]
    if not math.isnan(scale.threshold):
        row = round((scale.high - scale.threshold) / max(scale.high - scale.low, 1e-12) * (height - 1))
        canvas[row, :14] = 255
        marks.append((scale.threshold, min(max(row + 4, 20), height - 12)))
    for value, y in marks:
        _text(canvas, f"{value:.3g}", 15, y)
    return canvas


def caption(lines: Sequence[str], width: int) -> np.ndarray:
    """A black strip with one line of white text per entry.

    Args:
        lines: The text lines.
        width: Width in pixels.

    Returns:
        RGB uint8 array (``TEXT_HEIGHT`` per line, width, 3).
    """
    canvas = np.zeros((TEXT_HEIGHT * len(lines) + 2, width, 3), np.uint8)
    for index, line in enumerate(lines):
        _text(canvas, line, 3, TEXT_HEIGHT * (index + 1) - 2)
    return canvas


def titled(panels: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Panels side by side, each under its title.

    Args:
        panels: ``(title, RGB uint8 array)`` pairs of the same height.

    Returns:
        RGB uint8 array, :data:`TITLE_HEIGHT` pixels taller than the panels.
    """
    return np.concatenate([np.concatenate([caption([title], panel.shape[1]), panel]) for title, panel in panels], 1)


def overlay_panel(
    image: Tensor,
    gt_mask: Tensor | None,
    amap: Tensor,
    scale: MapScale,
    soft_mask: Tensor | None = None,
    hidden: Tensor | None = None,
    masked_input: Tensor | None = None,
    recon: Tensor | None = None,
    lines: Sequence[str] = (),
) -> np.ndarray:
    """One overlay row, each panel titled, over a caption.

    image | input I' | recon Î | truth | map (the heat map blended over the image) | predicted | the map's bar
    [| FADeR's soft mask | its bar].

    Args:
        image: (3, H, W) image in [0, 1].
        gt_mask: (H, W) ground-truth mask, ``None`` when there is none (prediction on new images).
        amap: (H, W) anomaly map.
        scale: Heat-map colours and the pixel threshold (above it a pixel is predicted defective; NaN: none).
        soft_mask: FADeR's (H, W) skip weights in [0, 1] (1: the skip passes), in their own colours and bar.
        hidden: The (H, W) binary mask M of single-mask models, outlined in blue on the ground-truth panel: the
            defect parts outside it are the ones the skips copy, which FADeR has to find.
        masked_input: I', the (3, H, W) image the inpainting network sees (its hidden pixels filled).
        recon: Î, the (3, H, W) reconstruction.
        lines: Caption lines (score, label, threshold, ...).

    Returns:
        RGB uint8 array.
    """
    rgb = to_uint8_rgb(image)
    no_mask = torch.zeros(amap.shape, dtype=torch.bool)
    gt = gt_mask > 0.5 if gt_mask is not None else no_mask
    predicted = amap > scale.threshold if not math.isnan(scale.threshold) else no_mask
    panels = [("image", rgb)]
    panels += [(title, to_uint8_rgb(view)) for title, view in (("input I'", masked_input), ("recon", recon))
               if view is not None]  # fmt: skip
    if gt_mask is not None or hidden is not None:
        masked = outline(rgb, hidden > 0.5, (0, 0, 255)) if hidden is not None else rgb
        panels.append(("truth" if hidden is None else "truth, M", outline(masked, gt, (0, 255, 0))))
    panels += [
        ("map", blend(rgb, heatmap(amap, scale.low, scale.high))),
        ("predicted", outline(outline(rgb, predicted, (255, 0, 0)), gt, (0, 255, 0))),
        ("scale", colour_bar(rgb.shape[0], scale)),
    ]
    if soft_mask is not None:
        panels += [
            ("soft mask", heatmap(soft_mask, 0.0, 1.0, SOFT_MASK_COLORMAP)),
            ("weight", colour_bar(rgb.shape[0], MapScale(0.0, 1.0), SOFT_MASK_COLORMAP)),
        ]
    row = titled(panels)
    return np.concatenate([row, caption(lines, row.shape[1])], axis=0) if lines else row


def encode_png(panel: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 array, or of a grayscale ``(H, W)`` uint8 or uint16 one.

    Args:
        panel: The array.

    Returns:
        The encoded file.

    Raises:
        ValueError: When OpenCV cannot encode it.
    """
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(panel[..., ::-1] if panel.ndim == 3 else panel))
    if not ok:
        raise ValueError(f"cannot encode a {panel.shape} array as PNG")
    return encoded.tobytes()

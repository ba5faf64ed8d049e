"""Heat maps on the fixed scale, colour bars, captions and the overlay panel."""

import math

import numpy as np
import torch

from fader_lightning.visualize import BAR_WIDTH, TEXT_HEIGHT, MapScale, caption, colour_bar, heatmap, overlay_panel


def test_the_calibrated_scale_puts_the_threshold_in_the_middle() -> None:
    scale = MapScale.calibrated(threshold=3.0, low=1.0)
    assert (scale.low, scale.high, scale.threshold) == (1.0, 5.0, 3.0)
    assert MapScale.calibrated(None, 1.0) is None and MapScale.calibrated(3.0, None) is None
    colours = heatmap(torch.tensor([[0.0, 1.0, 3.0, 5.0, 9.0]]), scale.low, scale.high)[0]
    assert np.array_equal(colours[0], colours[1]) and np.array_equal(colours[3], colours[4])  # clipped at the ends
    blue, middle, red = colours[1], colours[2], colours[3]
    assert blue[2] > blue[0] and red[0] > red[2]  # JET: low is blue, high is red
    assert middle[1] > max(middle[0], middle[2]) - 5  # the threshold sits in the green middle of JET


def test_colour_bar_and_caption_shapes() -> None:
    scale = MapScale(0.0, 2.0, 1.0)
    bar = colour_bar(64, scale)
    assert bar.shape == (64, BAR_WIDTH, 3)
    assert bar[1, 5, 0] > bar[1, 5, 2] and bar[-2, 5, 2] > bar[-2, 5, 0]  # red on top, blue at the bottom
    assert np.all(bar[32, :14] == 255)  # the threshold's tick, half way up
    assert caption(["a", "b", "c"], 100).shape == (3 * TEXT_HEIGHT + 2, 100, 3)


def test_overlay_panel_has_a_panel_per_view_and_a_caption() -> None:
    image = torch.rand(3, 32, 40)
    amap = torch.rand(32, 40)
    scale = MapScale(0.0, 1.0, 0.5)
    plain = overlay_panel(image, None, amap, scale)
    assert plain.shape == (32, 3 * 40 + BAR_WIDTH, 3)  # image | heat map | region | bar
    full = overlay_panel(image, torch.zeros(32, 40), amap, scale, {"soft": amap}, torch.ones(32, 40),
                         masked_input=image, recon=image, lines=["one", "two"])  # fmt: skip
    assert full.shape == (32 + 2 * TEXT_HEIGHT + 2, 7 * 40 + BAR_WIDTH, 3)
    # the predicted region is outlined in red where the map exceeds the threshold
    half = torch.zeros(32, 40)
    half[8:24, 10:30] = 1.0
    region = overlay_panel(torch.zeros(3, 32, 40), None, half, scale)[:, 80:120]
    assert region[8, 15].tolist() == [255, 0, 0] and region[0, 0].tolist() == [0, 0, 0]
    assert math.isnan(MapScale(0.0, 1.0).threshold)

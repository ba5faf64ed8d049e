"""Heat maps on the fixed scale, colour bars, captions and the overlay panel."""

import math

import numpy as np
import torch

from fader_lightning.visualize import (
    BAR_WIDTH,
    SOFT_MASK_COLORMAP,
    TEXT_HEIGHT,
    TITLE_HEIGHT,
    MapScale,
    caption,
    colour_bar,
    heatmap,
    overlay_panel,
    to_uint8_rgb,
)


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


def test_overlay_panel_has_a_titled_panel_per_view_and_a_caption() -> None:
    image = torch.rand(3, 32, 40)
    amap = torch.rand(32, 40)
    scale = MapScale(0.0, 1.0, 0.5)
    plain = overlay_panel(image, None, amap, scale)
    assert plain.shape == (TITLE_HEIGHT + 32, 3 * 40 + BAR_WIDTH, 3)  # image | map | predicted | bar
    full = overlay_panel(image, torch.zeros(32, 40), amap, scale, amap, torch.ones(32, 40),
                         masked_input=image, recon=image, lines=["one", "two"])  # fmt: skip
    # image | I' | recon | truth | map | predicted | bar | soft mask | its bar, over two caption lines
    assert full.shape == (TITLE_HEIGHT + 32 + 2 * TEXT_HEIGHT + 2, 7 * 40 + 2 * BAR_WIDTH, 3)
    for left in (0, 40, 80, 120, 160, 200, 240, 240 + BAR_WIDTH, 280 + BAR_WIDTH):  # each panel's title is written
        assert full[:TITLE_HEIGHT, left : left + 40].max() > 200


def test_the_map_panel_blends_the_heat_map_over_the_image() -> None:
    image, amap = torch.rand(3, 32, 40), torch.rand(32, 40)
    scale = MapScale(0.0, 1.0, 0.5)
    panel = overlay_panel(image, None, amap, scale)[TITLE_HEIGHT:, 40:80].astype(float)
    expected = (to_uint8_rgb(image).astype(float) + heatmap(amap, 0.0, 1.0).astype(float)) / 2
    assert np.abs(panel - expected).max() <= 1.0


def test_the_predicted_region_is_outlined_in_red_over_a_white_halo() -> None:
    scale = MapScale(0.0, 1.0, 0.5)
    half = torch.zeros(32, 40)
    half[8:24, 10:30] = 1.0
    region = overlay_panel(torch.zeros(3, 32, 40), None, half, scale)[TITLE_HEIGHT:, 80:120]  # a black object
    assert region[8, 15].tolist() == [255, 0, 0] and region[0, 0].tolist() == [0, 0, 0]
    assert region[7, 15].tolist() == [255, 255, 255] and region[9, 15].tolist() == [255, 255, 255]  # the halo
    assert math.isnan(MapScale(0.0, 1.0).threshold)


def test_the_soft_mask_has_its_own_colours_and_bar() -> None:
    image, amap = torch.rand(3, 32, 40), torch.rand(32, 40)
    soft = torch.linspace(0, 1, 40).expand(32, 40)
    panel = overlay_panel(image, None, amap, MapScale(0.0, 1.0, 0.5), soft)[TITLE_HEIGHT:]
    drawn = panel[:, 3 * 40 + BAR_WIDTH : 4 * 40 + BAR_WIDTH]
    assert np.array_equal(drawn, heatmap(soft, 0.0, 1.0, SOFT_MASK_COLORMAP))
    assert not np.array_equal(drawn, heatmap(soft, 0.0, 1.0))  # not the anomaly map's JET
    bar = panel[:, 4 * 40 + BAR_WIDTH :]
    assert np.array_equal(bar, colour_bar(32, MapScale(0.0, 1.0), SOFT_MASK_COLORMAP))

"""The input size of a trained model, the one rule of every command: the checkpoint's, else its run's, else given."""

from __future__ import annotations

import pytest

from fader_lightning.data.transforms import checkpoint_size
from fader_lightning.errors import ConfigError


def test_the_checkpoint_decides_then_its_run_then_the_command_line() -> None:
    assert checkpoint_size(None, (64, 64), "image_size", False, stored=[96, 128]) == (64, 64)
    assert checkpoint_size(64, (64, 64), "image_size", False) == (64, 64)
    assert checkpoint_size(None, None, "image_size", False, stored=[96, 128]) == (96, 128)
    assert checkpoint_size([32, 48], None, "image_size", False) == (32, 48)
    assert checkpoint_size([32, 48], (64, 64), "image_size", True) == (32, 48)
    with pytest.raises(ConfigError, match=r"image_size=\[32, 48\] differs from the \[64, 64\].*force=true"):
        checkpoint_size([32, 48], (64, 64), "image_size", False)
    with pytest.raises(ConfigError, match=r"^data.image_size=\[32, 32\] differs .*drop data.image_size="):
        checkpoint_size(32, [64, 64], "data.image_size", False)  # the key the job gave is the one named
    with pytest.raises(ConfigError, match=r"pass image_size=<the size it was trained at>"):
        checkpoint_size(None, None, "image_size", False)  # no guess: nothing states the size
    for bad in (0, [32, 0], [1, 2, 3], "big", True):
        with pytest.raises(ConfigError, match=r"image_size=.* is invalid; use a positive int N or a \[height, width\]"):
            checkpoint_size(bad, (64, 64), "image_size", True)

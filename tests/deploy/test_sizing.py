"""The inference size of the deployment commands: the checkpoint's own, else its run's, else the user's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fader_lightning.deploy.sizing import resolve_image_size
from fader_lightning.errors import ConfigError

RUN = {"config": {"data": {"image_size": [96, 128]}}}


def test_the_checkpoint_decides_then_its_run_then_the_command_line() -> None:
    stored, legacy = SimpleNamespace(trained_size=(64, 64)), SimpleNamespace(trained_size=None)
    assert resolve_image_size(None, stored, RUN, force=False) == (64, 64)
    assert resolve_image_size(64, stored, {}, force=False) == (64, 64)
    assert resolve_image_size(None, legacy, RUN, force=False) == (96, 128)
    assert resolve_image_size([32, 48], legacy, {}, force=False) == (32, 48)
    assert resolve_image_size([32, 48], stored, {}, force=True) == (32, 48)
    with pytest.raises(ConfigError, match=r"image_size=\[32, 48\] differs from the \[64, 64\].*force=true"):
        resolve_image_size([32, 48], stored, {}, force=False)
    with pytest.raises(ConfigError, match=r"pass image_size=<the size it was trained at>"):
        resolve_image_size(None, legacy, {}, force=False)  # no guess: nothing states the size
    for bad in (0, [32, 0], [1, 2, 3], "big", True):
        with pytest.raises(ConfigError, match=r"image_size=.* is invalid; use a positive int N or a \[height, width\]"):
            resolve_image_size(bad, stored, {}, force=True)

"""Overrides and sweeps read with Hydra's own grammar."""

import logging
from pathlib import Path

import pytest

from fader_lightning.aggregate.reading import parse_overrides, sweep_values


def test_overrides_are_normalised_as_hydra_prints_them() -> None:
    parsed = parse_overrides(["model.unet.widths=[16, 32]", "+data.x='a b'", "~callbacks.overlays",
                              "hydra/launcher=joblib", "model@m=x", "seed=range(0,3)"])  # fmt: skip
    assert parsed == {"model.unet.widths": "[16,32]", "data.x": "a b", "hydra/launcher": "joblib", "model@m": "x",
                      "seed": "range(0,3)"}  # fmt: skip
    assert parse_overrides(["model.optimizer.lr=1.0e-3"]) == parse_overrides(["model.optimizer.lr=0.001"])


def test_sweeps_expand_like_hydra(caplog: pytest.LogCaptureFixture) -> None:
    source = Path("multirun.yaml")
    assert sweep_values("seed", "range(0,3)", source) == ["0", "1", "2"]
    assert sweep_values("masking", "choice(saliency,none)", source) == ["saliency", "none"]
    assert sweep_values("model.unet.widths", "[8,16],[16,32]", source) == ["[8,16]", "[16,32]"]
    assert sweep_values("seed", "4", source) == ["4"]
    with caplog.at_level(logging.WARNING):
        assert sweep_values("data.category", "glob(*)", source) == []
    assert "cannot expand data.category=glob(*)" in caplog.text

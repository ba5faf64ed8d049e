"""Shared fixtures: generated datasets and the optional real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fader_lightning.data.synthetic import make_mvtec_tree, make_visa_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FADER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Return a path under ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (../shared/data is not checked out next to the repo)")
    return path


@pytest.fixture(scope="session")
def synthetic_mvtec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated MVTec-layout tree with two categories (64 px)."""
    return make_mvtec_tree(
        tmp_path_factory.mktemp("synth_mvtec"), n_train=12, n_test_good=4, n_test_defect=3, size=64, seed=0
    )


@pytest.fixture(scope="session")
def synthetic_visa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated raw-VisA tree with label-valued masks and its 1cls.csv."""
    return make_visa_tree(tmp_path_factory.mktemp("synth_visa"), n_normal=12, n_anomaly=4, n_test_normal=3, size=48)

"""Shared fixtures: generated datasets and the optional real data (FADER_SHARED_DATA, default ../shared/data)."""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from fader_lightning.configs import CONFIG_DIR, literal_settings
from fader_lightning.data.datamodule import AnomalyDataModule
from fader_lightning.data.synthetic import make_mvtec_tree, make_visa_tree
from fader_lightning.models import FADeRModule
from fader_lightning.models.loading import STAGE1_SOURCE_KEYS, load_stage1

pytest_plugins = ("sweeps",)  # the fake-sweep fixtures of the aggregate tests

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


TINY_UNET = "model.unet.widths=[8,16,32,64]"
STAGE1_ONLY = "stage=ear"
"""What :func:`compose_train_cfg` runs unless a test names its stage (``stage=both`` is the commands' default)."""
EAR_SETTINGS = {
    **{key: literal_settings("model/ear")[key] for key in ("fpr_limit", "map_storage", "speed")},
    "interpolation": literal_settings("data/synthetic")["interpolation"],
}
"""The values ``conf/`` gives a stage-1 module besides its network and masking, for modules built in tests."""
FADER_SETTINGS = {
    **literal_settings("fader/default", exclude=("trainer", *STAGE1_SOURCE_KEYS)),
    "seed": literal_settings("train")["seed"],
}
"""``conf/fader/default.yaml``'s settings of a stage-2 module (with the job's seed)."""


DATA_ARGUMENTS = ("root", "normal_dir", "abnormal_dir", "mask_dir", "split_csv")
"""Where a datamodule's files are: given by each test."""


def datamodule(kind: str, *args: Any, **settings: Any) -> AnomalyDataModule:
    """A datamodule with ``conf/data/<kind>.yaml``'s settings and the job's seed, some replaced by ``settings``.

    Args:
        kind: ``mvtec``, ``visa``, ``folder`` or ``synthetic``.
        *args: Its positional arguments (the root or folders, the category).
        **settings: Settings that replace the config's, and the keyword arguments of :data:`DATA_ARGUMENTS`.

    Returns:
        The datamodule (not set up).
    """
    target = get_class(OmegaConf.load(Path(CONFIG_DIR) / "data" / f"{kind}.yaml")["_target_"])
    given = list(inspect.signature(target).parameters)[: len(args)]  # the arguments given by position
    config = literal_settings(f"data/{kind}", exclude=(*DATA_ARGUMENTS, *given))
    return target(*args, **{**config, "seed": literal_settings("train")["seed"], **settings})


def fader_module(ckpt: str | Path, **settings: Any) -> FADeRModule:
    """A stage-2 module on a stage-1 checkpoint with ``conf/``'s settings, some replaced by ``settings``.

    The stage-1 model is loaded as a ``stage=fader`` job loads it: ``settings`` may hold the loading keys of the
    ``fader`` node (``expected_unet``, ``mask_cache_dir``, ``vit_weights``, ``allow_download``).
    """
    source = {key: settings.pop(key) for key in STAGE1_SOURCE_KEYS if key in settings}
    return FADeRModule.from_config(load_stage1(ckpt, "fader.ckpt_path", **source), **{**FADER_SETTINGS, **settings})


def compose_train_cfg(
    tmp_path: Path, overrides: list[str], data_root: Path | None = None, config_name: str = "train"
) -> DictConfig:
    """Compose conf/train.yaml (or another entry point's config) as the CLI would, with every path under tmp_path.

    Args:
        tmp_path: Folder for outputs, logs and caches.
        overrides: Command-line style overrides.
        data_root: Data dir (``paths.data_dir``); defaults to tmp_path / "data".
        config_name: ``train`` (fader-train) or ``eval`` (fader-eval).

    Returns:
        The config, with HydraConfig set so that ``train`` runs as under ``fader-train``.
    """
    # the default trains both stages; a test that names no stage (itself or through an experiment) tests stage 1 alone
    if config_name == "train" and not any(o.startswith(("stage=", "experiment=")) for o in overrides):
        overrides = [STAGE1_ONLY, *overrides]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.data_dir = str(data_root or tmp_path / "data")
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.output_dir = str(tmp_path / "out")
        cfg.hydra.runtime.output_dir = str(tmp_path / "out")
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "0"
    HydraConfig.instance().set_config(cfg)
    return cfg


def command_cfg(config_name: str, **values: Any) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` (``predict``, ``export``) with ``values`` set, as ``key=value`` would.

    Args:
        config_name: The command's config.
        **values: Keys of that config and their values (paths are turned into strings; unknown keys fail).

    Returns:
        The config.
    """
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name)
    for key, value in values.items():
        cfg[key] = str(value) if isinstance(value, Path) else value
    return cfg


def edit_checkpoint(
    source: str | Path, edit: Callable[[dict[str, Any]], None], target: str | Path | None = None
) -> Path:
    """Save a changed copy of a checkpoint as the project would have written it (its weights digest renewed).

    Args:
        source: The checkpoint.
        edit: Changes the loaded dictionary in place.
        target: Where to save it (default: over ``source``).

    Returns:
        The saved file.
    """
    import torch

    from fader_lightning.models.checkpoint_file import DIGEST_KEY, weights_digest

    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    checkpoint[DIGEST_KEY] = weights_digest(checkpoint)
    path = Path(target or source)
    torch.save(checkpoint, path)
    return path


def run_command(main: Callable[[], None], args: list[str]) -> int:
    """Run a Hydra app's ``main`` as its console script would, with ``args`` as its command line.

    Args:
        main: The ``@hydra.main`` function.
        args: The arguments.

    Returns:
        The exit code: 0 when ``main`` returned, else the code it exited with.
    """
    argv, handlers, level = sys.argv, logging.root.handlers[:], logging.root.level
    sys.argv = ["command", *args]
    try:
        main()
    except SystemExit as stop:
        return 0 if stop.code is None else int(stop.code)
    finally:  # Hydra configured logging for the job; the next test gets pytest's handlers back
        sys.argv = argv
        logging.root.handlers[:], logging.root.level = handlers, level
    return 0

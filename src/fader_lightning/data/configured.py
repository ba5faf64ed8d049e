"""Datamodules from the packaged configs: the values ``fader-train data=<name>`` gives, in one Python call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from fader_lightning.configs import CONFIG_DIR, build, config_file
from fader_lightning.data.datamodule import AnomalyDataModule
from fader_lightning.errors import ConfigError

BASE = "base"
"""``conf/data/base.yaml``: the settings every data config shares, not a dataset."""


def check_dataset(data: DictConfig | Mapping[str, Any], name: str | None = None) -> None:
    """Refuse a ``data`` node that is not a dataset (``data=base``, the shared settings alone).

    Args:
        data: The job's ``data`` node.
        name: The config's name, for the message.

    Raises:
        ConfigError: When the node names no datamodule (``_target_``).
    """
    if "_target_" not in data:
        raise ConfigError(
            f"data={name or BASE} holds the settings every data config shares, not a dataset; use data=mvtec, "
            "visa, folder or synthetic (conf/data/)"
        )


def from_config(name: str = "mvtec", **values: Any) -> AnomalyDataModule:
    """A datamodule built with the values a ``fader-train data=<name>`` job gives it, some replaced by ``values``.

    The config is composed as ``fader-train`` composes it (the recipe, the profile's input size, the seed, the caches
    under the current folder's ``logs/cache``), so a Python user never restates a YAML value.

    Example:
        >>> from fader_lightning.data import from_config
        >>> datamodule = from_config("mvtec", root="/data/mvtec_ad", category="bottle")

    Args:
        name: A config of ``conf/data/`` (``mvtec``, ``visa``, ``folder``, ``synthetic``).
        **values: Keys of that config to replace, e.g. ``root``, ``category``, ``image_size``.

    Returns:
        The datamodule (not set up).

    Raises:
        ConfigError: On an unknown config or key, or a value the datamodule refuses.
    """
    if name == BASE:
        check_dataset({}, name)
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"data={name}"])
    except HydraException as err:
        raise ConfigError(f"data={name} is not a config of conf/data/ ({err})") from err
    known = set(config_file(f"data/{name}"))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{unknown[0]} is not a key of conf/data/{name}.yaml; use one of: {', '.join(sorted(known - {'_target_'}))}"
        )
    with open_dict(cfg):
        for key, value in values.items():
            cfg.data[key] = value
    return build(OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True)))

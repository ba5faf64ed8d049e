"""Where the Hydra configs live: ``fader_lightning/conf``, shipped with the package.

In the source tree that folder is a link to the repository's ``conf/``, so an editable install reads ``conf/``
directly and an installed wheel (``pip install .``) carries its own copy; either way the commands and
:func:`fader_lightning.api.train` compose the same configs from any working directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")
"""str: The folder of ``train.yaml``, ``eval.yaml`` and the config groups."""


def literal_settings(name: str, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The values a config file states itself, for code that builds an object without composing a job.

    Benchmarks and tests build modules this way, so that a default lives in its YAML file only. Left out: the
    ``defaults`` list, keys starting with ``_``, values that interpolate others (``${...}``: they belong to a
    composed job), required values (``???``) and nodes that are objects to instantiate (with a ``_target_``).

    Args:
        name: The file under ``conf/`` without ``.yaml``, e.g. ``fader/default`` or ``model/ear``.
        exclude: Further keys to leave out.

    Returns:
        ``{key: value}`` as plain Python values.
    """
    node = OmegaConf.load(Path(CONFIG_DIR) / f"{name}.yaml")
    skipped = set(exclude) | {"defaults"}
    kept = {}
    for key in node:
        if key in skipped or str(key).startswith("_") or OmegaConf.is_interpolation(node, key):
            continue
        if OmegaConf.is_missing(node, key):  # ``???``: the command line must give it
            continue
        value = node[key]
        if OmegaConf.is_dict(value) and "_target_" in value:
            continue
        kept[str(key)] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return kept

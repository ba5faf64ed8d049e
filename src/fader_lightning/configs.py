"""Where the Hydra configs live: ``fader_lightning/conf``, shipped with the package.

In the source tree that folder is a link to the repository's ``conf/``, so an editable install reads ``conf/``
directly and an installed wheel (``pip install .``) carries its own copy; either way the commands and
:func:`fader_lightning.api.train` compose the same configs from any working directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from fader_lightning.errors import FaderError
from fader_lightning.run_layout import CHECKPOINTS, checkpoint_run

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")
"""str: The folder of ``train.yaml``, ``eval.yaml`` and the config groups."""


def working_dir() -> str:
    """The folder a command was started in: Hydra's ``runtime.cwd`` once Hydra has set its config, else the process's.

    ``conf/paths`` derives every path from it (``${fader_cwd:}``). Hydra's own ``${hydra:runtime.cwd}`` cannot be
    used there: a multirun resolves ``hydra.sweep.dir`` (which lies under ``paths.log_dir``) before it sets its
    config, so the sweep would fail before its first job.

    Returns:
        An absolute path.
    """
    if HydraConfig.initialized():
        cwd = HydraConfig.get().runtime.get("cwd")
        if cwd:
            return str(cwd)
    return os.getcwd()


def dataset_name(target: str) -> str:
    """A datamodule's short name for folder names: ``fader_lightning.data.MVTecADDataModule`` gives ``mvtecad``.

    Args:
        target: The ``_target_`` of a ``conf/data`` config.

    Returns:
        The class name without ``DataModule``, lower case.
    """
    return str(target).rsplit(".", 1)[-1].removesuffix("DataModule").lower()


def checkpoint_name(path: str | None) -> str:
    """A checkpoint's name for an evaluation folder: its run folder's name and stage, or its file name.

    Args:
        path: ``<runs>/<name>/<time>/checkpoints/<stage>/last.ckpt`` (or a link to its run), a sweep job's
            ``<sweep>/<num>_<name>/checkpoints/<stage>/last.ckpt``, or any other file.

    Returns:
        ``<name>-<stage>`` for a checkpoint inside a run folder, else the file's stem (``checkpoint`` without one).
    """
    if not path:
        return "checkpoint"
    path = Path(str(path)).resolve()  # through links such as logs/train/runs/latest
    run = checkpoint_run(path) if len(path.parents) > 3 else None
    if run is not None:
        job = re.fullmatch(r"\d+_(.+)", run.name)
        name = job[1] if job and (run.parent / "multirun.yaml").is_file() else run.parent.name
        return f"{name}-{path.parent.name}"
    return path.stem


def resumed_run(ckpt_path: str | None) -> str | None:
    """The run folder that wrote a stage-1 checkpoint ``<run>/checkpoints/ear/<file>``, or ``None``.

    ``conf/train.yaml``'s ``resume_dir``: a resume (``ckpt_path=...``) runs there, through links such as
    ``runs/latest``.

    Args:
        ckpt_path: The job's ``ckpt_path`` (``None`` for a new run).

    Returns:
        The absolute run folder, or ``None`` when there is no ``ckpt_path`` or it does not lie in a run's
        ``checkpoints/ear/``.
    """
    if not ckpt_path:
        return None
    real = Path(os.path.expanduser(str(ckpt_path))).resolve()
    if real.parent.name != "ear" or real.parent.parent.name != CHECKPOINTS:
        return None
    return str(real.parents[2])


def category_name(category: Any) -> str:
    """``data.category`` in folder, run and W&B names: the category, or ``a+b+c`` for a unified run's list."""
    if isinstance(category, ListConfig | list | tuple):
        return "+".join(map(str, category))
    return str(category)


def synthetic_dir(layout: str) -> str:
    """The folder of ``data=synthetic``'s tree: ``synthetic`` (MVTec AD layout), else ``synthetic_<layout>``."""
    return "synthetic" if layout == "mvtec" else f"synthetic_{layout}"


def first_set(value: Any, default: Any) -> Any:
    """``value`` unless it is ``None``, else ``default`` (``oc.select`` returns a key's ``null`` as it is)."""
    return default if value is None else value


# the resolvers of conf/ (paths and folder names); every command and the API import this module before composing
OmegaConf.register_new_resolver("fader_cwd", working_dir, replace=True)
OmegaConf.register_new_resolver("fader_dataset", dataset_name, replace=True)
OmegaConf.register_new_resolver("fader_checkpoint", checkpoint_name, replace=True)
OmegaConf.register_new_resolver("fader_resumed_run", resumed_run, replace=True)
OmegaConf.register_new_resolver("fader_or", first_set, replace=True)
OmegaConf.register_new_resolver("fader_category", category_name, replace=True)
OmegaConf.register_new_resolver("fader_synthetic_dir", synthetic_dir, replace=True)


def config_file(name: str) -> DictConfig:
    """A config file of ``conf/`` with the same-group configs its ``defaults`` list names merged in, uncomposed.

    What Hydra makes of the file inside a job, before interpolations resolve: ``config_file("data/mvtec")`` holds
    ``conf/data/base.yaml``'s keys and then its own. Entries that choose a sub-group (``- scheduler: null``) fill
    their own node when a job is composed and are left out here.

    Args:
        name: The file under ``conf/`` without ``.yaml``, e.g. ``data/mvtec``.

    Returns:
        The merged node, without its ``defaults`` list.

    """
    path = Path(CONFIG_DIR) / f"{name}.yaml"
    node = OmegaConf.load(path)
    defaults = node.pop("defaults", ["_self_"]) if isinstance(node, DictConfig) else ["_self_"]
    merged = OmegaConf.create()
    group = str(Path(name).parent)
    for entry in defaults if "_self_" in defaults else [*defaults, "_self_"]:
        if entry == "_self_":
            merged.merge_with(node)
        elif isinstance(entry, str):
            merged.merge_with(config_file(f"{group}/{entry}"))
    return merged


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
    node = config_file(name)
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


def build(spec: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets project errors through unwrapped, so users see their message.

    Args:
        spec: Config node with a ``_target_``.
        **kwargs: Extra arguments.

    Returns:
        The object.

    Raises:
        FaderError: The project error raised by the target's constructor.
    """
    try:
        return instantiate(spec, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, FaderError):
            raise err.__cause__ from None
        raise


KEEP_NODES: dict[str, tuple[str, str | None]] = {
    "scoring": ("model/ear", "scoring"),
    "speed": ("model/ear", "speed"),
    "calibration": ("calibration/default", None),
}
"""The ``keep`` config group: for each option, the file and node whose keys it repeats (``None``: the whole file)."""


def keep_node(name: str) -> dict[str, None]:
    """A node with the keys of a training setting, each ``null``: what ``fader-eval`` and ``fader-predict`` may replace.

    ``null`` keeps the checkpoint's value. The keys are read from the training config (:data:`KEEP_NODES`), so the
    commands that re-score a checkpoint accept exactly the keys training has, never a copy that drifts.

    Args:
        name: An option of :data:`KEEP_NODES` (``scoring``, ``speed``, ``calibration``).

    Returns:
        ``{key: None}`` for every key of that node.
    """
    file, node = KEEP_NODES[name]
    settings = config_file(file)
    return dict.fromkeys(str(key) for key in (settings[node] if node else settings) if key != "defaults")


for _name in KEEP_NODES:
    ConfigStore.instance().store(group="keep", name=_name, node=keep_node(_name))

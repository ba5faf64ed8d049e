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

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

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
    if len(path.parents) > 3 and path.parent.parent.name == "checkpoints":
        run = path.parents[2]
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
    if real.parent.name != "ear" or real.parent.parent.name != "checkpoints":
        return None
    return str(real.parents[2])


def first_set(value: Any, default: Any) -> Any:
    """``value`` unless it is ``None``, else ``default`` (``oc.select`` returns a key's ``null`` as it is)."""
    return default if value is None else value


# the resolvers of conf/ (paths and folder names); every command and the API import this module before composing
OmegaConf.register_new_resolver("fader_cwd", working_dir, replace=True)
OmegaConf.register_new_resolver("fader_dataset", dataset_name, replace=True)
OmegaConf.register_new_resolver("fader_checkpoint", checkpoint_name, replace=True)
OmegaConf.register_new_resolver("fader_resumed_run", resumed_run, replace=True)
OmegaConf.register_new_resolver("fader_or", first_set, replace=True)


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

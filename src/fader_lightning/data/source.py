"""What a checkpoint records of the data it was trained on, and that record read back as untrusted input.

A checkpoint states its data (the datamodule, its root or folders, category and split settings) so that
``fader-eval`` tests a copied checkpoint on the right data. Reading it back never instantiates anything the file
names: the datamodule must be one of the packaged ``conf/data/*.yaml`` configs, only the plain values of keys that
config has are taken, and everything else (the class, the caches, batch sizes, where files are written) comes from
the packaged config and the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fader_lightning.configs import CONFIG_DIR, config_file
from fader_lightning.errors import CheckpointError

RECORD_KEY = "data_source"
"""Hyper-parameter of both stage modules that holds the record."""
JOB_KEYS = frozenset(
    {"train_batch_size", "eval_batch_size", "num_workers", "train_augmentations", "check_cache", "image_cache"}
)
"""Data keys that belong to the job that runs, not to the data: never recorded, never read back."""
MODEL_KEYS = frozenset({"image_size", "interpolation"})
"""Data keys the model states itself (its input): recorded elsewhere in the checkpoint."""
PATH_KEYS = ("root", "normal_dir", "abnormal_dir", "mask_dir", "split_csv")
"""Keys whose values are files or folders that must exist where the record is used."""
Plain = str | int | float | bool | None


@cache
def packaged_groups() -> dict[str, tuple[str, frozenset[str]]]:
    """The packaged data configs: ``{_target_: (group name, its keys)}``."""
    groups = {}
    for path in sorted(Path(CONFIG_DIR, "data").glob("*.yaml")):
        node = config_file(f"data/{path.stem}")
        if "_target_" in node:  # base.yaml holds the shared keys only
            groups[str(node["_target_"])] = (path.stem, frozenset(str(key) for key in node if key != "_target_"))
    return groups


def data_record(data: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The record of a job's data config, as plain values: its datamodule and the keys that say what the data is.

    Args:
        data: The job's ``data`` node (resolved here).

    Returns:
        ``{"_target_": ..., "root": ..., "category": ..., ...}`` without the job's keys (:data:`JOB_KEYS`) and the
        model's (:data:`MODEL_KEYS`).
    """
    values = OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else dict(data)
    return {key: value for key, value in values.items() if key not in JOB_KEYS | MODEL_KEYS}


def _plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, Plain) and not _interpolates(item) for item in value)
    return isinstance(value, Plain) and not _interpolates(value)


def _interpolates(value: Plain) -> bool:
    return isinstance(value, str) and "${" in value


def read_record(record: Any, path: str | Path) -> tuple[str, dict[str, Any]]:
    """Check a checkpoint's data record and return the packaged config it names with the values it may set.

    Args:
        record: The record as stored (untrusted).
        path: The checkpoint, for messages.

    Returns:
        The ``conf/data`` group name and ``{key: value}`` of plain values for keys that group has.

    Raises:
        CheckpointError: When the record is not a mapping, names a datamodule that is not a packaged config, or holds
            a key that config lacks or a value that is not plain (a mapping, an object, an interpolation).
    """
    fix = "give the data yourself: data=<mvtec|visa|folder|synthetic> data.root=... data.category=..."
    if not isinstance(record, Mapping):
        raise CheckpointError(f"{path} records its data as a {type(record).__name__}, not a mapping; {fix}")
    target = record.get("_target_")
    if target not in packaged_groups():
        raise CheckpointError(
            f"{path} records its datamodule as {target!r}, which is none of the packaged data configs "
            f"({', '.join(group for group, _ in packaged_groups().values())}); nothing it names is run. {fix}"
        )
    group, keys = packaged_groups()[target]
    values = {key: value for key, value in record.items() if key != "_target_"}
    bad = sorted(str(key) for key, value in values.items() if key not in keys or key in JOB_KEYS or not _plain(value))
    if bad:
        raise CheckpointError(
            f"{path} records data settings that data={group} does not take as plain values: {', '.join(bad)}; "
            f"nothing in it is used. {fix}"
        )
    return group, {key: value for key, value in values.items() if key not in MODEL_KEYS}


def describe(group: str, values: Mapping[str, Any]) -> str:
    """The record as the command-line overrides that choose the same data: ``data=mvtec data.root=... ...``."""

    def override(value: Any) -> str:  # a unified run's categories as they are typed: 'data.category=[a,b]'
        return f"'[{','.join(map(str, value))}]'" if isinstance(value, list) else str(value)

    shown = [f"data.{key}={override(values[key])}" for key in (*PATH_KEYS, "category") if values.get(key) is not None]
    return " ".join([f"data={group}", *shown])


def missing_paths(values: Mapping[str, Any]) -> list[str]:
    """The recorded files and folders (:data:`PATH_KEYS`) that do not exist here, as ``key=path``."""
    return [f"data.{key}={values[key]}" for key in PATH_KEYS if values.get(key) and not Path(values[key]).exists()]

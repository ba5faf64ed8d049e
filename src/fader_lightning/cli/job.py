"""What every Hydra command does around its job: project errors end it with their message, and sweeps go on."""

from __future__ import annotations

import errno
import logging
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fader_lightning.errors import ConfigError, FaderError
from fader_lightning.utils.io import atomic_write_text
from fader_lightning.utils.latest import link_latest

log = logging.getLogger(__name__)
# conf/hydra/launcher/joblib.yaml deliberately shares the joblib plugin's name, so that
# `hydra/launcher=joblib` picks our defaults; Hydra warns about that name match on every compose.
warnings.filterwarnings(
    "ignore", message=".*is validated against ConfigStore schema with the same name", category=UserWarning
)
# data.val_policy=none returns no validation loader on purpose.
warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")
warnings.filterwarnings("ignore", message=".*`validation_step`.*")
# Lightning's tree flattening uses torch's deprecated LeafSpec; nothing a user of this project can change
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
# a run folder holds checkpoints only when it is this run's own, resumed or redone (fader_lightning.run_dir)
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# stage 2 keeps its frozen stage-1 model in eval mode on purpose
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


def require(cfg: DictConfig) -> None:
    """Check that the command line gave every required top-level key (``???`` in the config).

    Args:
        cfg: Composed config.

    Raises:
        ConfigError: Naming the missing keys.
    """
    missing = [str(key) for key in cfg if OmegaConf.is_missing(cfg, key)]
    if missing:
        app = HydraConfig.get().help.app_name if HydraConfig.initialized() else "the command"
        raise ConfigError(f"missing {', '.join(f'{key}=...' for key in missing)}; {app} --help lists every key")


def link_run(cfg: DictConfig, output_dir: Path) -> None:
    """Point ``logs/<task>/latest`` at this job's run folder, or at its sweep folder in a multirun.

    ``logs/<task>/runs/latest`` and ``logs/<task>/multiruns/latest`` keep the newest of each kind, so that a command
    that needs a single run (``runs/latest/checkpoints/...``) still finds one after a sweep.

    Args:
        cfg: Composed config (``paths.log_dir``, ``task_name``).
        output_dir: The job's run folder.
    """
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    task_dir = Path(cfg.paths.log_dir) / cfg.task_name
    target = Path(HydraConfig.get().sweep.dir if multirun else output_dir).resolve()
    link_latest(task_dir, target)
    if target.is_relative_to(task_dir.resolve()):  # not for a hydra.run.dir outside logs/
        link_latest(task_dir / target.relative_to(task_dir.resolve()).parts[0], target)


STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
"""Write failures of the storage itself (full disk, quota, read-only or size-limited file system): no bug to trace."""


def storage_message(err: OSError) -> str:
    """One line for a write that the storage refused: what, where, and what to do."""
    where = f" writing {err.filename}" if err.filename else ""
    return (
        f"OSError: {err.strerror or err}{where}. Free space there, or write elsewhere (paths.log_dir=..., "
        "hydra.run.dir=..., paths.cache_dir=...); the run's metrics.json records the stage that failed, where it "
        "could still be written"
    )


HYDRA_RECORD = ".hydra"
"""Hydra's record of a job in its run folder: ``config.yaml``, ``hydra.yaml`` and ``overrides.yaml``."""


def record_config(cfg: DictConfig, output_dir: Path) -> None:
    """Write Hydra's record of the job into its run folder, once the folder checks have passed.

    ``conf/hydra/default.yaml`` turns Hydra's own writing off (``output_subdir: null``): Hydra writes the record
    before the job starts, so a job refused for its folder would have rewritten the record of the run it refused to
    touch. The files are Hydra's own (``fader-aggregate`` places a job in its sweep by them); ``config.yaml`` holds
    what the job runs, with what it took from a checkpoint.

    Args:
        cfg: The job's config.
        output_dir: Its run folder.

    Raises:
        ConfigError: When ``.hydra`` in the folder is a file or a link.
    """
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    folder = output_dir / HYDRA_RECORD
    if (folder.exists() and not folder.is_dir()) or folder.is_symlink():
        raise ConfigError(f"{folder} is not a folder: Hydra's record of the job goes there; move it away")
    folder.mkdir(parents=True, exist_ok=True)
    job = OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key != "hydra"])
    atomic_write_text(folder / "config.yaml", OmegaConf.to_yaml(job))
    atomic_write_text(folder / "hydra.yaml", OmegaConf.to_yaml({"hydra": OmegaConf.to_container(hydra_cfg)}))
    atomic_write_text(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.to_container(hydra_cfg.overrides.task)))


def run_job(job: Callable[[DictConfig], Any], cfg: DictConfig) -> None:
    """Run a Hydra job; a project error, or storage that refuses a write (a full disk), ends it in one message.

    In a multirun a failed job is logged and the sweep goes on with the next job.

    Args:
        job: What the job does with its config.
        cfg: Composed config.
    """
    try:
        require(cfg)
        job(cfg)
    except FaderError as err:
        log.error("%s: %s", type(err).__name__, err)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            sys.exit(1)
    except Exception as err:
        if isinstance(err, OSError) and err.errno in STORAGE_ERRORS:
            log.error("%s", storage_message(err))
            if HydraConfig.get().mode != RunMode.MULTIRUN:
                sys.exit(1)
            return
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        log.error("job failed; the sweep goes on:\n%s", traceback.format_exc())

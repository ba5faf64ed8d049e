"""What every Hydra command does around its job: project errors end it with their message, and sweeps go on."""

from __future__ import annotations

import errno
import logging
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fader_lightning.errors import ConfigError, FaderError

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
# a run folder holds checkpoints only when it is this run's own, resumed or redone (fader_lightning.jobs.run_dir)
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

"""What every Hydra command does around its job: project errors end it with their message, and sweeps go on."""

from __future__ import annotations

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


def run_job(job: Callable[[DictConfig], Any], cfg: DictConfig) -> None:
    """Run a Hydra job; a project error ends it with its message, not a traceback.

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
    except Exception:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        log.error("job failed; the sweep goes on:\n%s", traceback.format_exc())

"""Python API for notebooks and services: score images with a checkpoint, train from the packaged configs.

Example:
    >>> from fader_lightning.api import Detector, train
    >>> results = train(["data=mvtec", "data.root=/data/mvtec_ad", "data.category=bottle", "stage=both"])
    >>> detector = Detector.from_checkpoint(results["fader"]["checkpoint"])
    >>> for detection in detector.predict(["a.png", "b.png"]):
    ...     print(detection.score, detection.calibrated_score, detection.label)

:class:`~fader_lightning.deploy.detector.Detector` lives in :mod:`fader_lightning.deploy.detector`;
:func:`train` runs the job of ``fader-train`` (:func:`fader_lightning.jobs.train.train`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import OmegaConf, open_dict

from fader_lightning.configs import CONFIG_DIR
from fader_lightning.deploy.detector import Detection, Detector, ImageLike
from fader_lightning.errors import ConfigError
from fader_lightning.jobs.train import train as run_train

__all__ = ["Detection", "Detector", "ImageLike", "train"]

log = logging.getLogger(__name__)


def train(overrides: Sequence[str] = (), output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train (and test) one job from the packaged configs, as ``fader-train`` with the same overrides would.

    Args:
        overrides: Command-line style overrides, e.g. ``["data.category=bottle", "stage=both"]``.
        output_dir: The run folder; by default ``hydra.run.dir``, as for ``fader-train``:
            ``logs/<task_name>/runs/<dataset>-<category>-<masking>-s<seed>/<time>`` under ``paths.root_dir`` (the
            current folder unless ``FADER_ROOT`` is set).

    Returns:
        ``{stage: entry}`` as written to the run's ``metrics.json`` (each entry names its ``checkpoint``).

    Raises:
        ConfigError: On an override that does not compose, or a sweep (run sweeps with ``fader-train -m``).
    """
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="train"):
            cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    except HydraException as err:
        raise ConfigError(f"the overrides {list(overrides)} do not compose: {err}") from err
    if cfg.hydra.mode is not None and str(cfg.hydra.mode).endswith("MULTIRUN"):
        raise ConfigError("train() runs one job; this config is a sweep: run it with fader-train -m")
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.job.num, cfg.hydra.job.id = 0, "0"  # a single job, as in a fader-train run
    HydraConfig.instance().set_config(cfg)  # resolves paths.* and hydra.run.dir as in a fader-train job
    run_dir = Path(output_dir or cfg.hydra.run.dir).resolve()
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.paths.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # the job's config, as Hydra hands it to fader-train
    log.info("training in %s", run_dir)
    return run_train(cfg)

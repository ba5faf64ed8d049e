"""``fader-train``: fit and test one category with the composed Hydra config.

Examples:
    fader-train data=mvtec data.root=/data/mvtec_ad data.category=bottle masking=saliency
    fader-train -m data.category=bottle,grid masking=saliency,checkerboard

The job is :func:`fader_lightning.jobs.train.train`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fader_lightning.cli.job import run_job
from fader_lightning.configs import CONFIG_DIR
from fader_lightning.jobs.train import train


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``fader-train`` (see :func:`run_job`)."""
    run_job(train, cfg)


if __name__ == "__main__":
    main()

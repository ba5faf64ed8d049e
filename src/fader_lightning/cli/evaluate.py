"""``fader-eval``: test a trained checkpoint (stage 1 or FADeR) on any datamodule, like a training run's test pass.

Examples:
    fader-eval ckpt_path=logs/train/runs/<run>/checkpoints/fader/last.ckpt
    fader-eval ckpt_path=<run>/checkpoints/ear/last.ckpt data=mvtec data.root=/data/mvtec_ad data.category=grid
    fader-eval -m ckpt_path=<run>/checkpoints/fader/last.ckpt logger=wandb scoring.normalize=none,zscore

Without ``data=``, a checkpoint is tested on the data it records (its datamodule, root, category and split settings:
a copy anywhere works while that data is here), so its test metrics are reproduced; ``data.*`` overrides change that
data (``data.root=...`` where it lives elsewhere), and ``data=...`` chooses other data. Nothing a checkpoint or a run
folder holds is ever instantiated. The run folder (``logs/eval/runs/<checkpoint's run>-<stage>/<time>``) gets
``metrics.json`` (one entry for the checkpoint's stage, with the checkpoint path), overlays and the configured loggers'
files. The model's input size and resize method are the
checkpoint's; its scoring, normal-map statistics and thresholds too, unless ``scoring.*`` replaces them; and how its
U-Net runs, unless ``speed.*`` says otherwise (``speed.bf16=true`` on a GPU or an AMX CPU).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fader_lightning.cli.job import run_job
from fader_lightning.configs import CONFIG_DIR
from fader_lightning.jobs.evaluate import evaluate


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``fader-eval`` (see :func:`~fader_lightning.cli.job.run_job`)."""
    run_job(evaluate, cfg)


if __name__ == "__main__":
    main()

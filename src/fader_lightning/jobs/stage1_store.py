"""A store of trained stage-1 checkpoints, keyed by everything that changes the trained weights.

Sweeps that vary only FADeR settings (the ablations) or only evaluation settings find the stage-1
model of their (data, model, masking, seed, epochs) there instead of training it again. The key includes the
SHA-256 digests of the training files' bytes, so a changed, added or removed training image trains again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fader_lightning.data.datamodule import AnomalyDataModule
from fader_lightning.data.verify import file_digest

log = logging.getLogger(__name__)

# Settings that never change the trained stage-1 weights.
_DATA_IGNORED = ("num_workers", "eval_batch_size", "check_cache", "image_cache")
_MODEL_IGNORED = ("mask_cache_dir", "fpr_limit", "map_storage", "scoring")
# Trainer settings that change what stage 1 learns.
_TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "max_time",
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "limit_train_batches",
    "overfit_batches",
    "fast_dev_run",
)


def training_files_digest(datamodule: AnomalyDataModule) -> str:
    """A digest of the training split's files: the digest of each image's and mask's bytes, in table order.

    The files are hashed on the job's threads (hashlib releases the GIL), and the digests are those
    :func:`~fader_lightning.data.verify.file_digest` remembers in the process, so the data check and the image cache
    of the job's setup reuse them instead of hashing the files again.

    Args:
        datamodule: The data module (not necessarily set up: its sample table is built here).

    Returns:
        A hex digest.
    """
    files = [path for s in datamodule.make_samples() if s.split == "train" for path in (s.image_path, s.mask_path)]
    with ThreadPoolExecutor(max_workers=max(1, min(8, torch.get_num_threads()))) as pool:
        digests = pool.map(lambda path: "-" if path is None else file_digest(path), files)
        return hashlib.sha256(" ".join(digests).encode()).hexdigest()


def stage1_key(cfg: DictConfig, datamodule: AnomalyDataModule) -> str:
    """Hash the settings that determine a stage-1 model, and the training files' bytes.

    Args:
        cfg: Full training config.
        datamodule: The job's data module, whose training files are hashed (listed, not decoded).

    Returns:
        A 20-character hex key.
    """
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in _DATA_IGNORED}
    model = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k not in _MODEL_IGNORED}
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    settings: dict[str, Any] = {
        "data": data,
        "model": model,
        "seed": cfg.seed,
        "trainer": {k: trainer.get(k) for k in _TRAINER_KEYS},
        "train_files": training_files_digest(datamodule),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


def lookup(store_dir: str | Path, key: str) -> Path | None:
    """Return the stored checkpoint of a key, if any.

    Args:
        store_dir: Store folder.
        key: Output of :func:`stage1_key`.

    Returns:
        The checkpoint path, or ``None``.
    """
    path = Path(store_dir) / f"{key}.ckpt"
    return path if path.is_file() else None


def save(store_dir: str | Path, key: str, checkpoint: str | Path) -> Path:
    """Copy a checkpoint into the store atomically (a crash never leaves a partial file).

    Args:
        store_dir: Store folder.
        key: Output of :func:`stage1_key`.
        checkpoint: Checkpoint to copy (a link is followed).

    Returns:
        The stored path.
    """
    target = Path(store_dir) / f"{key}.ckpt"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(Path(checkpoint).resolve(), tmp)
    os.replace(tmp, target)
    log.info("stage-1 checkpoint stored as %s", target)
    return target

"""The stage-1 store key follows the training files' bytes, not their names, sizes or times."""

import os
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from PIL import Image

from conftest import compose_train_cfg
from fader_lightning.jobs.stage1_store import stage1_key

SMALL_DATA = ["data.image_size=32", "data.n_train=8", "data.n_test_good=4", "data.n_test_defect=2", "data.size=64"]


def _rewrite(image: Path, pixels: np.ndarray) -> None:
    """Write other pixels into an image, then restore its times, as ``touch -r`` or ``cp -p`` would."""
    before = image.stat()
    Image.fromarray(pixels).save(image)
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_the_key_changes_with_a_training_images_content_only(tmp_path: Path) -> None:
    cfg = compose_train_cfg(tmp_path, [*SMALL_DATA, "reuse_stage1=true"])
    key = stage1_key(cfg, instantiate(cfg.data))  # generates the synthetic tree
    category = Path(cfg.data.root) / cfg.data.category
    train_image = sorted((category / "train/good").glob("*.png"))[0]
    os.utime(train_image, ns=(10**9, 10**9))
    assert stage1_key(cfg, instantiate(cfg.data)) == key  # nothing changed but a time: the stored model still fits

    test_image = sorted((category / "test/good").glob("*.png"))[0]
    with Image.open(test_image) as image:
        _rewrite(test_image, 255 - np.asarray(image))
    assert stage1_key(cfg, instantiate(cfg.data)) == key  # the test split never trains stage 1

    with Image.open(train_image) as image:
        pixels = np.asarray(image)
    _rewrite(train_image, 255 - pixels)
    assert (
        stage1_key(cfg, instantiate(cfg.data)) != key
    )  # a changed training image trains again, whatever its mtime says
    _rewrite(train_image, pixels)
    assert stage1_key(cfg, instantiate(cfg.data)) == key  # the original bytes find the original model again

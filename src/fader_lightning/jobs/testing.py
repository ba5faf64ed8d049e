"""The test pass of a stage: one category, or a unified model tested per category.

A unified model (``data.category=[a,b,c]``) is tested three ways, each recorded in the stage's entry:

* ``per_category.<c>.metrics``: on category ``c``'s test images, with the normal-map statistics (``zscore``) and the
  thresholds measured on ``c``'s own normal images: the setting where the category of an image is known at test time
  (an inspection line that knows which product it sees). ``metrics`` is their mean over the categories.
* ``per_category.<c>.metrics_category_free``: the same images scored with the statistics and thresholds measured on
  the normal images of every category together, as when the category is not known. ``metrics_category_free`` is
  their mean.
* ``metrics_pooled``: every test image of every category in one ranking, category-free.

Test labels never choose anything: every statistic and threshold comes from normal training images.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L

from fader_lightning.data.datamodule import AnomalyDataModule
from fader_lightning.keys import IMAGE_AUROC
from fader_lightning.models.base_module import AnomalyModule

log = logging.getLogger(__name__)

CATEGORY_FREE = "category_free"
"""Label of the passes scored with the statistics and thresholds of every category together."""


def test_stage(trainer: L.Trainer, model: AnomalyModule, datamodule: AnomalyDataModule) -> dict[str, Any]:
    """Run the test split and return what a results entry records of it.

    Args:
        trainer: The trainer.
        model: The stage module.
        datamodule: The data (one category, or several for a unified model: see the module docstring).

    Returns:
        ``metrics``, ``diagnostics``, ``test_images``, ``test_ms_per_image`` and ``calibration``; for a unified model
        also ``categories``, ``per_category``, ``metrics_category_free`` and ``metrics_pooled``.
    """
    if not datamodule.unified:
        return test_pass(trainer, model, datamodule)
    return test_unified(trainer, model, datamodule)


def test_pass(trainer: L.Trainer, model: AnomalyModule, datamodule: AnomalyDataModule) -> dict[str, Any]:
    """One test pass over a datamodule's test split (calibrating first where the model is not calibrated).

    Args:
        trainer: The trainer.
        model: The stage module.
        datamodule: The data.

    Returns:
        ``metrics``, ``diagnostics``, ``test_images``, ``test_ms_per_image`` and ``calibration``.
    """
    start = time.perf_counter()
    trainer.test(model, datamodule=datamodule, verbose=False)
    test_seconds = time.perf_counter() - start
    images = len(datamodule.test_samples)
    return {
        "metrics": model.test_metrics,
        "diagnostics": model.test_diagnostics,
        "test_images": images,
        "test_ms_per_image": round(1000 * test_seconds / max(images, 1), 3),
        "calibration": model.calibration,
    }


def mean_metrics(per_category: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over categories; NaN where a category's metric is undefined (one class only).

    Args:
        per_category: Each category's metrics.

    Returns:
        ``{metric: mean}`` over the metrics every category has.
    """
    keys = [key for key in per_category[0] if all(key in metrics for metrics in per_category)]
    means = {}
    for key in keys:
        values = [float(metrics[key]) for metrics in per_category]
        means[key] = math.nan if any(math.isnan(v) for v in values) else sum(values) / len(values)
    return means


def test_unified(trainer: L.Trainer, model: AnomalyModule, datamodule: AnomalyDataModule) -> dict[str, Any]:
    """Test a unified model: pooled, then per category category-free, then per category with its own calibration.

    The model's own calibration (on the normals of every category, as trained) is what its scorer keeps afterwards;
    each category's statistics and thresholds go to the module's ``category_scoring`` (so into the checkpoint the job
    writes next), and its calibration to the entry's ``per_category.<c>.calibration``.

    Args:
        trainer: The trainer.
        model: The stage module (trained on every category of ``datamodule``).
        datamodule: The unified data, set up by the fit (or set up here).

    Returns:
        The entry's test fields (see the module docstring).
    """
    datamodule.setup("test")
    model.test_label = "pooled"
    try:
        pooled = test_pass(trainer, model, datamodule)  # calibrates on every category's normals when uncalibrated
        shared_state, shared_calibration = model.scorer.calibrated_state(), dict(model.calibration)
        per_category: dict[str, dict[str, Any]] = {}
        for category in datamodule.categories:
            view = datamodule.category_view(category)
            model.test_label, model.collect_samples = f"{category}/{CATEGORY_FREE}", False
            free = test_pass(trainer, model, view)
            model.scorer.clear_statistics()  # measured again on this category's normals by the test pass
            model.scorer.clear_thresholds()
            model.calibration = {}
            model.test_label, model.collect_samples = category, True
            own = test_pass(trainer, model, view)
            model.category_scoring[category] = model.scorer.calibrated_state()
            per_category[category] = {**own, "metrics_category_free": free["metrics"],
                                      "diagnostics_category_free": free["diagnostics"]}  # fmt: skip
            model.scorer.restore(shared_state)
            model.calibration = dict(shared_calibration)
    finally:
        model.test_label, model.collect_samples = None, True
    rows = list(per_category.values())
    own, free = mean_metrics([r["metrics"] for r in rows]), mean_metrics([r["metrics_category_free"] for r in rows])
    log.info("unified model over %d categories: mean image AUROC %.4f with each category's calibration, %.4f "
             "category-free, %.4f pooled", len(rows), own.get(IMAGE_AUROC, math.nan), free.get(IMAGE_AUROC, math.nan),
             pooled["metrics"].get(IMAGE_AUROC, math.nan))  # fmt: skip
    return {
        "metrics": own,
        "metrics_category_free": free,
        "metrics_pooled": pooled["metrics"],
        "diagnostics": pooled["diagnostics"],
        "test_images": pooled["test_images"],
        "test_ms_per_image": pooled["test_ms_per_image"],
        "calibration": shared_calibration,
        "categories": list(datamodule.categories),
        "per_category": per_category,
    }

"""Lightning glue shared by both stages: test metrics from one score store, predict, NaN guard."""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import lightning as L
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor

from fader_lightning.data.dataset import Batch
from fader_lightning.data.source import RECORD_KEY
from fader_lightning.data.transforms import checkpoint_size
from fader_lightning.errors import ConfigError, TrainingError, settings_of
from fader_lightning.metrics import AnomalyScoreStore
from fader_lightning.metrics.diagnostics import TestDiagnostics
from fader_lightning.models.calibration import CALIBRATION_KEY, Calibration, ratio_for
from fader_lightning.models.checkpoint_file import (
    CATEGORY_SCORING_KEY,
    DIGEST_KEY,
    STAGE_KEY,
    refresh_weights,
    restore_frozen,
    strip_frozen,
    weights_digest,
)
from fader_lightning.models.fit_check import check_minimum_size
from fader_lightning.models.scoring import AnomalyScorer, MapStatistics, rebuild_scorer

if TYPE_CHECKING:  # the stage modules build the EAR model; the base only names its type
    from fader_lightning.models.ear.model import EARModel

log = logging.getLogger(__name__)

Optimizer = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
"""A partial optimizer (Hydra ``_partial_: true``): parameters in, optimizer out."""
Scheduler = Callable[[torch.optim.Optimizer], Any]
"""A partial learning-rate scheduler: optimizer in, scheduler out."""


def plain(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Turn a (possibly Hydra) mapping into a plain dict, so checkpoints do not depend on OmegaConf.

    Args:
        settings: Mapping or ``None``.

    Returns:
        A plain dict (empty for ``None``).
    """
    if settings is None:
        return {}
    if isinstance(settings, DictConfig):
        return OmegaConf.to_container(settings, resolve=True)
    return {key: OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value
            for key, value in settings.items()}  # fmt: skip


def check_enough(settings: Calibration, count: int, datamodule: Any, held_out: bool, training: bool = False) -> None:
    """Refuse a calibration with fewer normal images than its method needs, saying which setting gives them.

    Args:
        settings: The calibration settings.
        count: The normal images at hand (held-out ones, or training ones without a held-out split).
        datamodule: The datamodule that served them.
        held_out: Whether they were held out of training.
        training: Whether ``count`` counts the training images of ``seen_gap``.

    Raises:
        ConfigError: When ``count`` is too small.
    """
    need = settings.training_needed if training else settings.held_out_needed
    if count >= need:
        return
    what = f"calibration.method={settings.method} at calibration.target_fpr={settings.target_fpr:g}"
    if training:
        raise ConfigError(
            f"{what} needs the scores of {need} training images (1 / target_fpr) and the training split has {count}: "
            "raise calibration.target_fpr, or choose calibration.method=auto (max where the data is too small)"
        )
    if held_out and datamodule.val_policy == "official":
        have = f"the dataset's own validation split (data.val_policy=official) holds {count}"
        fix = f"data.val_policy=from_train with a data.val_ratio that holds out {need} training images"
    elif held_out:
        total = len(datamodule.train_samples) + count
        ratio = ratio_for(need, total)
        have = f"data.val_ratio={datamodule.val_ratio} holds out {count} of the {total} normal training images"
        fix = f"data.val_ratio={ratio} holds out {need}" if ratio else f"{total} training images cannot spare {need}"
    else:
        have = f"without held-out normals (data.val_policy={datamodule.val_policy}) it has the {count} training images"
        fix = "more normal training images are needed"
    others = {"quantile": "choose calibration.method=max or a larger calibration.target_fpr"}
    other = others.get(settings.method, "choose calibration.method=max")
    if need == 2 and settings.margin > 0:  # the margin's standard deviation, not the method, needs the second one
        other = "set calibration.margin=0"
    raise ConfigError(f"{what} needs {need} held-out normal images, and {have}: {fix}; or {other}")


EAR_PREFIX = "ear."
"""State-dict prefix of the EAR model in both stages' checkpoints."""
LEGACY_EAR_PREFIX = "model."
"""Its prefix in stage-1 checkpoints written before both stage modules named it ``ear`` (read until 2027-06-01)."""


class AnomalyModule(L.LightningModule):
    """Base of the stage modules.

    Subclasses implement :meth:`infer`. Testing stores every score and map once in an
    :class:`~fader_lightning.metrics.AnomalyScoreStore` (float16 maps on CPU by default), computes
    image/pixel AUROC, AUPRO and the oracle F1-max at the end, logs them under ``test/`` and keeps
    them in :attr:`test_metrics` for the result callbacks.

    Args:
        fpr_limit: FPR limit of AUPRO.
        map_storage: ``float16`` or ``float32`` storage of the test maps.
    """

    stage: str = "?"
    ear: EARModel
    """The EAR model (masks, obfuscation, U-Net, scorer): trained by stage 1, frozen under FADeR."""
    frozen_prefix: str = "?"
    """State-dict prefix of the frozen mask generator, left out of checkpoints and rebuilt from the settings."""
    LEGACY_HPARAMS: ClassVar[Mapping[str, Any]] = {}
    """What checkpoints written before a hyper-parameter existed were trained with. Used only to load such a
    checkpoint (:meth:`load_from_checkpoint`): modules built from a config get every value from ``conf/``."""

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``; a checkpoint that predates a hyper-parameter gets its legacy value.

        Args:
            checkpoint_path: The checkpoint file.
            *args: Lightning's positional arguments.
            **kwargs: Lightning's keyword arguments and hyper-parameters that replace the stored ones.

        Returns:
            The module.
        """
        if cls.LEGACY_HPARAMS and not args and Path(str(checkpoint_path)).is_file():  # a remote file: as stored
            weights_only = kwargs.get("weights_only") is not False
            stored = torch.load(checkpoint_path, map_location="cpu", weights_only=weights_only)
            stored = stored.get("hyper_parameters", {}) if isinstance(stored, dict) else {}
            kwargs = {**cls.legacy_kwargs(stored), **kwargs}
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    @classmethod
    def legacy_kwargs(cls, stored: Mapping[str, Any]) -> dict[str, Any]:
        """What a checkpoint that predates some hyper-parameters is loaded with: their legacy values.

        Args:
            stored: The checkpoint's hyper-parameters.

        Returns:
            Keyword arguments for the module.
        """
        return {key: value for key, value in cls.LEGACY_HPARAMS.items() if key not in stored}

    def __init__(self, fpr_limit: float, map_storage: str) -> None:
        super().__init__()
        self.fpr_limit = fpr_limit
        self.store = AnomalyScoreStore(map_dtype=map_storage, fpr_limit=fpr_limit)
        self.test_metrics: dict[str, float] = {}
        self.diagnostics = TestDiagnostics()
        self.test_diagnostics: dict[str, float | None] = {}
        self.calibration: dict[str, Any] = {}
        self.test_label: str | None = None
        """What a test pass is of, in a run that tests one model several ways (a unified model's category): its
        metrics are logged under ``test/<label>/`` and its overlays written to ``overlays/<stage>/<label>/``."""
        self.collect_samples = True
        """Whether this test pass feeds the overlay and sample callbacks."""
        self.category_scoring: dict[str, dict[str, Tensor]] = {}
        """A unified model's scoring state per category (statistics and thresholds of its normals), in checkpoints;
        the scorer itself holds the category-free state."""

    def set_evaluation(
        self, scoring: Mapping[str, Any], fpr_limit: float, map_storage: str, calibration: Mapping[str, Any]
    ) -> None:
        """Apply a job's evaluation settings to a loaded model (they never change trained weights).

        Other calibration settings than the model's drop its thresholds: they are calibrated again before testing. The
        EAR model's scorer is rebuilt with ``scoring`` (its statistics and thresholds kept where the settings allow).

        Args:
            scoring: Settings of :class:`~fader_lightning.models.scoring.AnomalyScorer`.
            fpr_limit: FPR limit of AUPRO.
            map_storage: Storage dtype of test maps.
            calibration: Settings of :class:`~fader_lightning.models.calibration.Calibration`.
        """
        with settings_of("calibration"):
            settings = Calibration.of(calibration)
        if settings != self.calibration_settings:
            self.scorer.clear_thresholds()
            self.calibration = {}
        self.hparams[CALIBRATION_KEY] = settings.as_dict()
        self.fpr_limit = fpr_limit
        self.store = AnomalyScoreStore(map_dtype=map_storage, fpr_limit=fpr_limit)
        self.hparams.update({"fpr_limit": fpr_limit, "map_storage": map_storage})
        self.ear.scorer = rebuild_scorer(self.ear.scorer, plain(scoring))
        self.record_scoring(plain(scoring))

    def use_category(self, category: str) -> None:
        """Score as the category's own model: its statistics and thresholds, measured on its normal images.

        Args:
            category: One of the categories of a unified model (:attr:`category_scoring`).

        Raises:
            ConfigError: For a category the model has no state of.
        """
        if category not in self.category_scoring:
            known = ", ".join(self.category_scoring) or "none: it was trained on one category"
            raise ConfigError(f"category={category!r} has no scoring state in this model; its categories: {known}")
        self.scorer.restore(self.category_scoring[category])
        self.calibration = {}

    def record_data(self, record: Mapping[str, Any]) -> None:
        """State the data the model is trained on in its hyper-parameters, so in every checkpoint it writes.

        Args:
            record: :func:`~fader_lightning.data.source.data_record` of the job's data.
        """
        self.hparams[RECORD_KEY] = dict(record)

    @property
    def data_source(self) -> dict[str, Any] | None:
        """The data the model was trained on, as its checkpoint records it, or ``None``.

        Untrusted: read it with :func:`~fader_lightning.data.source.read_record`. Under FADeR, its stage-1 model's
        record when it has none of its own.
        """
        return self.hparams.get(RECORD_KEY) or self.stage1_hparams.get(RECORD_KEY)

    @property
    @abstractmethod
    def stage1_hparams(self) -> dict[str, Any]:
        """The stage-1 hyper-parameters (masking, fill, scoring, ...); under FADeR its frozen model's."""

    @abstractmethod
    def record_scoring(self, scoring: dict[str, Any]) -> None:
        """Record scoring settings in the hyper-parameters, where the stage keeps its EAR model's settings."""

    @property
    def scorer(self) -> AnomalyScorer:
        """The scorer whose maps this stage reports: its EAR model's (under FADeR, measured on FADeR's maps)."""
        return self.ear.scorer

    @abstractmethod
    def infer(self, images: Tensor) -> dict[str, Tensor]:
        """Run inference on a batch.

        Args:
            images: Images ``(B, 3, H, W)`` in [0, 1].

        Returns:
            At least ``recon`` ``(B, 3, H, W)``, ``anomaly_map`` ``(B, 1, H, W)`` and ``score`` ``(B,)``;
            optionally ``masks`` and ``soft_mask`` for the overlays.
        """

    @property
    @abstractmethod
    def preprocessing(self) -> dict[str, Any]:
        """How the model's input images are made.

        ``image_size`` (``[height, width]``, or ``None`` in checkpoints that predate it) and ``interpolation``.
        """

    @property
    def trained_size(self) -> tuple[int, int] | None:
        """The ``(height, width)`` the model was trained at, or ``None`` when its checkpoint does not say."""
        size = self.preprocessing["image_size"]
        return (int(size[0]), int(size[1])) if size is not None else None

    def data_image_size(
        self, ear: EARModel, num_scales: int, trained: tuple[int, int] | None = None, force: bool = False
    ) -> tuple[int, int] | None:
        """The datamodule's image size, once checked against the trained one, the U-Net stride and MSGMS scales.

        Args:
            ear: The (trainable or frozen) EAR model.
            num_scales: Largest number of MSGMS scales the stage uses.
            trained: The size ``ear`` was trained at; another data size is an error unless forced. ``None``: not
                checked.
            force: Accept another data size (``force=true`` of a ``stage=fader`` job).

        Returns:
            ``(height, width)``, or ``None`` without a datamodule that states its size.

        Raises:
            ConfigError: When the size does not fit, or differs from ``trained``.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "image_size"):
            return None
        height, width = checkpoint_size(datamodule.image_size, trained, "data.image_size", force)
        ear.unet.check_input_size(height, width)
        check_minimum_size(height, width, ear.unet.stride, num_scales)
        return height, width

    def optimizers_with_schedule(self, params: Any) -> Any:
        """The configured optimizer and, when configured, its epoch schedule.

        Args:
            params: Parameters to train.

        Returns:
            What ``configure_optimizers`` returns to Lightning.

        Raises:
            ConfigError: When the module was built without an optimizer (a checkpoint loaded for inference).
        """
        factory = getattr(self, "optimizer_factory", None)
        if factory is None:
            group = "model" if self.stage == "ear" else self.stage
            raise ConfigError(
                f"{type(self).__name__} has no optimizer to train with; build it from the config ({group}.optimizer, "
                "a partial torch optimizer) or pass optimizer=functools.partial(torch.optim.Adam, lr=...)"
            )
        optimizer = factory(params)
        scheduler = getattr(self, "scheduler_factory", None)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler(optimizer), "interval": "epoch"}}

    def check_finite(self, loss: Tensor, name: str = "loss") -> Tensor:
        """Stop training with a clear message when a loss stops being finite.

        The last checkpoint written before this step (``last.ckpt``) is left untouched.

        Args:
            loss: The loss of this step.
            name: Its name, for the message.

        Returns:
            The loss, when finite.

        Raises:
            TrainingError: When the loss is NaN or infinite.
        """
        if not torch.isfinite(loss):
            raise TrainingError(
                f"{self.stage}: {name} became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "training stopped and the last good checkpoint (last.ckpt) was kept. Lower the learning rate "
                "(model.optimizer.lr) or check the input data for NaNs."
            )
        return loss

    def calibration_data(self) -> Any:
        """The datamodule whose normal images calibrate the scores (never its test images).

        Returns:
            The trainer's datamodule.

        Raises:
            ConfigError: Without a datamodule that serves normal images.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "normal_dataloader"):
            raise ConfigError(
                f"{self.stage}: calibrating scores (normal-map statistics, thresholds) needs the normal images of a "
                "datamodule, and this run has none: pass a datamodule, or use a checkpoint trained with the same "
                "scoring settings"
            )
        return datamodule

    @torch.no_grad()
    def _maps(self, loader: Any) -> Iterator[dict[str, Tensor]]:
        """This stage's outputs on every batch of a loader, in eval mode (the previous mode is restored)."""
        training = self.training
        self.eval()
        try:
            for batch in loader:
                yield self.infer(batch.image.to(self.device))
        finally:
            self.train(training)

    def fit_map_statistics(self) -> None:
        """Measure the per-pixel statistics of this stage's maps on normal images, for ``scoring.normalize``.

        The images are the training images, unaugmented; never test images, and never the normals that
        ``data.val_policy=from_train`` holds out: the thresholds are calibrated on those, and statistics fitted on
        them too would make their normalised scores, and so the thresholds, too low for normals the model has never
        met (bottle: a threshold that flagged 18 of 20 good test images, see ``docs/CALIBRATION.md``).
        """
        self.scorer.clear_statistics()
        stats = None
        for out in self._maps(self.calibration_data().fit_dataloader()):
            stats = stats or MapStatistics(tuple(out["anomaly_map"].shape[-2:]))
            stats.update(out["anomaly_map"])
        self.scorer.set_statistics(*stats.compute())
        log.info("%s: normal-map statistics measured on %d normal images", self.stage, stats.count)

    @property
    def calibration_settings(self) -> Calibration:
        """How this model's thresholds are chosen (``calibration``; checkpoints that predate it: the maximum)."""
        return Calibration.of(self.hparams.get(CALIBRATION_KEY) or {})

    def _scores_and_peaks(self, loader: Any) -> tuple[Tensor, Tensor, Tensor]:
        """Image scores, largest and smallest map values of every image of a loader."""
        scores, peaks, floors = [], [], []
        for out in self._maps(loader):
            maps = out["anomaly_map"].float().flatten(1)
            scores.append(out["score"].float().cpu())
            peaks.append(maps.amax(1).cpu())
            floors.append(maps.amin(1).cpu())
        return torch.cat(scores), torch.cat(peaks), torch.cat(floors)

    def check_calibration_data(self) -> tuple[Calibration, bool]:
        """The calibration that will run on this datamodule's normals, refused when they are too few for it.

        Called before training (:meth:`on_fit_start`), so that a method the data cannot serve fails before any work.

        Returns:
            The settings with ``auto`` resolved, and whether there are held-out normals.

        Raises:
            ConfigError: When the method needs more normal images than the data gives it (the message says which
                ``data.val_ratio`` gives enough), or ``seen_gap`` has no held-out normals to measure its gap on.
        """
        datamodule = self.calibration_data()
        held_out = datamodule.holds_out_normals
        count = len(datamodule.val_samples) if held_out else len(datamodule.normal_samples)
        settings = self.calibration_settings.resolved(count if held_out else 0, len(datamodule.train_samples))
        if settings.method == "seen_gap" and not held_out:
            raise ConfigError(
                "calibration.method=seen_gap measures the gap between training and held-out normal images, and "
                f"this data holds none out (data.val_policy={datamodule.val_policy}): set "
                "data.val_policy=from_train, or choose calibration.method=auto or max"
            )
        check_enough(settings, count, datamodule, held_out)
        if settings.method == "seen_gap":
            check_enough(settings, len(datamodule.train_samples), datamodule, held_out, training=True)
        return settings, held_out

    def on_fit_start(self) -> None:
        """Refuse, before the first step, a calibration the data cannot serve (see :meth:`check_calibration_data`)."""
        self.check_calibration_data()

    def fit_thresholds(self) -> None:
        """Calibrate the image and pixel thresholds on normal images with :attr:`calibration_settings`.

        The normal images held out of training (``data.val_policy=from_train``) are used when there are any;
        otherwise the training images, whose scores are lower than those of unseen normals (a warning says so).
        Never test images. The thresholds, and the smallest score and map value (the low end of the normalised
        scale, see :func:`~fader_lightning.models.scoring.normalized`), are stored in the scorer (so in the checkpoint)
        and in :attr:`calibration`.

        Raises:
            ConfigError: When the method needs more normal images than the data gives it (the message says which
                ``data.val_ratio`` gives enough).
        """
        datamodule = self.calibration_data()
        settings, held_out = self.check_calibration_data()
        if not held_out:
            log.warning(
                "%s: thresholds calibrated on the training images (no held-out normals): expect false positives; "
                "set data.val_policy=from_train to calibrate on unseen normal images",
                self.stage,
            )
        loader = datamodule.val_dataloader() if held_out else datamodule.normal_dataloader()
        scores, peaks, floors = self._scores_and_peaks(loader)
        training = (None, None)
        if settings.method == "seen_gap":
            training = self._scores_and_peaks(datamodule.fit_dataloader())[:2]
        image, pixel = settings.threshold(scores, training[0]), settings.threshold(peaks, training[1])
        image_low, pixel_low = float(scores.min()), float(floors.min())
        self.scorer.set_thresholds(image, pixel, image_low, pixel_low)
        image, pixel = self.scorer.image_threshold, self.scorer.pixel_threshold  # as stored (float32) and deployed
        asked = self.calibration_settings.method
        self.calibration = {"image_threshold": image, "pixel_threshold": pixel, "image_min": image_low,
                            "pixel_min": pixel_low, "normal_images": len(scores),
                            "split": "held_out" if held_out else "train", **settings.as_dict(),
                            "requested": asked}  # fmt: skip
        if training[0] is not None:
            self.calibration["training_images"] = len(training[0])
        method = settings.method if asked == settings.method else f"{asked}: {settings.method}"
        log.info("%s: thresholds image %.6g, pixel %.6g from %d %s normal images (calibration.method=%s, "
                 "target_fpr=%g, margin=%g std)", self.stage, image, pixel, len(scores),
                 "held-out" if held_out else "training", method, settings.target_fpr, settings.margin)  # fmt: skip

    def calibrate(self) -> None:
        """Measure what scoring needs from normal images: map statistics (``normalize``), then thresholds."""
        if self.scorer.normalize != "none":
            self.fit_map_statistics()
        self.fit_thresholds()

    def on_fit_end(self) -> None:
        """Calibrate the trained model's scores on normal images and put them in the final checkpoint.

        This runs before the loggers finish, so a logger that uploads the checkpoint (W&B ``log_model``) uploads
        the calibrated one, once.
        """
        self.calibrate()
        callback = self.trainer.checkpoint_callback
        written = (callback.last_model_path or callback.best_model_path) if callback else ""
        if written:
            refresh_weights(self.trainer, written)

    def on_test_start(self) -> None:
        """Calibrate first when the model's scoring was never calibrated (e.g. reused with other scoring settings)."""
        if self.scorer.needs_statistics or self.scorer.image_threshold is None:
            self.calibrate()
        elif not self.calibration:
            self.calibration = {"image_threshold": self.scorer.image_threshold,
                                "pixel_threshold": self.scorer.pixel_threshold, "split": "checkpoint",
                                **self.calibration_settings.as_dict()}  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """State the stage, leave the frozen mask generator's weights out (a DINO ViT: 87 MB), and seal the rest.

        They are rebuilt from the masking settings in the hyper-parameters, and the mask cache key holds a digest
        of them.
        """
        checkpoint[STAGE_KEY] = self.stage
        checkpoint["state_dict"] = strip_frozen(checkpoint["state_dict"], self.frozen_prefix)
        if self.category_scoring:
            checkpoint[CATEGORY_SCORING_KEY] = self.category_scoring
        checkpoint[DIGEST_KEY] = weights_digest(checkpoint)  # read_checkpoint refuses a file damaged since

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the freshly built mask generator's weights back, so strict loading still checks everything else.

        A loaded model also takes its calibration settings from the checkpoint (they are no constructor argument); a
        resumed one keeps its job's.
        """
        state = checkpoint["state_dict"]
        for key in [key for key in state if key.startswith(LEGACY_EAR_PREFIX)]:  # EAR checkpoints before 2026-12
            state[EAR_PREFIX + key.removeprefix(LEGACY_EAR_PREFIX)] = state.pop(key)
        restore_frozen(state, self.state_dict(), self.frozen_prefix)
        self.category_scoring = dict(checkpoint.get(CATEGORY_SCORING_KEY) or {})
        stored = checkpoint.get("hyper_parameters", {}).get(CALIBRATION_KEY)
        if stored is not None and CALIBRATION_KEY not in self.hparams:
            self.hparams[CALIBRATION_KEY] = dict(stored)

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """Infer a test batch and add it to the score store."""
        out = self.infer(batch.image)
        self.store.update(
            out["score"].detach(), batch.label, out["anomaly_map"].detach().squeeze(1), batch.mask.squeeze(1) > 0.5
        )
        self.update_diagnostics(batch, out)
        return out

    def update_diagnostics(self, batch: Batch, out: dict[str, Tensor]) -> None:
        """Add a test batch to :attr:`diagnostics` (single-mask models only).

        See :mod:`fader_lightning.metrics.diagnostics`.

        Args:
            batch: The test batch.
            out: What :meth:`infer` returned for it.
        """
        masks = out.get("masks")
        if masks is not None and masks.shape[1] == 1:
            self.diagnostics.update(out["anomaly_map"], masks, batch.mask, batch.label)

    def on_test_epoch_start(self) -> None:
        """Empty the store and the diagnostics before a test pass."""
        self.store.reset()
        self.diagnostics.reset()

    def on_test_epoch_end(self) -> None:
        """Compute and log the metrics of the test pass."""
        computed = self.store.compute(self.scorer.image_threshold, self.scorer.pixel_threshold)
        self.test_metrics = {key: float(value) for key, value in computed.items()}
        self.store.reset()
        self.test_diagnostics = self.diagnostics.compute()
        prefix = f"test/{self.test_label}" if self.test_label else "test"
        self.log_dict({f"{prefix}/{k}": v for k, v in self.test_metrics.items() if not math.isnan(v)})
        self.log_dict({f"diagnostics/{k}": v for k, v in self.test_diagnostics.items() if v is not None})
        log.info("%s test metrics: %s", self.stage, {k: round(v, 4) for k, v in self.test_metrics.items()})

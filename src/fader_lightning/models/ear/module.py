"""Stage 1 LightningModule: trains the EAR masked-inpainting U-Net on normal images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from fader_lightning.data.dataset import Batch
from fader_lightning.data.transforms import as_hw
from fader_lightning.errors import CheckpointError, ConfigError, settings_of
from fader_lightning.keys import EAR
from fader_lightning.masking import MaskCache, Obfuscation, build_mask_generator
from fader_lightning.models.base_module import AnomalyModule, Optimizer, Scheduler, plain
from fader_lightning.models.checkpoint_file import VIT_KEYS, stage1_overrides
from fader_lightning.models.ear.model import EARModel
from fader_lightning.models.fit_check import available_bytes, check_memory, training_step_bytes
from fader_lightning.models.losses import InpaintingLoss
from fader_lightning.models.scoring import AnomalyScorer
from fader_lightning.models.skip_dropout import PatchSkipDropout
from fader_lightning.models.unet import UNet


def build_ear_model(
    unet: Mapping[str, Any],
    masking: Mapping[str, Any],
    fill: Mapping[str, Any],
    scoring: Mapping[str, Any],
    mask_cache_dir: str | Path | None = None,
) -> EARModel:
    """Build an :class:`~fader_lightning.models.ear.model.EARModel` from the settings of ``conf/`` (or a checkpoint).

    A rejected setting is named by its config key (``model.unet.widths=...``).

    Args:
        unet: Keyword arguments of :class:`~fader_lightning.models.unet.UNet`.
        masking: ``name`` of the masking method plus its keyword arguments.
        fill: Keyword arguments of :class:`~fader_lightning.masking.Obfuscation` (``fill``, ``block``).
        scoring: Keyword arguments of :class:`~fader_lightning.models.scoring.AnomalyScorer`.
        mask_cache_dir: Disk cache of deterministic masks, or ``None`` for memory only.

    Returns:
        The model.

    Raises:
        ConfigError: When ``masking`` has no ``name`` or a setting is invalid.
    """
    masking = dict(masking)
    if "name" not in masking:
        raise ConfigError(f"masking settings {masking} lack 'name'; choose one with masking=<name>")
    with settings_of("masking"):
        generator = build_mask_generator(masking.pop("name"), **masking)
    masker = MaskCache(generator, cache_dir=mask_cache_dir) if generator.deterministic else generator
    unet_kwargs = dict(unet)
    if "widths" in unet_kwargs:
        unet_kwargs["widths"] = tuple(unet_kwargs["widths"])
    with settings_of("model.unet"):
        network = UNet(**unet_kwargs)
    with settings_of("model.fill"):
        obfuscation = Obfuscation(**fill)
    with settings_of("model.scoring"):
        scorer = AnomalyScorer(**scoring)
    return EARModel(network, masker, obfuscation, scorer)


class EARModule(AnomalyModule):
    """EAR stage 1: obfuscate with one deterministic mask, inpaint, score with MSGMS.

    Every argument but the optimizer and scheduler factories is a plain setting stored in the
    checkpoint's hyper-parameters, so ``EARModule.load_from_checkpoint(path)`` rebuilds the exact
    model.

    Args:
        unet: U-Net settings (``widths``, ``negative_slope``).
        masking: Masking method ``name`` and its settings.
        fill: Obfuscation settings (``fill``: ``mosaic``/``zero``, ``block``).
        loss: Loss weights and settings of :class:`~fader_lightning.models.losses.InpaintingLoss`.
        scoring: Settings of :class:`~fader_lightning.models.scoring.AnomalyScorer`.
        optimizer: Partial optimizer (Hydra ``_partial_: true``); ``None`` for inference only (training refuses).
        scheduler: Optional partial learning-rate scheduler.
        mask_cache_dir: Disk cache of deterministic masks (``None``: memory only).
        fpr_limit: FPR limit of AUPRO.
        map_storage: Storage dtype of test maps.
        skip_dropout: Settings of :class:`~fader_lightning.models.skip_dropout.PatchSkipDropout` (``p``,
            ``levels``, ``patch_size``), applied in training steps only; ``None`` or ``p = 0`` trains without it.
        image_size: Input size the model is trained at (``data.image_size``): an int or ``[height, width]``. Saved
            in the checkpoint, so that stage 2, predict and export resize as training did.
        data_source: The data it is trained on (:func:`~fader_lightning.data.source.data_record`), stated by the
            training job (:meth:`record_data`) and saved in the checkpoint, so that ``fader-eval`` tests it on the
            same data.
        interpolation: Resize method of the training images (``data.interpolation``).
        speed: How the U-Net runs: ``channels_last`` and ``bf16`` of
            :meth:`~fader_lightning.models.unet.UNet.set_speed`.
    """

    stage = EAR
    LEGACY_HPARAMS: ClassVar[Mapping[str, Any]] = {
        "interpolation": "area",
        "speed": {"channels_last": False, "bf16": False},
    }
    """Checkpoints written before these were stored: trained with ``area`` resizing, run in float32 NCHW."""
    frozen_prefix = "ear.masker."

    def __init__(
        self,
        *,
        masking: Mapping[str, Any],
        fpr_limit: float,
        map_storage: str,
        interpolation: str,
        speed: Mapping[str, bool],
        unet: Mapping[str, Any] | None = None,
        fill: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        scoring: Mapping[str, Any] | None = None,
        optimizer: Optimizer | None = None,
        scheduler: Scheduler | None = None,
        mask_cache_dir: str | None = None,
        skip_dropout: Mapping[str, Any] | None = None,
        image_size: int | Sequence[int] | None = None,
        data_source: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(fpr_limit=fpr_limit, map_storage=map_storage)
        unet, masking, fill, loss, scoring, skip_dropout = (
            plain(s) for s in (unet, masking, fill, loss, scoring, skip_dropout)
        )
        # Optimizer factories stay out of the hyper-parameters: checkpoints then hold only plain data and
        # load with torch's safe weights-only unpickler; the run's metrics.json keeps the full config.
        self.save_hyperparameters(
            {"unet": unet, "masking": masking, "fill": fill, "loss": loss, "scoring": scoring,
             "mask_cache_dir": mask_cache_dir, "fpr_limit": fpr_limit, "map_storage": map_storage,
             "skip_dropout": skip_dropout, "interpolation": interpolation, "speed": plain(speed),
             "image_size": list(as_hw(image_size)) if image_size is not None else None,
             "data_source": plain(data_source) or None}
        )  # fmt: skip
        self.ear = build_ear_model(unet, masking, fill, scoring, mask_cache_dir)
        self._memory_checked: tuple[Any, ...] | None = None  # (size, batch, device) of the last memory check
        with settings_of("model.speed"):
            self.ear.unet.set_speed(**speed)
        with settings_of("model.loss"):
            self.loss_fn = InpaintingLoss(**loss)
        with settings_of("model.skip_dropout"):
            self.skip_dropout = PatchSkipDropout(**skip_dropout) if skip_dropout.get("p", 0) > 0 else None
            if self.skip_dropout is not None:
                self.skip_dropout.check_levels(len(self.ear.unet.skip_channels))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def record_scoring(self, scoring: dict[str, Any]) -> None:
        """Record the scoring settings in this model's own hyper-parameters."""
        self.hparams["scoring"] = scoring

    @property
    def stage1_hparams(self) -> dict[str, Any]:
        """This model's own hyper-parameters."""
        return dict(self.hparams)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """``image_size`` and ``interpolation`` from the hyper-parameters (see :attr:`AnomalyModule.preprocessing`)."""
        return {
            "image_size": self.hparams.get("image_size"),
            "interpolation": self.hparams["interpolation"],
        }

    def setup(self, stage: str) -> None:
        """Check, before anything runs, that the data's image size fits the model (and, to train, the memory)."""
        scales = max(self.loss_fn.msgms_scales, self.ear.scorer.num_scales)
        size = self.data_image_size(self.ear, scales, self.trained_size)
        if size is not None and stage == "fit":
            trainer = self.trainer
            self.check_training_memory(size, trainer.datamodule.train_batch_size, trainer.strategy.root_device)

    def check_training_memory(self, size: tuple[int, int], batch_size: int, device: torch.device) -> None:
        """Refuse a training step that cannot fit in ``device``'s memory (jobs call it before the data is read).

        Args:
            size: ``(height, width)`` of the training images.
            batch_size: Training batch size.
            device: Where training runs.

        Raises:
            ConfigError: When the estimated step exceeds the memory, naming the keys to lower.
        """
        checked = (tuple(size), batch_size, str(device))
        if checked == self._memory_checked:  # measured once: the probe step draws from the global generator
            return
        needed = training_step_bytes(self.ear.unet, self.loss_fn, *size, batch_size)
        check_memory(needed, available_bytes(device), *size, batch_size)
        self._memory_checked = checked

    def _losses(self, batch: Batch, masks: Tensor, skip_transform: PatchSkipDropout | None = None) -> dict[str, Tensor]:
        recon = self.ear.reconstruct(batch.image, masks, skip_transform=skip_transform)
        return self.loss_fn(recon, batch.image)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """One optimisation step on normal images (with patch-wise skip dropout when configured)."""
        losses = self._losses(batch, self.ear.training_masks(batch.image), self.skip_dropout)
        self.check_finite(losses["loss"])
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch))
        return losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Reconstruction losses on the validation split (no selection is made on them)."""
        losses = self._losses(batch, self.ear.masks(batch.image))
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(batch))

    def infer(self, images: Tensor) -> dict[str, Tensor]:
        """Masks, reconstruction, anomaly map and score of a batch."""
        masks = self.ear.masks(images)
        recon, amap, score = self.ear.evaluate(images, masks)
        return {"recon": recon, "anomaly_map": amap, "score": score, "masks": masks}

    def configure_optimizers(self) -> Any:
        """Adam (or the configured optimizer and schedule) on the U-Net only; the mask generator stays frozen."""
        return self.optimizers_with_schedule(self.ear.unet.parameters())

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, Any],
        path: str | Path,
        mask_cache_dir: str | None = None,
        vit_weights: str | None = None,
        allow_download: bool = False,
    ) -> EARModule:
        """A stage-1 module built from stored settings: the frozen stage-1 model of a FADeR checkpoint.

        Its weights are the FADeR checkpoint's (loaded with it); what the loading job decides is applied as for a
        stage-1 checkpoint (:func:`stage1_overrides`).

        Args:
            settings: The checkpoint's ``stage1_settings``.
            path: The FADeR checkpoint, for messages.
            mask_cache_dir: The job's mask cache folder (``None``: memory only).
            vit_weights: The job's ViT state dict, if it gives one.
            allow_download: Whether the job allows timm to fetch pretrained weights.

        Returns:
            The stage-1 module with freshly initialised weights.

        Raises:
            CheckpointError: When the settings hold no U-Net or masking, or attention's ViT weights are not here.
        """
        if "unet" not in settings or "masking" not in settings:
            raise CheckpointError(f"{path} is a FADeR checkpoint without its stage-1 settings (stage1_settings)")
        settings = {**cls.LEGACY_HPARAMS, **settings}
        own = stage1_overrides(settings, path, mask_cache_dir, vit_weights, allow_download, VIT_KEYS)
        return cls(**{**settings, **own})

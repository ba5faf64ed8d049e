"""Stage 2 LightningModule: FADeR on a frozen stage-1 model, trained with the ranking loss."""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from fader_lightning.data.dataset import Batch
from fader_lightning.data.transforms import as_hw
from fader_lightning.errors import ConfigError, settings_of
from fader_lightning.keys import FADER
from fader_lightning.masking import single_mask_problem
from fader_lightning.metrics.diagnostics import TestDiagnostics
from fader_lightning.models.base_module import AnomalyModule, Optimizer, Scheduler, plain
from fader_lightning.models.calibration import CALIBRATION_KEY
from fader_lightning.models.checkpoint_file import restore_frozen
from fader_lightning.models.ear.module import EARModule
from fader_lightning.models.fader.model import (
    check_calibration,
    check_patch_grid,
    gt_patch_targets,
    patch_features,
    patch_mask_fraction,
    ranking_loss,
)
from fader_lightning.models.fader.settings import GROUPS, G, Inputs, Network, Ranking, grouped
from fader_lightning.models.fader.targets import (
    fader_targets,
    synthetic_defects,
    synthetic_targets,
)

log = logging.getLogger(__name__)

CALIBRATION_SPLITS: tuple[str, ...] = ("auto", "train", "val")


@dataclass(frozen=True)
class PatchRows:
    """Frozen-model rows of one or more images on the patch grid.

    Features ``(N, D, h, w)`` (float16); training targets, normal raw errors and hidden fractions ``(N, 1, h, w)``.
    Row 0 is the image itself; the ``synthetic`` target appends corrupted copies, which share the clean image's mask
    and normal errors.
    """

    features: Tensor
    targets: Tensor
    errors: Tensor
    hidden: Tensor

    @classmethod
    def stored(cls, features: Tensor, targets: Tensor, errors: Tensor, hidden: Tensor) -> PatchRows:
        """Rows as kept on the CPU: float16 features and float32 targets, errors and hidden fractions.

        The dtypes are fixed whatever precision produced the tensors (``trainer.precision=bf16-mixed`` computes
        them in bfloat16), so rows of any batch concatenate and every epoch sees the same values.
        """
        return cls(
            features.to("cpu", torch.float16), *(value.to("cpu", torch.float32) for value in (targets, errors, hidden))
        )

    def extend(self, other: PatchRows) -> PatchRows:
        """These rows followed by ``other``'s."""
        return PatchRows.cat([self, other])

    def first(self) -> PatchRows:
        """Row 0 only (the clean image)."""
        return PatchRows(*(value[:1] for value in self.tensors()))

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The four tensors, in field order (``dataclasses.astuple`` would deep-copy them)."""
        return self.features, self.targets, self.errors, self.hidden

    @staticmethod
    def cat(rows: list[PatchRows]) -> PatchRows:
        """All rows of a list, in order (outside CPU autocast, which refuses to concatenate float16)."""
        with torch.autocast("cpu", enabled=False):
            return PatchRows(*(torch.cat(parts) for parts in zip(*(r.tensors() for r in rows), strict=True)))


class FADeRModule(AnomalyModule):
    """FADeR stage 2: a two-layer patch MLP that attenuates the skips of a frozen EAR model.

    The frozen model's patch features and targets of each training image are computed once and cached (keyed by
    image content), so each epoch only trains the MLP. After every training epoch, τ and T of the soft mask (and,
    for ``use=residual|both``, the line mapping predictions to normal errors) are fitted on normal images (the
    training split, or the held-out normals of ``data.val_policy=from_train``), before the checkpoint of that epoch
    is written, so every checkpoint carries them as buffers. Every test pass also fills :attr:`test_diagnostics`
    (see :mod:`fader_lightning.metrics.diagnostics`).

    Args:
        stage1: The trained stage-1 module, frozen here (loaded by the job from ``fader.ckpt_path`` with
            :func:`~fader_lightning.models.loading.load_stage1`); ``None`` builds it from ``stage1_settings``, as
            loading a FADeR checkpoint does (its weights are in the checkpoint's state dict).
        network: The FADeR network (:class:`~fader_lightning.models.fader.settings.Network`).
        ranking: How it is trained (:class:`~fader_lightning.models.fader.settings.Ranking`).
        calibration: ``split`` (``val``: the held-out normals of ``data.val_policy=from_train``; ``train``; ``auto``:
            ``val`` when the data holds normals out, else ``train``) plus the keyword arguments of
            :meth:`~fader_lightning.models.fader.model.SoftMask.calibrate` (``quantile`` may be ``max``).
        inputs: The input it trains on (:class:`~fader_lightning.models.fader.settings.Inputs`; ``None``: its
            stage-1 model's).
        optimizer: Partial optimizer; ``None`` for inference only (training refuses).
        scheduler: Optional partial learning-rate scheduler, stepped per epoch (``fader/scheduler=cosine``).
        speed: How the frozen U-Net runs in this job (``model.speed``; ``None``: as the stage-1 model's settings
            say).
        fpr_limit: FPR limit of AUPRO (``None``: the stage-1 model's).
        map_storage: Storage dtype of test maps (``None``: the stage-1 model's).
        stage1_settings: Hyper-parameters of the stage-1 model, as a FADeR checkpoint stores them (its state dict
            holds the frozen stage-1 weights, so it loads on its own even after the stage-1 file has moved); ``None``
            takes them from ``stage1``.
        data_source: The data it is trained on, saved in the checkpoint (see :class:`EARModule`).
    """

    stage = FADER
    frozen_prefix = "ear.masker."
    LEGACY_HPARAMS: ClassVar[Mapping[str, Any]] = {
        "use": "attenuate", "attenuate_masked": False, "residual_region": "all", "synthetic": {},
        "force_image_size": False, "max_cached_images": 20000,
    }  # fmt: skip
    """Checkpoints written before these settings existed attenuate (visible patches only), were not trained on
    synthetic defects and train at their stage-1 model's size; they store the settings flat (:meth:`legacy_kwargs`)."""

    @classmethod
    def legacy_kwargs(cls, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Checkpoints from before the settings were grouped store them flat: their groups, legacy values filled in."""
        return {} if "network" in stored else grouped({**cls.LEGACY_HPARAMS, **stored})

    @classmethod
    def from_config(cls, stage1: EARModule, **settings: Any) -> FADeRModule:
        """Stage 2 from the flat ``fader`` node of ``conf/fader/default.yaml``, its keys sorted into the groups.

        Args:
            stage1: The trained stage-1 module.
            **settings: The node's keys (without the job's: ``trainer`` and the stage-1 loading keys).

        Returns:
            The module.

        Raises:
            ConfigError: On a key that is no setting of stage 2, or a setting it refuses.
        """
        groups = grouped(settings)
        rest = {key: value for key, value in settings.items() if not any(key in group for group in groups.values())}
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "stage1", *GROUPS}
        unknown = sorted(set(rest) - accepted)
        if unknown:
            raise ConfigError(f"fader.{unknown[0]} is not a setting of stage 2; see conf/fader/default.yaml")
        return cls(stage1, **groups, **rest)

    def __init__(
        self,
        stage1: EARModule | None = None,
        *,
        network: Network | Mapping[str, Any],
        ranking: Ranking | Mapping[str, Any],
        calibration: Mapping[str, Any],
        inputs: Inputs | Mapping[str, Any] | None = None,
        optimizer: Optimizer | None = None,
        scheduler: Scheduler | None = None,
        speed: Mapping[str, bool] | None = None,
        fpr_limit: float | None = None,
        map_storage: str | None = None,
        stage1_settings: Mapping[str, Any] | None = None,
        data_source: Mapping[str, Any] | None = None,
    ) -> None:
        network_settings = _group(Network, network)
        ranking_settings = _group(Ranking, ranking)
        input_settings = _group(Inputs, inputs or {})
        if input_settings.image_size is not None:
            input_settings = replace(input_settings, image_size=list(as_hw(input_settings.image_size)))
        calibration = plain(calibration)
        speed = plain(speed) if speed is not None else None
        if stage1 is None and stage1_settings is None:
            raise ConfigError("FADeRModule needs its stage-1 model: stage1=<EARModule> (models.loading.load_stage1)")
        if stage1 is None:  # Lightning's load_from_checkpoint: the frozen weights follow, from the state dict
            stage1 = EARModule.from_settings(stage1_settings, "the FADeR checkpoint")
        if stage1_settings is None:  # stage 1's settings as a model; its thresholds' calibration is its own
            stage1_settings = {k: v for k, v in plain(stage1.hparams).items() if k != CALIBRATION_KEY}
        stage1_settings = {**EARModule.LEGACY_HPARAMS, **plain(stage1_settings)}
        super().__init__(
            fpr_limit=stage1_settings["fpr_limit"] if fpr_limit is None else fpr_limit,
            map_storage=stage1_settings["map_storage"] if map_storage is None else map_storage,
        )
        self.save_hyperparameters(ignore=["stage1", "optimizer", "scheduler"])
        self.network, self.ranking, self.inputs = network_settings, ranking_settings, input_settings
        self.hparams.update({"network": network_settings.as_dict(), "ranking": ranking_settings.as_dict(),
                             "inputs": input_settings.as_dict(), "stage1_settings": stage1_settings})  # fmt: skip
        self.ear = stage1.ear
        problem = single_mask_problem(stage1.hparams.masking["name"])
        if problem:
            raise ConfigError(problem)
        if speed is not None:
            with settings_of("fader.speed"):
                self.ear.unet.set_speed(**speed)
        self.ear.requires_grad_(False)
        self.ear.eval()
        self.fader = network_settings.build(self.ear.unet.skip_channels)
        self._stage1_hparams = dict(stage1_settings)
        self.calibration_split = calibration.pop("split", "auto")
        if self.calibration_split not in CALIBRATION_SPLITS:
            raise ConfigError(
                f"fader.calibration.split={self.calibration_split!r} is unknown; use one of "
                f"{', '.join(CALIBRATION_SPLITS)}"
            )
        with settings_of("fader.calibration"):
            check_calibration(**calibration)
        self.soft_mask_settings = calibration  # keyword arguments of SoftMask.calibrate
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._cache: dict[str, PatchRows] = {}
        self._calibration_cache: dict[str, PatchRows] = {}
        self._pairing = torch.Generator().manual_seed(ranking_settings.seed)
        self.diagnostics = TestDiagnostics(network_settings.patch_size)

    def record_scoring(self, scoring: dict[str, Any]) -> None:
        """Record the scoring settings with the frozen model's (``stage1_settings``)."""
        self.stage1_hparams["scoring"] = scoring
        self.hparams["stage1_settings"] = self.stage1_hparams

    @property
    def stage1_hparams(self) -> dict[str, Any]:
        """The frozen stage-1 model's hyper-parameters (stored in this checkpoint as ``stage1_settings``)."""
        return self._stage1_hparams

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Stage 2's own ``image_size`` and ``interpolation``, else its stage-1 model's."""
        own = {"image_size": self.inputs.image_size, "interpolation": self.inputs.interpolation}
        stage1 = {"image_size": self.stage1_hparams.get("image_size"),
                  "interpolation": self.stage1_hparams["interpolation"]}  # fmt: skip
        return {key: own[key] if own[key] is not None else stage1[key] for key in own}

    def setup(self, stage: str) -> None:
        """Check, before anything runs, that the data's image size fits the frozen model and is the one it knows."""
        stage1_size = self.stage1_hparams.get("image_size")
        trained = tuple(stage1_size) if stage1_size is not None else None
        size = self.data_image_size(self.ear, self.ear.scorer.num_scales, trained, self.inputs.force_image_size)
        if size is not None:
            with settings_of("fader"):
                check_patch_grid(*size, self.fader.patch_size)

    def train(self, mode: bool = True) -> FADeRModule:
        """Switch modes, keeping the frozen stage-1 model in eval mode (BatchNorm statistics stay fixed)."""
        super().train(mode)
        self.ear.eval()
        return self

    @torch.no_grad()
    def _rows(self, images: Tensor, cache: dict[str, PatchRows], training_rows: bool) -> list[PatchRows]:
        """Frozen-model patch rows of each image, from ``cache`` where possible.

        Features are kept in float16 whether fresh or cached, so every epoch sees the same values.
        """
        keys = [hashlib.sha1(img.detach().cpu().numpy().tobytes()).hexdigest() for img in images]
        rows = {key: cache[key] for key in keys if key in cache}
        missing = [i for i, key in enumerate(keys) if key not in rows]
        if missing:
            fresh = self._compute_rows(images[missing], [keys[i] for i in missing], training_rows)
            for i, row in zip(missing, fresh, strict=True):
                rows[keys[i]] = row
                if len(cache) < self.ranking.max_cached_images:
                    cache[keys[i]] = row
        return [rows[key] for key in keys]

    def _compute_rows(self, images: Tensor, keys: list[str], training_rows: bool) -> list[PatchRows]:
        """Features, targets, normal errors and hidden fractions of fresh images (one frozen pass + the target's)."""
        size = self.fader.patch_size
        masks = self.ear.masks(images)
        obfuscated = self.ear.obfuscation(images, masks)
        skips, bottleneck = self.ear.unet.encode(obfuscated)
        recon = self.ear.unet.decode(bottleneck, skips)
        features = patch_features(skips, obfuscated, size, self.fader.source)
        errors = gt_patch_targets(images, recon, size)
        hidden = patch_mask_fraction(masks, size)
        target = self.ranking.target
        targets = fader_targets()[target](self.ear, images, masks, recon, size, errors) if training_rows else errors
        rows = [
            PatchRows.stored(features[j : j + 1], targets[j : j + 1], errors[j : j + 1], hidden[j : j + 1])
            for j in range(len(images))
        ]
        if training_rows and target == "synthetic":
            for j, key in enumerate(keys):
                rows[j] = rows[j].extend(self._synthetic_rows(images[j], masks[j], rows[j], key))
        return rows

    def _synthetic_rows(self, image: Tensor, mask: Tensor, clean_row: PatchRows, key: str) -> PatchRows:
        """``copies`` corrupted versions of one image, seeded by the run seed and the image content."""
        settings = self.ranking.synthetic
        copies = int(settings["copies"])
        generator = torch.Generator().manual_seed(self.ranking.seed * 1_000_003 + int(key[:12], 16))
        clean = image.unsqueeze(0).expand(copies, -1, -1, -1)
        corrupted, _ = synthetic_defects(
            clean, generator, settings["kinds"], settings["min_side"], settings["max_side"]
        )
        masks = mask.unsqueeze(0).expand(copies, -1, -1, -1)
        skips, obfuscated, targets = synthetic_targets(
            self.ear, clean, corrupted, masks, self.fader.patch_size, settings["tie_below"]
        )
        features = patch_features(skips, obfuscated, self.fader.patch_size, self.fader.source)
        return PatchRows.stored(
            features, targets, clean_row.errors.expand(copies, -1, -1, -1), clean_row.hidden.expand(copies, -1, -1, -1)
        )

    def _features_and_targets(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Training features ``(N, D, h, w)`` and targets ``(N, heads, h, w)`` of a batch (``N >= B``).

        The attenuation head ranks ``fader.target``; the residual head ranks the stage-1 error of the clean image.
        """
        rows = PatchRows.cat(self._rows(images, self._cache, training_rows=True))
        targets = torch.cat([rows.targets if head == "attenuate" else rows.errors for head in self.fader.heads], 1)
        return rows.features.to(images.device, torch.float32), targets.to(images.device)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Ranking loss between predicted and target patch errors of normal images, summed over the heads."""
        features, targets = self._features_and_targets(batch.image)
        pred = self.fader.predictor(features)
        loss = sum(
            ranking_loss(pred[:, k : k + 1], targets[:, k : k + 1], self.ranking.margin, self._pairing)
            for k in range(pred.shape[1])
        )
        loss = self.check_finite(loss)
        self.log("train/rank_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _calibration_rows(self) -> PatchRows | None:
        """Clean-image rows of the calibration split (the first row of each cached training image, or val)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        held_out = bool(getattr(datamodule, "holds_out_normals", False))
        if self.calibration_split == "val" and not held_out:
            raise ConfigError(
                "fader.calibration.split=val needs held-out normal images: set data.val_policy=from_train or "
                "official (or use fader.calibration.split=train)"
            )
        if self.calibration_split == "train" or not held_out:
            rows = [row.first() for row in self._cache.values()]
        else:
            rows = []
            for batch in datamodule.val_dataloader():
                rows += self._rows(batch.image.to(self.device), self._calibration_cache, training_rows=False)
        return PatchRows.cat(rows) if rows else None

    def on_train_epoch_end(self) -> None:
        """Calibrate τ and T (and fit the residual line) on normal images, before the epoch's checkpoint."""
        rows = self._calibration_rows()
        if rows is None:
            return
        with torch.no_grad():
            features = rows.features.to(self.device, torch.float32)
            preds = torch.cat([self.fader.predictor(chunk) for chunk in features.split(64)]).cpu()
        if "attenuate" in self.fader.heads:
            scores = preds[:, :1]
            attenuable = scores if self.fader.attenuate_masked else scores[rows.hidden < 0.5]
            tau, temperature = self.fader.soft_masker.calibrate(
                attenuable if attenuable.numel() else scores, **self.soft_mask_settings
            )
            self.log_dict({"calib/tau": tau, "calib/temperature": temperature})
        if "residual" in self.fader.heads:
            slope, intercept = self.fader.fit_residual(preds[:, -1:], rows.errors)
            self.log_dict({"calib/residual_slope": slope, "calib/residual_intercept": intercept})

    def infer(self, images: Tensor) -> dict[str, Tensor]:
        """One pass: mask, obfuscate, encode, predict and attenuate skips, decode, score."""
        masks = self.ear.masks(images)
        out = self.fader.detect(self.ear, images, masks)
        soft_full = F.interpolate(out.pop("soft"), size=images.shape[-2:], mode="nearest")
        return {**out, "masks": masks, "soft_mask": soft_full}

    def update_diagnostics(self, batch: Batch, out: dict[str, Tensor]) -> None:
        """Diagnostics of one test batch, with the stage-1 score of the same images for the score change."""
        size = self.fader.patch_size
        base_score = self.ear.scorer(batch.image, self.ear.reconstruct(batch.image, out["masks"]))[1]
        self.diagnostics.update(
            out["anomaly_map"], out["masks"], batch.mask, batch.label, pred=out["pred_error"],
            soft=F.avg_pool2d(out["soft_mask"], size), score_change=out["score"] - base_score,
        )  # fmt: skip

    def configure_optimizers(self) -> Any:
        """Adam (or the configured optimizer and schedule) on the FADeR MLP only."""
        return self.optimizers_with_schedule(self.fader.parameters())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the frozen masker's weights; checkpoints older than the residual use get its (unused) zero line."""
        super().on_load_checkpoint(checkpoint)
        restore_frozen(checkpoint["state_dict"], self.state_dict(), "fader.residual_fit")


def _group(cls: type[G], value: G | Mapping[str, Any]) -> G:
    """A settings group from a group, a plain mapping or a config node."""
    return value if isinstance(value, cls) else cls.of(plain(value))

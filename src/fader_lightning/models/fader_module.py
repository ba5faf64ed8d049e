"""Stage 2 LightningModule: FADeR on a frozen stage-1 model, trained with the ranking loss."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fader_lightning.data.dataset import Batch
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.models.base_module import AnomalyModule
from fader_lightning.models.fader import FADeR, gt_patch_targets, patch_features, ranking_loss
from fader_lightning.models.inpainting_module import InpaintingModule, Optimizer, plain

log = logging.getLogger(__name__)


def load_stage1(ckpt_path: str | Path, expected_unet: Mapping[str, Any] | None = None) -> InpaintingModule:
    """Load a stage-1 checkpoint and check that it fits the configured U-Net.

    Args:
        ckpt_path: Checkpoint written by stage 1 (``checkpoints/ear/last.ckpt`` of its run).
        expected_unet: U-Net settings the config asks for; any key that differs from the checkpoint's
            is an error. ``None`` skips the check.

    Returns:
        The stage-1 module, on CPU.

    Raises:
        CheckpointError: When the file is missing, is not a stage-1 checkpoint, or does not match.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(
            f"stage-1 checkpoint {path} does not exist; train stage 1 first (stage=ear) and set "
            "fader.ckpt_path to its checkpoints/ear/last.ckpt, or run stage=both"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({err}); point fader.ckpt_path at a stage-1 ckpt"
        ) from err
    hparams = checkpoint.get("hyper_parameters", {})
    if "unet" not in hparams or "masking" not in hparams:
        raise CheckpointError(f"{path} is not a stage-1 (EAR) checkpoint: it has no U-Net or masking settings")
    for key, value in (expected_unet or {}).items():
        stored = hparams["unet"].get(key)
        if stored is not None and list(_as_list(stored)) != list(_as_list(value)):
            raise CheckpointError(
                f"stage-1 checkpoint {path} was trained with model.unet.{key}={stored} but the config asks for "
                f"{value}; drop the override or point fader.ckpt_path at a matching checkpoint"
            )
    try:
        return InpaintingModule.load_from_checkpoint(path, map_location="cpu")
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit its own U-Net settings {hparams['unet']}: {err}") from err


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


class FADeRModule(AnomalyModule):
    """FADeR stage 2: a two-layer patch MLP that attenuates the skips of a frozen EAR model.

    The frozen model's patch features and GT-loss targets of each training image are computed once
    and cached (keyed by image content), so each epoch only trains the MLP. After every training
    epoch, τ and T of the soft mask are calibrated on the training normals, before the checkpoint
    of that epoch is written, so every checkpoint carries them as buffers.

    Args:
        ckpt_path: Stage-1 checkpoint.
        patch_size: Patch side P in pixels.
        source: MLP input: ``skip_features`` or ``pixels``.
        hidden: Hidden width of the MLP.
        activation: ``leaky_relu``, ``relu`` or ``gelu``.
        levels: Skip levels to attenuate (0 = highest resolution).
        mapping: ``calibrated`` soft mask, or ``literal`` (τ = 0, T = 1).
        enabled: ``False`` makes the model identical to stage 1 (ablation).
        target: GT loss per patch: ``msgms`` (unsmoothed anomaly map) or ``mse``.
        margin: Ranking-loss margin ξ.
        calibration: Keyword arguments of :meth:`~fader_lightning.models.fader.SoftMask.calibrate`.
        optimizer: Partial optimizer; Adam(lr=1e-3) when ``None``.
        expected_unet: U-Net settings the checkpoint must match (``None``: no check).
        seed: Seed of the random pairing of patches.
        max_cached_images: Bound of the feature/target cache (augmented data never repeats).
        fpr_limit: FPR limit of AUPRO.
        map_storage: Storage dtype of test maps.
        stage1_settings: Hyper-parameters of the stage-1 model. Filled in from ``ckpt_path`` on first
            construction and stored in the checkpoint, so a FADeR checkpoint loads on its own (its state
            dict holds the frozen stage-1 weights) even after the stage-1 file has moved.
    """

    stage = "fader"

    def __init__(
        self,
        ckpt_path: str,
        patch_size: int = 8,
        source: str = "skip_features",
        hidden: int = 128,
        activation: str = "leaky_relu",
        levels: tuple[int, ...] | list[int] = (0, 1, 2),
        mapping: str = "calibrated",
        enabled: bool = True,
        target: str = "msgms",
        margin: float = 1.0,
        calibration: Mapping[str, Any] | None = None,
        optimizer: Optimizer | None = None,
        expected_unet: Mapping[str, Any] | None = None,
        seed: int = 0,
        max_cached_images: int = 20000,
        fpr_limit: float = 0.3,
        map_storage: str = "float16",
        stage1_settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(fpr_limit=fpr_limit, map_storage=map_storage)
        if target not in ("msgms", "mse"):
            raise ConfigError(f"fader.target={target!r} is unknown; use msgms or mse")
        if margin < 0:
            raise ConfigError(f"fader.margin={margin} must be >= 0")
        calibration, expected_unet = plain(calibration), plain(expected_unet)
        levels = tuple(int(level) for level in levels)
        if stage1_settings is None:
            stage1 = load_stage1(ckpt_path, expected_unet)
            stage1_settings = plain(stage1.hparams)
        else:  # a FADeR checkpoint being loaded: its state dict holds the stage-1 weights
            stage1 = InpaintingModule(**stage1_settings)
        self.save_hyperparameters(ignore=["optimizer"])
        self.ear = stage1.model
        if self.ear.masker.num_passes != 1:
            raise ConfigError(
                f"FADeR needs a single deterministic mask; masking={stage1.hparams.masking['name']} makes "
                f"{self.ear.masker.num_passes} passes. Use attention, saliency, checkerboard or none"
            )
        self.ear.requires_grad_(False)
        self.ear.eval()
        self.fader = FADeR(
            self.ear.unet.skip_channels, patch_size, source, hidden, activation, levels, mapping, enabled
        )
        self.stage1_hparams = dict(stage1_settings)
        self.calibration = calibration
        self.optimizer_factory = optimizer
        self._cache: dict[str, tuple[Tensor, Tensor]] = {}
        self._pairing = torch.Generator().manual_seed(seed)

    def train(self, mode: bool = True) -> FADeRModule:
        """Switch modes, keeping the frozen stage-1 model in eval mode (BatchNorm statistics stay fixed)."""
        super().train(mode)
        self.ear.eval()
        return self

    @torch.no_grad()
    def _features_and_targets(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Frozen-model patch features of I' and GT-loss targets, from the cache where possible.

        Features are kept in float16 whether fresh or cached, so every epoch sees the same values.
        """
        keys = [hashlib.sha1(img.detach().cpu().numpy().tobytes()).hexdigest() for img in images]
        rows = {key: self._cache[key] for key in keys if key in self._cache}
        missing = [i for i, key in enumerate(keys) if key not in rows]
        if missing:
            subset = images[missing]
            masks = self.ear.masks(subset)
            obfuscated = self.ear.obfuscation(subset, masks)
            skips, bottleneck = self.ear.unet.encode(obfuscated)
            recon = self.ear.unet.decode(bottleneck, skips)
            features = patch_features(skips, obfuscated, self.fader.patch_size, self.fader.source)
            targets = gt_patch_targets(subset, recon, self.fader.patch_size, self.hparams.target)
            for j, i in enumerate(missing):
                rows[keys[i]] = (features[j].to("cpu", torch.float16), targets[j].cpu())
                if len(self._cache) < self.hparams.max_cached_images:
                    self._cache[keys[i]] = rows[keys[i]]
        features = torch.stack([rows[k][0] for k in keys]).to(images.device, torch.float32)
        return features, torch.stack([rows[k][1] for k in keys]).to(images.device)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Ranking loss between predicted and GT patch errors of normal images."""
        features, targets = self._features_and_targets(batch.image)
        pred = self.fader.predictor(features)
        loss = self.check_finite(ranking_loss(pred, targets, self.hparams.margin, self._pairing))
        self.log("train/rank_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def on_train_epoch_end(self) -> None:
        """Calibrate τ and T on the cached training normals (runs before the epoch's checkpoint)."""
        if not self._cache:
            return
        with torch.no_grad():
            features = torch.stack([f for f, _ in self._cache.values()]).to(self.device, torch.float32)
            preds = torch.cat([self.fader.predictor(chunk) for chunk in features.split(64)])
        tau, temperature = self.fader.soft_masker.calibrate(preds, **self.calibration)
        self.log_dict({"calib/tau": tau, "calib/temperature": temperature})

    def infer(self, images: Tensor) -> dict[str, Tensor]:
        """One pass: mask, obfuscate, encode, predict and attenuate skips, decode, score."""
        outputs: dict[str, Tensor] = {}

        def attenuate(skips: list[Tensor], obfuscated: Tensor) -> list[Tensor]:
            skips, outputs["pred_error"], outputs["soft"] = self.fader.transform_with_outputs(skips, obfuscated)
            return skips

        masks = self.ear.masks(images)
        recon = self.ear.reconstruct(images, masks, skip_transform=attenuate)
        amap, score = self.ear.scorer(images, recon)
        soft_full = F.interpolate(outputs.pop("soft"), size=images.shape[-2:], mode="nearest")
        return {"recon": recon, "anomaly_map": amap, "score": score, "masks": masks, "soft_mask": soft_full, **outputs}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam (or the configured optimizer) on the FADeR MLP only."""
        params = self.fader.parameters()
        return self.optimizer_factory(params) if self.optimizer_factory else torch.optim.Adam(params, lr=1e-3)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the stage-1 masker's frozen weights out (they are rebuilt from the stage-1 checkpoint)."""
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("ear.masker.")
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the masker's weights from the freshly loaded stage-1 model, for strict loading."""
        for key, value in self.state_dict().items():
            if key.startswith("ear.masker."):
                checkpoint["state_dict"].setdefault(key, value)

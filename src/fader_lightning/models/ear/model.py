"""EAR: single-mask obfuscation, U-Net inpainting and MSGMS scoring, as one pure-torch module."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from fader_lightning.masking import MaskCache, MaskGenerator, Obfuscation
from fader_lightning.models.scoring import AnomalyScorer
from fader_lightning.models.unet import UNet

SkipTransform = Callable[[list[Tensor], Tensor], list[Tensor]]
"""Callable ``(skips, obfuscated_image) -> skips`` applied between encoder and decoder (FADeR uses it)."""


class EARModel(nn.Module):
    """Masked-inpainting anomaly detector.

    ``I -> M -> I' = (1 - M) I + M F(I) -> U(I') -> Î -> (map, score)``. Methods with several passes
    (``random_multi``, RIAD) inpaint each pass and keep, per partition group (one cell size), the inpainted part of
    each pass; at test the anomaly map is the mean of the groups' maps (RIAD's sum of per-cell-size MSGMS maps,
    divided by their number), and the shown reconstruction is the mean of the groups' reconstructions.

    Args:
        unet: The inpainting network.
        masker: Mask generator, optionally wrapped in a :class:`~fader_lightning.masking.MaskCache`.
        obfuscation: Fill of the masked pixels (mosaic hints or zeros).
        scorer: Anomaly map and image score.
    """

    def __init__(
        self, unet: UNet, masker: MaskGenerator | MaskCache, obfuscation: Obfuscation, scorer: AnomalyScorer
    ) -> None:
        super().__init__()
        self.unet = unet
        self.masker = masker
        self.obfuscation = obfuscation
        self.scorer = scorer

    def inpaint(self, obfuscated: Tensor, skip_transform: SkipTransform | None = None) -> Tensor:
        """Run the U-Net once, optionally changing the skip tensors between encoder and decoder.

        Args:
            obfuscated: Obfuscated images ``(B, 3, H, W)``.
            skip_transform: Optional ``(skips, obfuscated) -> skips``.

        Returns:
            The reconstruction ``(B, 3, H, W)``.
        """
        skips, bottleneck = self.unet.encode(obfuscated)
        if skip_transform is not None:
            skips = skip_transform(skips, obfuscated)
        return self.unet.decode(bottleneck, skips)

    def masks(self, images: Tensor) -> Tensor:
        """Masks of a batch, ``(B, P, H, W)`` in {0, 1} (from the cache when deterministic).

        Args:
            images: Images ``(B, 3, H, W)`` in [0, 1].

        Returns:
            The masks; ``1`` marks the hidden pixels.
        """
        with torch.no_grad():
            return self.masker(images)

    def training_masks(self, images: Tensor) -> Tensor:
        """Masks of a training mini-batch (one cell size for RIAD-style methods; see the masker).

        Args:
            images: Images ``(B, 3, H, W)`` in [0, 1].

        Returns:
            The masks ``(B, P', H, W)``; ``1`` marks the hidden pixels.
        """
        with torch.no_grad():
            return self.masker.training_masks(images)

    def reconstruct(
        self, images: Tensor, masks: Tensor | None = None, skip_transform: SkipTransform | None = None
    ) -> Tensor:
        """Obfuscate and inpaint a batch (the mean over partition groups for multi-pass methods).

        Args:
            images: Images ``(B, 3, H, W)`` in [0, 1].
            masks: Precomputed masks ``(B, P, H, W)``; computed when ``None``.
            skip_transform: Optional change of the skip tensors (see :meth:`inpaint`).

        Returns:
            The reconstruction ``(B, 3, H, W)``.
        """
        return torch.stack(self.group_reconstructions(images, masks, skip_transform)).mean(0)

    def group_reconstructions(
        self, images: Tensor, masks: Tensor | None = None, skip_transform: SkipTransform | None = None
    ) -> list[Tensor]:
        """One reconstruction per partition group: each pass inpaints the pixels its mask hides.

        Args:
            images: Images ``(B, 3, H, W)`` in [0, 1].
            masks: Precomputed masks ``(B, P, H, W)``; computed when ``None``.
            skip_transform: Optional change of the skip tensors (see :meth:`inpaint`).

        Returns:
            The reconstructions ``(B, 3, H, W)``: one for a single mask, ``P / group_size`` otherwise.
        """
        masks = self.masks(images) if masks is None else masks
        if masks.shape[1] == 1:
            return [self.inpaint(self.obfuscation(images, masks), skip_transform)]
        group = self.masker.group_size
        groups = []
        for start in range(0, masks.shape[1], group):
            parts = masks[:, start : start + group]
            recon = torch.zeros_like(images)
            for p in range(parts.shape[1]):
                mask = parts[:, p : p + 1]
                recon = recon + mask * self.inpaint(self.obfuscation(images, mask), skip_transform)
            groups.append(recon)
        return groups

    def evaluate(self, images: Tensor, masks: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction, anomaly map and image score; multi-pass methods average the groups' maps.

        Args:
            images: Images ``(B, 3, H, W)`` in [0, 1].
            masks: Precomputed masks ``(B, P, H, W)``; computed when ``None``.

        Returns:
            Reconstruction ``(B, 3, H, W)``, anomaly map ``(B, 1, H, W)`` and image score ``(B,)``.
        """
        groups = self.group_reconstructions(images, masks)
        smoothed = torch.stack([self.scorer.smoothed(images, recon) for recon in groups]).mean(0)
        amap, score = self.scorer.finish(smoothed)
        return torch.stack(groups).mean(0), amap, score

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Full inference pass.

        Args:
            images: Images ``(B, 3, H, W)`` in [0, 1].

        Returns:
            Reconstruction ``(B, 3, H, W)``, anomaly map ``(B, 1, H, W)`` and image score ``(B,)``.
        """
        return self.evaluate(images)

"""Score images with a checkpoint: :class:`Detector` and the :class:`Detection` of each image.

A :class:`Detector` resizes every image exactly as training did (the checkpoint's image size and resize method)
and decides with the thresholds the checkpoint carries (calibrated on normal images when training ended).
``fader-predict`` and :mod:`fader_lightning.api` use it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fader_lightning.data.image_io import read_image, scale_to_uint8
from fader_lightning.data.transforms import build_transform
from fader_lightning.errors import ConfigError, DataError
from fader_lightning.models.base_module import AnomalyModule
from fader_lightning.models.fit_check import minimum_side
from fader_lightning.models.loading import open_checkpoint
from fader_lightning.models.scoring import calibrated_scale

log = logging.getLogger(__name__)

ImageLike = str | os.PathLike | Image.Image | np.ndarray | Tensor
"""An image file, a PIL image, an ``(H, W[, C])`` array (uint8, 16-bit or float) or a ``(3, H, W)`` tensor in [0, 1]."""


@dataclass(frozen=True)
class Detection:
    """The verdict on one image.

    Attributes:
        score: Image anomaly score (higher is more anomalous), on the model's own scale.
        calibrated_score: The score on ``(0, 1)`` with the threshold at 0.5, in the order of the scores (see
            :func:`~fader_lightning.models.scoring.normalized`); ``None`` when the checkpoint has no calibration lows.
        label: ``True`` (anomalous) when the score is above the image threshold; ``None`` without a threshold.
        anomaly_map: ``(h, w)`` float32 map at the model's input size.
        mask: ``(h, w)`` bool, the map above the pixel threshold; ``None`` without one.
        source: The file the image came from, else ``None``.
        full_map: ``(H, W)`` float32 map at the input image's own size (see :func:`to_size`); ``None`` when the
            image's size is not known.
        full_mask: ``(H, W)`` bool, :attr:`full_map` above the pixel threshold; ``None`` without either.
    """

    score: float
    calibrated_score: float | None
    label: bool | None
    anomaly_map: np.ndarray
    mask: np.ndarray | None
    source: str | None = None
    full_map: np.ndarray | None = None
    full_mask: np.ndarray | None = None


def to_size(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map resized to an image's own size: bilinear when enlarged, area-averaged when shrunk.

    Args:
        values: ``(h, w)`` float map.
        size: The image's height and width.

    Returns:
        ``(H, W)`` float32 map.
    """
    height, width = size
    if (height, width) == values.shape:
        return values.astype(np.float32, copy=True)
    shrink = height < values.shape[0] and width < values.shape[1]
    method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(values.astype(np.float32), (width, height), interpolation=method)


def as_rgb_uint8(image: ImageLike) -> np.ndarray:
    """An image as an ``(H, W, 3)`` RGB uint8 array, decoded as the datasets decode files.

    Args:
        image: See :data:`ImageLike`.

    Returns:
        The array.

    Raises:
        DataError: When a file cannot be read or an array does not have an image's shape.
    """
    if isinstance(image, str | os.PathLike):
        return read_image(Path(image))
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"), dtype=np.uint8)
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise DataError(f"an image tensor must be (3, H, W) or (1, H, W) in [0, 1], got {tuple(image.shape)}")
        image = image.detach().float().cpu().permute(1, 2, 0).numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        array = array[..., :3] if array.shape[-1] != 1 else array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise DataError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.uint16:  # by the bit depth, as 16-bit files are read
        return (array.astype(np.float64) / 65535.0 * 255.0).round().clip(0, 255).astype(np.uint8)
    return scale_to_uint8(array.astype(np.float64), "the array")


class Detector:
    """A trained stage-1 or FADeR model with its preprocessing and thresholds.

    Args:
        module: The loaded stage module (:func:`~fader_lightning.models.loading.load_module`).
        image_size: Height and width the images are resized to (the checkpoint's).
        image_threshold: Replaces the checkpoint's image threshold.
        pixel_threshold: Replaces the checkpoint's pixel threshold.
    """

    def __init__(
        self,
        module: AnomalyModule,
        image_size: tuple[int, int],
        image_threshold: float | None = None,
        pixel_threshold: float | None = None,
    ) -> None:
        self.module = module.eval()
        self.image_size = image_size
        self.interpolation = module.preprocessing["interpolation"]
        self.transform = build_transform(image_size, self.interpolation)
        scorer = module.scorer
        self.image_threshold = scorer.image_threshold if image_threshold is None else float(image_threshold)
        self.pixel_threshold = scorer.pixel_threshold if pixel_threshold is None else float(pixel_threshold)
        self.lows = scorer.normal_lows

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str = "auto",
        vit_weights: str | None = None,
        image_threshold: float | None = None,
        pixel_threshold: float | None = None,
        category: str | None = None,
    ) -> Detector:
        """Load a stage-1 or FADeR checkpoint (told apart automatically) for inference.

        Args:
            path: The checkpoint (``<run>/checkpoints/<ear|fader>/last.ckpt``, or a copy anywhere).
            device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
            vit_weights: DINO ViT state dict of a model with attention masking (checkpoints do not store it).
            image_threshold: Replaces the checkpoint's image threshold.
            pixel_threshold: Replaces the checkpoint's pixel threshold.
            category: For a unified model: score as this category, with the statistics and thresholds of its normal
                images (``None``: those of all its categories together).

        Returns:
            The detector.

        Raises:
            CheckpointError: When the file is missing or is not a checkpoint of either stage.
            ConfigError: For a category the model was not trained on.
        """
        opened = open_checkpoint(path, device, vit_weights)
        if category is not None:
            opened.module.use_category(category)
        return cls(opened.module, opened.input_size(), image_threshold, pixel_threshold)

    @property
    def stage(self) -> str:
        """``ear`` (stage 1) or ``fader``."""
        return self.module.stage

    @property
    def minimum_side(self) -> int:
        """The smallest image side scored: the smallest the U-Net's stride and the MSGMS scales work at.

        A smaller image, resized up to :attr:`image_size`, would be scored as a blur of a few pixels.
        """
        return minimum_side(self.module.ear.unet.stride, self.module.scorer.num_scales)

    def preprocess(self, image: ImageLike, name: str | None = None) -> Tensor:
        """Decode and resize one image exactly as training did (see :meth:`prepare`).

        Args:
            image: See :data:`ImageLike`.
            name: What errors call the image (default: its file, else its kind and shape).

        Returns:
            ``(3, H, W)`` float32 in [0, 1] at :attr:`image_size`.
        """
        return self.prepare(image, name)[0]

    def prepare(self, image: ImageLike, name: str | None = None) -> tuple[Tensor, tuple[int, int]]:
        """Decode and resize one image exactly as training did, and say its own size.

        Args:
            image: See :data:`ImageLike`.
            name: What errors call the image (default: its file, else its kind and shape).

        Returns:
            ``(3, H, W)`` float32 in [0, 1] at :attr:`image_size`, and the image's own height and width.

        Raises:
            DataError: When the image cannot be read, holds NaN or infinite values, or a side of it is below
                :attr:`minimum_side`.
        """
        name = name or _describe(image)
        _check_finite(image, name)
        rgb = as_rgb_uint8(image)
        height, width = rgb.shape[:2]
        if min(height, width) < self.minimum_side:
            raise DataError(
                f"{name} is {height}x{width} pixels, below the {self.minimum_side} pixels a side this model needs "
                f"(resized to {self.image_size[0]}x{self.image_size[1]} it would be scored as a blur); give the "
                "image at its full resolution"
            )
        resized = self.transform(image=rgb)["image"]
        return torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float().div_(255.0), (height, width)

    @torch.inference_mode()
    def infer(self, images: Tensor) -> dict[str, Tensor]:
        """The model's raw outputs on preprocessed images.

        Args:
            images: ``(B, 3, H, W)`` from :meth:`preprocess`.

        Returns:
            ``anomaly_map``, ``score``, ``recon``, ``masks`` (and FADeR's ``soft_mask``), on the model's device.
        """
        return self.module.infer(images.to(self.module.device))

    def detections(
        self,
        outputs: dict[str, Tensor],
        sources: Sequence[str | None],
        sizes: Sequence[tuple[int, int] | None] | None = None,
    ) -> list[Detection]:
        """Turn a batch of outputs into :class:`Detection` objects.

        Args:
            outputs: What :meth:`infer` returned.
            sources: The file of each image (``None`` for in-memory images).
            sizes: Each image's own height and width (see :meth:`prepare`), for the full-size map and mask.

        Returns:
            One detection per image.
        """
        sizes = sizes or [None] * len(sources)
        scores = outputs["score"].float().cpu()
        maps = outputs["anomaly_map"][:, 0].float().cpu()
        calibrated = self.lows is not None and self.image_threshold is not None
        norm = calibrated_scale(scores, self.lows[0], self.image_threshold) if calibrated else None
        return [
            Detection(
                score=float(scores[i]),
                calibrated_score=float(norm[i]) if norm is not None else None,
                label=bool(scores[i] > self.image_threshold) if self.image_threshold is not None else None,
                anomaly_map=maps[i].numpy(),
                mask=(maps[i] > self.pixel_threshold).numpy() if self.pixel_threshold is not None else None,
                source=source,
                **self._full_size(maps[i].numpy(), size),
            )
            for i, (source, size) in enumerate(zip(sources, sizes, strict=True))
        ]

    def _full_size(self, values: np.ndarray, size: tuple[int, int] | None) -> dict[str, np.ndarray | None]:
        """The ``full_map`` and ``full_mask`` of a :class:`Detection` at an image's own size (``None``: unknown)."""
        full = None if size is None else to_size(values, size)
        mask = None if full is None or self.pixel_threshold is None else full > self.pixel_threshold
        return {"full_map": full, "full_mask": mask}

    def predict(
        self, images: ImageLike | Sequence[ImageLike], batch_size: int = 8, full_size: bool = True
    ) -> list[Detection]:
        """Score images.

        Args:
            images: One image, a list of them, or a batch: a ``(B, 3, H, W)`` tensor or ``(B, H, W[, C])`` array.
            batch_size: Images per forward pass.
            full_size: Also return each map and mask at the image's own size (``full_map``, ``full_mask``: 5 bytes a
                pixel; ``False`` keeps the model-size ones only, for many large images).

        Returns:
            One :class:`Detection` per image, in order.

        Raises:
            DataError: When an image cannot be read, holds NaN or infinite values, or is smaller than
                :attr:`minimum_side`; the message names it (its file, else its index).
        """
        results: list[Detection] = []
        for chunk in _chunks(list(enumerate(_as_list(images))), batch_size):
            prepared = [self.prepare(image, _describe(image, index)) for index, image in chunk]
            sources = [str(image) if isinstance(image, str | os.PathLike) else None for _, image in chunk]
            sizes = [size for _, size in prepared] if full_size else None
            results += self.detections(self.infer(torch.stack([tensor for tensor, _ in prepared])), sources, sizes)
        return results


def _describe(image: ImageLike, index: int | None = None) -> str:
    """What an error calls an image: its file, else ``image <index>`` (when given), its kind and its shape."""
    if isinstance(image, str | os.PathLike):
        return str(image)
    shape = (image.height, image.width) if isinstance(image, Image.Image) else tuple(image.shape)
    kind = f"{type(image).__name__} of shape {shape}"
    return kind if index is None else f"image {index} ({kind})"


def _check_finite(image: ImageLike, name: str) -> None:
    """Refuse an array or tensor with NaN or infinite values, which decoding would turn into black pixels."""
    if isinstance(image, Tensor):
        finite = not image.is_floating_point() or bool(torch.isfinite(image).all())
    elif isinstance(image, np.ndarray):
        finite = not np.issubdtype(image.dtype, np.floating) or bool(np.isfinite(image).all())
    else:
        finite = True
    if not finite:
        raise DataError(f"{name} holds NaN or infinite values; an image must be finite: fix or drop it")


def _as_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    if isinstance(images, Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, str | os.PathLike | Image.Image | np.ndarray | Tensor):
        return [images]
    return list(images)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise ConfigError(f"batch_size={size} is invalid; use an integer >= 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]

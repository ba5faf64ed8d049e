"""Checks that an image size fits a stage-1 model: large enough for every scale, small enough for memory.

Both run when a stage starts (before the first batch), so a bad ``data.image_size`` fails in a second with a
message naming the key, not as a shape error deep inside MSGMS or an out-of-memory kill an hour in.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from fader_lightning.errors import ConfigError
from fader_lightning.models.losses import InpaintingLoss

# MSGMS's coarsest scale must still be at least one Prewitt window (3x3) wide to measure a gradient.
PREWITT_SIDE = 3


def minimum_side(stride: int, num_scales: int) -> int:
    """The smallest image side the U-Net and the MSGMS scales accept.

    Args:
        stride: Total down-sampling of the U-Net (sides must be multiples of it).
        num_scales: Largest number of MSGMS scales used by the loss or the scorer.

    Returns:
        The smallest multiple of ``stride`` whose coarsest MSGMS scale is at least 3 pixels wide.
    """
    need = PREWITT_SIDE * 2 ** (num_scales - 1)
    return max(stride, -(-need // stride) * stride)


def check_minimum_size(height: int, width: int, stride: int, num_scales: int) -> None:
    """Refuse an image size below :func:`minimum_side`.

    Args:
        height: Image height.
        width: Image width.
        stride: Total down-sampling of the U-Net.
        num_scales: Largest number of MSGMS scales.

    Raises:
        ConfigError: When a side is too small.
    """
    smallest = minimum_side(stride, num_scales)
    if min(height, width) < smallest:
        raise ConfigError(
            f"data.image_size={height}x{width} is too small: the U-Net's stride is {stride} and MSGMS with "
            f"{num_scales} scales looks at the image down-sampled {2 ** (num_scales - 1)}x, where a 3x3 gradient "
            f"filter needs at least 3 pixels; use data.image_size={smallest} or more"
        )


def training_step_bytes(unet: nn.Module, loss: InpaintingLoss, height: int, width: int, batch_size: int) -> int:
    """Estimate the memory of one training step: activations kept for the backward pass, weights and Adam state.

    The activations are measured exactly on a small probe image (every tensor autograd saves is counted) and
    scaled by the pixel count and the batch size, which is how they grow.

    Args:
        unet: The U-Net.
        loss: The training loss.
        height: Image height.
        width: Image width.
        batch_size: Training batch size.

    Returns:
        The estimate in bytes.
    """
    probe = 64
    storages: dict[int, int] = {}  # one entry per memory block: autograd often saves one tensor for two operations

    weights = {p.untyped_storage().data_ptr() for p in unet.parameters()}  # saved too, but they do not grow

    def count(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    device = next(unet.parameters()).device
    image = torch.rand(1, unet.in_channels, probe, probe, device=device)
    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        loss(unet(image), image)["loss"]
    saved = sum(storages.values())
    parameters = sum(p.numel() * p.element_size() for p in unet.parameters())
    return int(saved * batch_size * height * width / probe**2) + 4 * parameters  # weights, grads, two Adam moments


def available_bytes(device: torch.device) -> int:
    """The memory a step on ``device`` may use: the GPU's total memory, else the machine's physical memory."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(needed: int, available: int, height: int, width: int, batch_size: int) -> None:
    """Refuse a training step that cannot fit in memory.

    Args:
        needed: Estimate of :func:`training_step_bytes`.
        available: Memory of the device (:func:`available_bytes`).
        height: Image height.
        width: Image width.
        batch_size: Training batch size.

    Raises:
        ConfigError: When the estimate exceeds the available memory.
    """
    if needed > available:
        raise ConfigError(
            f"data.image_size={height}x{width} with data.train_batch_size={batch_size} needs about "
            f"{needed / 2**30:.1f} GiB for one training step (activations kept for the backward pass, weights and "
            f"optimizer state), more than the {available / 2**30:.1f} GiB available; lower data.image_size or "
            "data.train_batch_size"
        )

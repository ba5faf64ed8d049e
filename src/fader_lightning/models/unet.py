"""U-Net inpainting network with an exposed encoder/decoder split.

The network is split into :meth:`UNet.encode` and :meth:`UNet.decode` so that callers (FADeR) can change the skip
tensors between the two halves before decoding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fader_lightning.errors import ConfigError

log = logging.getLogger(__name__)


def check_input_size(height: int, width: int, stride: int) -> None:
    """Checks that an image size can pass through a U-Net with the given total stride.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        stride: Total down-sampling factor of the U-Net (``2 ** number_of_poolings``).

    Raises:
        ConfigError: If ``height`` or ``width`` is not a positive multiple of ``stride``.
    """
    for size in (height, width):
        if size <= 0 or size % stride != 0:
            suggestion = max(stride, -(-size // stride) * stride)
            raise ConfigError(
                f"image size {size} is not divisible by the U-Net stride {stride}; "
                f"use a multiple of {stride} such as {suggestion}"
            )


def _conv_block(in_channels: int, out_channels: int, negative_slope: float) -> nn.Sequential:
    """Builds two ``3x3 conv -> BatchNorm -> LeakyReLU`` stages.

    Args:
        in_channels: Channels of the block input.
        out_channels: Channels of both convolutions' outputs.
        negative_slope: Negative slope of the LeakyReLU activations.

    Returns:
        nn.Sequential: The block.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(negative_slope, inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(negative_slope, inplace=True),
    )


class UNet(nn.Module):
    """U-Net that maps an image in ``[0, 1]`` to a reconstruction in ``[0, 1]`` of the same size.

    Encoder level ``i`` is a two-convolution block of width ``widths[i]``. Levels ``0 .. n-2`` each emit a skip
    tensor (at resolutions ``H, H/2, H/4, ...``) and are followed by a 2x2 max-pool; the last level is the
    bottleneck at ``H / stride``. Each decoder level up-samples with a ``2x2`` stride-2 transposed convolution that
    keeps the channel count, concatenates the matching skip and applies a two-convolution block that reduces the
    width to the skip's width. A final ``1x1`` convolution and a sigmoid produce the output.

    Args:
        in_channels: Channels of the input image.
        out_channels: Channels of the reconstruction.
        widths: Channel widths of the encoder levels, shallow first; at least two entries.
        negative_slope: Negative slope of the LeakyReLU activations.

    Raises:
        ConfigError: If ``widths`` has fewer than two entries or a non-positive entry, or a channel count is
            not positive.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or any(w <= 0 for w in widths):
            raise ConfigError(
                f"widths={list(widths)} is invalid; give at least two positive channel widths "
                "such as [64, 128, 256, 512]"
            )
        if in_channels <= 0 or out_channels <= 0:
            raise ConfigError(
                f"in_channels={in_channels}, out_channels={out_channels} are invalid; use positive counts (3 for RGB)"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.widths = widths

        self.encoder_blocks = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoder_blocks.append(_conv_block(previous, width, negative_slope))
            previous = width
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

        # Decoder modules are stored deepest first, in the order they run.
        self.upsamplers = nn.ModuleList()
        self.decoder_blocks = nn.ModuleList()
        for level in reversed(range(len(widths) - 1)):
            deep = widths[level + 1]
            self.upsamplers.append(nn.ConvTranspose2d(deep, deep, kernel_size=2, stride=2))
            self.decoder_blocks.append(_conv_block(deep + widths[level], widths[level], negative_slope))
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)
        self.channels_last = False
        self.bf16 = False
        log.debug("Built UNet widths=%s with %d parameters", widths, sum(p.numel() for p in self.parameters()))

    @property
    def stride(self) -> int:
        """int: Total down-sampling factor between the input and the bottleneck."""
        return 2 ** (len(self.widths) - 1)

    @property
    def skip_channels(self) -> list[int]:
        """list[int]: Channel count of each skip tensor, highest resolution first."""
        return list(self.widths[:-1])

    def check_input_size(self, height: int, width: int) -> None:
        """Checks that an image of ``height x width`` pixels fits this network's stride.

        Args:
            height: Image height in pixels.
            width: Image width in pixels.

        Raises:
            ConfigError: If a side is not a multiple of :attr:`stride`.
        """
        check_input_size(height, width, self.stride)

    def set_speed(self, channels_last: bool, bf16: bool) -> UNet:
        """Choose how the network runs; what it computes stays the same up to rounding, and so do its weights.

        Args:
            channels_last: Keep the convolution weights, and so the activations, in the channels-last memory
                format (faster oneDNN and cuDNN kernels).
            bf16: Run the convolutions under bfloat16 autocast (fast on CPUs with AMX or AVX512-BF16 and on GPUs;
                changes outputs by about 1e-2); :meth:`encode` and :meth:`decode` still return float32.

        Returns:
            The network.
        """
        self.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.channels_last, self.bf16 = channels_last, bf16
        return self

    def _precision(self, x: Tensor) -> torch.autocast:
        return torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def encode(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Runs the encoder.

        Args:
            x: Images of shape ``(B, in_channels, H, W)``; ``H`` and ``W`` multiples of :attr:`stride` (the
                callers check sizes once, see :meth:`check_input_size`).

        Returns:
            The skip tensors, highest resolution first (skip ``i`` has shape
            ``(B, widths[i], H / 2**i, W / 2**i)``), and the bottleneck of shape
            ``(B, widths[-1], H / stride, W / stride)``, in float32.
        """
        skips: list[Tensor] = []
        with self._precision(x):
            for block in self.encoder_blocks[:-1]:
                x = block(x)
                skips.append(x)
                x = self.pool(x)
            bottleneck = self.encoder_blocks[-1](x)
        if self.bf16:
            return [skip.float() for skip in skips], bottleneck.float()
        return skips, bottleneck

    def decode(self, bottleneck: Tensor, skips: Sequence[Tensor]) -> Tensor:
        """Runs the decoder on a bottleneck and (possibly externally modified) skip tensors.

        Args:
            bottleneck: Tensor of shape ``(B, widths[-1], h, w)``.
            skips: Skip tensors, highest resolution first, with the shapes
                :meth:`encode` produces for a bottleneck of size ``h x w``.

        Returns:
            Reconstruction of shape ``(B, out_channels, h * stride, w * stride)`` in ``[0, 1]``, in float32.
        """
        x = bottleneck
        with self._precision(x):
            for upsample, block, skip in zip(self.upsamplers, self.decoder_blocks, reversed(skips), strict=True):
                x = block(torch.cat((upsample(x), skip.to(x.dtype)), dim=1))
            out = torch.sigmoid(self.head(x))
        return out.float()

    def forward(self, x: Tensor) -> Tensor:
        """Reconstructs images.

        Args:
            x: Images of shape ``(B, in_channels, H, W)``.

        Returns:
            Reconstruction of shape ``(B, out_channels, H, W)`` in ``[0, 1]``.
        """
        skips, bottleneck = self.encode(x)
        return self.decode(bottleneck, skips)


def attenuate(skips: Sequence[Tensor], soft_mask: Tensor, levels: Sequence[int]) -> list[Tensor]:
    """Multiplies selected skip tensors by the soft mask, resized (nearest) to each one's spatial size.

    Args:
        skips: Skip tensors, highest resolution first.
        soft_mask: Weights of shape ``(B, 1, h, w)`` on the patch grid.
        levels: Indices of the skips to attenuate.

    Returns:
        The skips; those not in ``levels`` are the very same tensor objects.
    """
    out = list(skips)
    for level in levels:
        skip = out[level]
        weights = F.interpolate(soft_mask.to(skip.dtype), size=skip.shape[-2:], mode="nearest")
        out[level] = skip * weights
    return out

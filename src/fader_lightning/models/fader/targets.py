"""What the FADeR predictor learns to rank: patch targets computed from normal training images only.

* ``msgms`` / ``mse``: the patch error of the frozen stage-1 reconstruction of ``I'`` (the reconstruction of the
  paper). On normal images it mostly says which patches the mask hid.
* ``synthetic``: defects are pasted into the normal image anywhere (:func:`synthetic_defects`), the mask ``M`` of the
  *clean* image is kept, and the target is the error the pasted content adds to the reconstruction, measured
  against the clean image (:func:`synthetic_targets`). Patches whose skips would leak a defect score high; hidden
  patches and untouched ones score zero.
* ``complement``: the error each patch has when it is inpainted, from a second pass with the complementary mask
  ``1 - M`` (:func:`complement_targets`): how predictable the patch is from its context, whether ``M`` hid it or
  not. Training only; inference stays one pass.

All functions are pure torch and run without gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from fader_lightning.errors import ConfigError
from fader_lightning.models.fader.model import gt_patch_targets
from fader_lightning.models.scoring import raw_anomaly_map
from fader_lightning.utils.plugins import TARGETS_GROUP, with_plugins

if TYPE_CHECKING:
    from fader_lightning.models.ear.model import EARModel

CleanTargets = Callable[["EARModel", Tensor, Tensor, Tensor, int, Tensor], Tensor]
"""``(ear, images, masks, recon, patch_size, msgms_errors) -> (B, 1, H / P, W / P)``: one target's patch targets of
clean training images."""
DEFECT_KINDS: tuple[str, ...] = ("cutpaste", "blob")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Integer in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _blob(height: int, width: int, generator: torch.Generator) -> Tensor:
    """A smooth random blob: low-resolution noise, upsampled bicubically and thresholded, ``(H, W)`` in {0, 1}."""
    coarse = torch.rand(1, 1, 4, 4, generator=generator)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0, 0]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return ((smooth - 0.6 * (xx.pow(2) + yy.pow(2))) > 0.35).float()


def check_synthetic(kinds: Sequence[str], min_side: float, max_side: float) -> None:
    """Check the settings of :func:`synthetic_defects`.

    Args:
        kinds: Defect kinds to draw from.
        min_side: Smallest defect side as a fraction of the image side.
        max_side: Largest defect side as a fraction of the image side.

    Raises:
        ConfigError: If a kind is unknown, the list is empty, or the sizes are out of range.
    """
    if not kinds or any(kind not in DEFECT_KINDS for kind in kinds):
        raise ConfigError(f"kinds={list(kinds)} is invalid; use a non-empty subset of {DEFECT_KINDS}")
    if not 0 < min_side <= max_side <= 1:
        raise ConfigError(f"min_side={min_side}, max_side={max_side} are invalid; use 0 < min_side <= max_side <= 1")


def synthetic_defects(
    images: Tensor,
    generator: torch.Generator,
    kinds: Sequence[str] = DEFECT_KINDS,
    min_side: float = 0.08,
    max_side: float = 0.25,
) -> tuple[Tensor, Tensor]:
    """Pastes one synthetic defect into every image, anywhere, fully inside the image.

    ``cutpaste``: a rectangle cut from another image of the batch (or the image itself for a batch of one) at
    another place, with a random brightness change. ``blob``: a smooth irregular region filled with a random colour
    plus noise texture. The kind, size, place and content are drawn from ``generator`` alone, so the same generator
    state gives the same defects.

    Args:
        images: Normal images ``(B, C, H, W)`` in ``[0, 1]``.
        generator: CPU random generator.
        kinds: Defect kinds to draw from (``"cutpaste"``, ``"blob"``).
        min_side: Smallest defect side as a fraction of the image side, in ``(0, max_side]``.
        max_side: Largest defect side as a fraction of the image side, in ``[min_side, 1]``.

    Returns:
        Corrupted images (same shape, in ``[0, 1]``) and defect masks ``(B, 1, H, W)`` in
        {0, 1}.

    The settings are trusted; :func:`check_synthetic` checks them once.
    """
    batch, channels, height, width = images.shape
    out = images.detach().cpu().clone()
    defects = torch.zeros(batch, 1, height, width)
    for b in range(batch):
        kind = kinds[_randint(generator, 0, len(kinds) - 1)]
        h = max(2, round(_uniform(generator, min_side, max_side) * height))
        w = max(2, round(_uniform(generator, min_side, max_side) * width))
        top, left = _randint(generator, 0, height - h), _randint(generator, 0, width - w)
        if kind == "cutpaste":
            source = out[(b + 1) % batch] if batch > 1 else images[b].cpu()
            src_top, src_left = _randint(generator, 0, height - h), _randint(generator, 0, width - w)
            patch = source[:, src_top : src_top + h, src_left : src_left + w] * _uniform(generator, 0.6, 1.4)
            region = torch.ones(h, w)
        else:
            colour = torch.rand(channels, 1, 1, generator=generator)
            patch = colour + 0.15 * torch.randn(channels, h, w, generator=generator)
            region = _blob(h, w, generator)
        window = out[b, :, top : top + h, left : left + w]
        out[b, :, top : top + h, left : left + w] = region * patch.clamp(0, 1) + (1 - region) * window
        defects[b, 0, top : top + h, left : left + w] = region
    return out.to(images.device), defects.to(images.device)


@torch.no_grad()
def synthetic_targets(
    ear: EARModel, clean: Tensor, corrupted: Tensor, masks: Tensor, patch_size: int, tie_below: float = 0.01
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Skips of the corrupted ``I'`` and the error its pasted defects add to the reconstruction.

    The mask of the clean image is kept, so a defect pasted where ``M`` is 0 stays visible, as a real defect that
    the mask misses does. The target is ``max(e(corrupted) - e(clean) - tie_below, 0)`` per patch, ``e(x)`` being the
    patch error between the clean image and the reconstruction of ``x``: zero (a tie, skipped by the ranking loss)
    wherever the defect changes nothing.

    Args:
        ear: Frozen stage-1 model.
        clean: Normal images ``(B, 3, H, W)``.
        corrupted: The same images with synthetic defects.
        masks: Masks of the clean images ``(B, 1, H, W)``.
        patch_size: Patch side ``P``.
        tie_below: Added errors up to this value count as none.

    Returns:
        Skips of the corrupted ``I'``, that ``I'`` and the targets
        ``(B, 1, H / P, W / P)``.
    """
    baseline = gt_patch_targets(clean, ear.reconstruct(clean, masks), patch_size)
    obfuscated = ear.obfuscation(corrupted, masks)
    skips, bottleneck = ear.unet.encode(obfuscated)
    added = gt_patch_targets(clean, ear.unet.decode(bottleneck, skips), patch_size) - baseline
    return skips, obfuscated, (added - tie_below).clamp(min=0)


@torch.no_grad()
def complement_targets(ear: EARModel, images: Tensor, masks: Tensor, recon: Tensor, patch_size: int) -> Tensor:
    """Error of every patch when it is inpainted: ``M`` from this pass, ``1 - M`` from a second one.

    Args:
        ear: Frozen stage-1 model.
        images: Images ``(B, 3, H, W)``.
        masks: Their masks ``(B, 1, H, W)``.
        recon: The reconstruction with ``masks``.
        patch_size: Patch side ``P``.

    Returns:
        ``(B, 1, H / P, W / P)``.
    """
    complement = 1 - masks
    recon_complement = ear.reconstruct(images, complement)
    inpainted = masks * raw_anomaly_map(images, recon) + complement * raw_anomaly_map(images, recon_complement)
    return F.avg_pool2d(inpainted, patch_size)


TARGETS: dict[str, CleanTargets] = {
    "msgms": lambda ear, images, masks, recon, size, errors: errors,
    "mse": lambda ear, images, masks, recon, size, errors: gt_patch_targets(images, recon, size, "mse"),
    "complement": lambda ear, images, masks, recon, size, errors: complement_targets(ear, images, masks, recon, size),
    # a clean image adds no error: its corrupted copies carry the targets (FADeRModule adds them)
    "synthetic": lambda ear, images, masks, recon, size, errors: torch.zeros_like(errors),
}
"""``fader.target``: each built-in target's patch targets of clean training images. A target is added here, with its
function, or by an installed package (:func:`fader_targets`), or not at all: an unknown name fails when the module is
built."""


@cache
def fader_targets() -> dict[str, CleanTargets]:
    """Every FADeR target by name: the built-in ones, then those of installed packages.

    A package declares ``name = "package.module:function"`` under the ``fader_lightning.fader_targets`` entry points;
    the function has the signature of :data:`CleanTargets`.

    Returns:
        The table.

    Raises:
        ConfigError: When a package's target is not callable, its name is taken, or it cannot be imported.
    """
    table = with_plugins(TARGETS, TARGETS_GROUP, "FADeR target")
    for name, function in table.items():
        if not callable(function):
            raise ConfigError(
                f"the FADeR target {name!r} ({TARGETS_GROUP} entry points) is {function!r}, not a function"
            )
    return table

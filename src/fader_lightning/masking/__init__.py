"""Mask generators (attention, saliency, checkerboard, random_multi, none), the fill of masked pixels and the cache.

:data:`MASKING_METHODS` lists the built-in methods, :func:`masking_methods` adds those of installed packages; build
one by name with :func:`build_mask_generator`.
"""

from fader_lightning.masking.attention import AttentionMask
from fader_lightning.masking.base import MaskGenerator
from fader_lightning.masking.cache import MaskCache
from fader_lightning.masking.checkerboard import CheckerboardMask
from fader_lightning.masking.fill import FILL_MODES, Obfuscation, mosaic, obfuscate
from fader_lightning.masking.identity import NoMask
from fader_lightning.masking.random_multi import RandomMultiMask
from fader_lightning.masking.registry import (
    MASKING_METHODS,
    available_methods,
    build_mask_generator,
    masking_methods,
    single_mask_problem,
)
from fader_lightning.masking.saliency import SpectralResidualSaliencyMask

__all__ = [
    "FILL_MODES",
    "MASKING_METHODS",
    "AttentionMask",
    "CheckerboardMask",
    "MaskCache",
    "MaskGenerator",
    "NoMask",
    "Obfuscation",
    "RandomMultiMask",
    "SpectralResidualSaliencyMask",
    "available_methods",
    "build_mask_generator",
    "masking_methods",
    "mosaic",
    "obfuscate",
    "single_mask_problem",
]

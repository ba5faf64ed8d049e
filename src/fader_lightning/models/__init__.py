"""Pure-torch models (U-Net, EAR, losses, scoring) and the thin Lightning modules around them."""

from fader_lightning.models.ear import EARModel, build_ear_model
from fader_lightning.models.inpainting_module import InpaintingModule
from fader_lightning.models.unet import UNet

__all__ = ["EARModel", "InpaintingModule", "UNet", "build_ear_model"]

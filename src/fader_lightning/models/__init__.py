"""Pure-torch models (U-Net, EAR, losses, scoring) and the thin Lightning modules around them."""

from fader_lightning.models.ear import EARModel, build_ear_model
from fader_lightning.models.fader import FADeR
from fader_lightning.models.fader_module import FADeRModule
from fader_lightning.models.inpainting_module import InpaintingModule
from fader_lightning.models.unet import UNet

__all__ = ["EARModel", "FADeR", "FADeRModule", "InpaintingModule", "UNet", "build_ear_model"]

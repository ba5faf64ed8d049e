"""The two stages, each a pure-torch model next to its Lightning module, and the U-Net they share.

* ``ear/``: :class:`EARModel` (masks, obfuscation, U-Net, scorer) and :class:`EARModule` (stage 1);
* ``fader/``: :class:`FADeRModel` (patch MLP, soft mask, skip attenuation) and :class:`FADeRModule` (stage 2, on a
  frozen EAR model), with the ranking targets in ``fader/targets.py``;
* ``base_module.py``: what both Lightning modules share (test pass, calibration, thresholds, checkpoint hooks);
  ``checkpoints.py``: reading, stage and loading of checkpoints.
"""

from fader_lightning.models.ear.model import EARModel
from fader_lightning.models.ear.module import EARModule, build_ear_model
from fader_lightning.models.fader.model import FADeRModel
from fader_lightning.models.fader.module import FADeRModule
from fader_lightning.models.unet import UNet

__all__ = ["EARModel", "EARModule", "FADeRModel", "FADeRModule", "UNet", "build_ear_model"]

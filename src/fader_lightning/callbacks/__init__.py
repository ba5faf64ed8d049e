"""Lightning callbacks: atomic checkpoints, overlay PNGs of test samples, epoch lines and the training estimate."""

from fader_lightning.callbacks.checkpoint import AtomicModelCheckpoint
from fader_lightning.callbacks.overlays import OverlayWriter
from fader_lightning.callbacks.progress import EpochLog

__all__ = ["AtomicModelCheckpoint", "EpochLog", "OverlayWriter"]

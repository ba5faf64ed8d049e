"""Lightning callbacks: atomic checkpoints and overlay PNGs of test samples."""

from fader_lightning.callbacks.checkpoint import AtomicModelCheckpoint
from fader_lightning.callbacks.overlays import OverlayWriter

__all__ = ["AtomicModelCheckpoint", "OverlayWriter"]

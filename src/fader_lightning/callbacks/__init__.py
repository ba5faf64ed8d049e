"""Lightning callbacks: overlay PNGs of test samples."""

from fader_lightning.callbacks.overlays import OverlayWriter

__all__ = ["OverlayWriter"]

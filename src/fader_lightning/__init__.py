"""fader-lightning: EAR masked inpainting and FADeR skip attenuation for anomaly detection."""

__version__ = "0.1.0"

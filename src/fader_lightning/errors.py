"""Project exception types.

Every problem a user can fix (bad paths, bad config keys, bad checkpoints) raises a subclass of
:class:`FaderError` whose message names the offending path or key and says what to do.
"""


class FaderError(Exception):
    """Base class of every error fader-lightning raises on purpose."""


class DataError(FaderError):
    """A dataset root, file, split table or mask is missing or malformed."""


class ConfigError(FaderError):
    """A configuration value is unknown, inconsistent or out of range."""


class CheckpointError(FaderError):
    """A checkpoint or weights file is missing or does not fit the configured model."""


class TrainingError(FaderError):
    """Training cannot go on (for example the loss became NaN)."""

"""Project exception types.

Every problem a user can fix (bad paths, bad config keys, bad checkpoints) raises a subclass of
:class:`FaderError` whose message names the offending path or key and says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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


@contextmanager
def settings_of(node: str) -> Iterator[None]:
    """Name the config node of the settings a pure-torch constructor rejects.

    Pure-torch modules know their parameters, not the configs that feed them: they reject a value by its parameter
    name (``p=1.5 is invalid; ...``). The code that builds them from a config node wraps the construction, and the
    user reads the full key (``model.skip_dropout.p=1.5 is invalid; ...``).

    Args:
        node: The config node, e.g. ``model.skip_dropout``.

    Yields:
        Nothing; a project error raised inside is raised again with ``node.`` in front of its message.
    """
    try:
        yield
    except FaderError as err:
        raise type(err)(f"{node}.{err}") from err

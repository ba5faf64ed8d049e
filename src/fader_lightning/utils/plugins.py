"""What installed packages add to the project's tables of masking methods and FADeR targets (entry points).

A package extends fader-lightning without changing it by naming its classes or functions under an entry-point
group in its own ``pyproject.toml`` (``docs/ARCHITECTURE.md``, "Where to add things"):

.. code-block:: toml

    [project.entry-points."fader_lightning.masking"]
    stripes = "my_package.masks:StripeMask"

Only installed packages are read, never a checkpoint or a config: a checkpoint that names a method this environment
lacks is refused with the method's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TypeVar

from fader_lightning.errors import ConfigError

MASKING_GROUP = "fader_lightning.masking"
"""Entry-point group of masking methods: ``name = "package.module:MaskGeneratorSubclass"``."""
TARGETS_GROUP = "fader_lightning.fader_targets"
"""Entry-point group of FADeR ranking targets: ``name = "package.module:function"``."""

T = TypeVar("T")


def with_plugins(builtin: Mapping[str, T], group: str, what: str) -> dict[str, T]:
    """A built-in table with the entries installed packages declare under an entry-point group.

    Args:
        builtin: The project's own entries by name.
        group: The entry-point group (:data:`MASKING_GROUP`, :data:`TARGETS_GROUP`).
        what: What an entry is, for messages (``masking method``).

    Returns:
        The built-in entries, then the plugins' in name order.

    Raises:
        ConfigError: When a plugin's name is taken, or its object cannot be imported.
    """
    table = dict(builtin)
    for point in sorted(entry_points(group=group), key=lambda point: point.name):
        package = point.dist.name if point.dist is not None else "an installed package"
        if point.name in table:
            raise ConfigError(
                f"{package} declares the {what} {point.name!r} ({point.value}, entry points {group}), a name that is "
                "taken; give it another name in that package's entry points"
            )
        try:
            table[point.name] = point.load()
        except Exception as err:
            raise ConfigError(
                f"the {what} {point.name!r} of {package} ({point.value}, entry points {group}) cannot be imported: "
                f"{type(err).__name__}: {err}"
            ) from err
    return table

"""The table of masking methods by name, and the factory the configs use.

:data:`MASKING_METHODS` is the one place a built-in method is listed; installed packages add theirs through the
``fader_lightning.masking`` entry points (:mod:`fader_lightning.utils.plugins`). A name that is in neither is refused
when the generator is built.
"""

from __future__ import annotations

import inspect
import logging
from functools import cache
from typing import Any

from fader_lightning.errors import ConfigError
from fader_lightning.masking.attention import AttentionMask
from fader_lightning.masking.base import MaskGenerator
from fader_lightning.masking.checkerboard import CheckerboardMask
from fader_lightning.masking.identity import NoMask
from fader_lightning.masking.random_multi import RandomMultiMask
from fader_lightning.masking.saliency import SpectralResidualSaliencyMask
from fader_lightning.utils.plugins import MASKING_GROUP, with_plugins

log = logging.getLogger(__name__)

MASKING_METHODS: dict[str, type[MaskGenerator]] = {
    cls.name: cls for cls in (AttentionMask, CheckerboardMask, NoMask, RandomMultiMask, SpectralResidualSaliencyMask)
}
"""The built-in masking methods by name (``masking.name`` in the configs; each class states its ``name``)."""


@cache
def masking_methods() -> dict[str, type[MaskGenerator]]:
    """Every masking method by name: the built-in ones, then those of installed packages (entry points).

    Returns:
        The table.

    Raises:
        ConfigError: When a package's method is not a :class:`MaskGenerator` subclass, or its name is taken.
    """
    table = with_plugins(MASKING_METHODS, MASKING_GROUP, "masking method")
    for name, cls in table.items():
        if not (inspect.isclass(cls) and issubclass(cls, MaskGenerator)):
            raise ConfigError(
                f"the masking method {name!r} ({MASKING_GROUP} entry points) is {cls!r}, not a MaskGenerator subclass"
            )
        stated = getattr(cls, "name", None)
        if stated != name:
            raise ConfigError(f"the masking method {name!r} states name={stated!r}; make the two equal")
    return table


def available_methods() -> list[str]:
    """Return the masking method names, sorted.

    Returns:
        Method names.
    """
    return sorted(masking_methods())


def single_mask_problem(name: str) -> str | None:
    """Why FADeR cannot run on a masking method: it needs one deterministic mask per image.

    Args:
        name: A masking method name.

    Returns:
        The reason, naming the method and the ones that qualify; ``None`` when FADeR can run on it.
    """
    methods = masking_methods()
    if not methods[name].partitions:
        return None
    single = ", ".join(method for method in available_methods() if not methods[method].partitions)
    return f"FADeR needs a single deterministic mask; masking={name} makes several passes (use one of: {single})"


def build_mask_generator(name: str, **kwargs: Any) -> MaskGenerator:
    """Construct a masking method by name.

    Args:
        name: Method name, one of :func:`available_methods`.
        **kwargs: Constructor arguments of that method.

    Returns:
        The constructed generator.

    Raises:
        ConfigError: If the name is unknown or a keyword is not a setting of that method.
    """
    cls = masking_methods().get(name)
    if cls is None:
        raise ConfigError(f"name={name!r} is not a masking method; known: {', '.join(available_methods())}")
    accepted = [param for param in inspect.signature(cls.__init__).parameters if param != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{unknown[0]} is not a setting of the {name} masking method"
            + (f" (neither are {', '.join(unknown[1:])})" if unknown[1:] else "")
            + f"; remove it, or use one of: {', '.join(accepted) or '(none)'}"
        )
    log.debug("building masking method %s with %s", name, kwargs)
    return cls(**kwargs)

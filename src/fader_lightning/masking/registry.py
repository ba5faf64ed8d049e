"""Name -> class registry of the masking methods and the factory used by the configs."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fader_lightning.errors import ConfigError
from fader_lightning.masking.base import MaskGenerator

log = logging.getLogger(__name__)

MASKING_METHODS: dict[str, type[MaskGenerator]] = {}
"""dict[str, type[MaskGenerator]]: Every registered masking method by name."""

_G = TypeVar("_G", bound=type[MaskGenerator])


def register(name: str) -> Callable[[_G], _G]:
    """Class decorator that registers a masking method under ``name`` and sets its ``name`` attribute.

    Args:
        name: Registry name (the value of ``masking.name`` in the config).

    Returns:
        The decorator, which returns the class unchanged apart from ``name``.

    Raises:
        ValueError: If another class is already registered under ``name``.
    """

    def decorator(cls: _G) -> _G:
        existing = MASKING_METHODS.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"masking method {name!r} is already registered by {existing.__qualname__}")
        cls.name = name
        MASKING_METHODS[name] = cls
        return cls

    return decorator


def available_methods() -> list[str]:
    """Return the registered masking method names, sorted.

    Returns:
        Method names.
    """
    return sorted(MASKING_METHODS)


def single_mask_problem(name: str) -> str | None:
    """Why FADeR cannot run on a masking method: it needs one deterministic mask per image.

    Args:
        name: A registered method name.

    Returns:
        The reason, naming the method and the ones that qualify; ``None`` when FADeR can run on it.
    """
    if not MASKING_METHODS[name].partitions:
        return None
    single = ", ".join(method for method in available_methods() if not MASKING_METHODS[method].partitions)
    return f"FADeR needs a single deterministic mask; masking={name} makes several passes (use one of: {single})"


def build_mask_generator(name: str, **kwargs: Any) -> MaskGenerator:
    """Construct a registered masking method.

    Args:
        name: Method name, one of :func:`available_methods`.
        **kwargs: Constructor arguments of that method.

    Returns:
        The constructed generator.

    Raises:
        ConfigError: If the name is unknown or a keyword is not a setting of that method.
    """
    cls = MASKING_METHODS.get(name)
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

"""``data.category``: one category, a list of them (unified training), or ``all`` of a dataset's official ones."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from fader_lightning.errors import ConfigError

ALL = "all"
"""``data.category=all``: every official category of the dataset."""
UNIFIED_JOIN = "+"
"""How a unified run names its categories: ``bottle+grid+hazelnut_toy``."""


def parse_categories(value: str | Sequence[str], known: Sequence[str], dataset: str) -> list[str]:
    """The categories ``data.category`` asks for, in the order given.

    Args:
        value: A name, a list of names (``data.category=[bottle,grid]``), or ``all``.
        known: The dataset's official category names (what ``all`` means; empty: ``all`` is refused).
        dataset: The data config's name, for messages.

    Returns:
        The category names, at least one, without repeats.

    Raises:
        ConfigError: For an empty list, a repeated name, a name that is not a plain string, or ``all`` where the
            dataset has no official list.
    """
    if isinstance(value, str):
        if value != ALL:
            return [value]
        if not known:
            raise ConfigError(
                f"data.category=all means every official category, and data={dataset} has no official list; give the "
                "categories as a list: data.category=[a,b,c]"
            )
        return list(known)
    names = list(value)
    if not names:
        raise ConfigError("data.category=[] names no category; give one name, a list data.category=[a,b] or all")
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise ConfigError(f"data.category={names} holds {bad[0]!r}, which is not a category name")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"data.category={names} names {repeated[0]!r} twice; list each category once")
    if ALL in names:
        raise ConfigError(f"data.category={names}: 'all' stands alone (data.category=all), not inside a list")
    return names


def check_present(categories: Sequence[str], root: Path, known: Sequence[str]) -> None:
    """Refuse, before any file is read, the categories of a list that have no folder under the dataset root.

    Every missing one is named at once (with the closest present or official name), so a typo in a list of fifteen
    is found in one try.

    Args:
        categories: The requested categories.
        root: The dataset root (one folder per category).
        known: The official names, for suggestions.

    Raises:
        ConfigError: When a category has no folder.
    """
    if not root.is_dir():
        return  # the dataset's own loader says how to install it
    present = sorted(path.name for path in root.iterdir() if path.is_dir())
    missing = [name for name in categories if name not in present]
    if not missing:
        return
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, sorted(set(present) | set(known)), n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(
        f"data.category lists {', '.join(hints)}, not found under data.root={root}; present there: "
        f"{', '.join(present) or 'nothing'}"
    )


def display_name(categories: Sequence[str]) -> str:
    """The name of a run's data in logs and folder names: the category, or ``a+b+c`` for a unified run."""
    return UNIFIED_JOIN.join(categories)

"""``logs/<task>/latest``: a link to a task's newest run folder (or sweep folder), replaced atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

LATEST = "latest"


def link_latest(task_dir: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path | None:
    """Point ``<task_dir>/latest`` at ``target`` (relative, so a copied ``logs/`` keeps working).

    The link is made under a temporary name and renamed over the old one, so a reader never sees it missing. A
    failure (a file system without links, a ``latest`` that is a real folder) is logged and ignored: the link is a
    convenience, never a reason to stop a job.

    Args:
        task_dir: The task's folder (``logs/train``).
        target: The run or sweep folder, inside ``task_dir``.

    Returns:
        The link, or ``None`` when it could not be made.
    """
    task_dir, target = Path(task_dir), Path(target)
    link = task_dir / LATEST
    if link.exists() and not link.is_symlink():
        log.warning("%s is not a link; leaving it as it is (delete it to get a link to the newest run)", link)
        return None
    tmp = task_dir / f".{LATEST}.{os.getpid()}.tmp"
    try:
        task_dir.mkdir(parents=True, exist_ok=True)  # a run whose hydra.run.dir lies outside logs/ may come first
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(target.resolve(), task_dir.resolve()), target_is_directory=True)
        os.replace(tmp, link)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        log.warning("could not link %s to %s (%s)", link, target, err.strerror or err)
        return None
    return link

"""What a result needs to be traced back to: commit, versions, host."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import lightning
import torch

import fader_lightning


def git_commit(directory: str | Path | None = None) -> str:
    """Return the current git commit (with ``-dirty`` when the tree has changes), or ``unknown``.

    Args:
        directory: Folder inside the repository; defaults to the package's folder.

    Returns:
        The commit hash.
    """
    cwd = Path(directory) if directory else Path(fader_lightning.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def environment() -> dict[str, Any]:
    """Describe the software and hardware a run used.

    Returns:
        Versions of Python, torch, Lightning and this package, the platform and the accelerator.
    """
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "fader_lightning": fader_lightning.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
    }

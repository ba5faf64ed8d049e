"""Whether W&B runs offline: the one rule ``fader-train``'s logger and ``fader-aggregate --wandb`` share.

Light on purpose (no Lightning, no torch), so that ``fader-aggregate`` never loads them.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def wandb_offline() -> bool:
    """Whether W&B runs offline by default: only when the user set nothing that says otherwise.

    Returns ``False`` as soon as ``WANDB_API_KEY`` or ``WANDB_MODE`` is set, or the netrc file (``$NETRC`` or
    ``~/.netrc``, where ``wandb login`` stores its key) has an entry for the W&B host (``$WANDB_BASE_URL``,
    ``api.wandb.ai`` by default); wandb then follows its own settings, ``WANDB_MODE`` included.

    Returns:
        ``True`` when W&B must log offline.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
        return False
    host = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).hostname
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    try:
        return netrc.netrc(str(path)).authenticators(host) is None
    except (OSError, netrc.NetrcParseError):
        return True

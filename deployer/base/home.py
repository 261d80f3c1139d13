"""The data dir: where the local cloud keeps its state, images, caches and run history."""

from __future__ import annotations

import os
from pathlib import Path


def deployer_home() -> Path:
    """``$DEPLOYER_HOME``, else ``$XDG_DATA_HOME/deployer``, else ``~/.local/share/deployer``."""
    explicit = os.environ.get("DEPLOYER_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return (base / "deployer").resolve()

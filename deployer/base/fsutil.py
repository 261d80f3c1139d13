"""Small filesystem helpers shared by the Etherpad profile and the local cloud."""

from __future__ import annotations

import os
from pathlib import Path


def tree_size(root: Path) -> tuple[int, int]:
    """Bytes and number of regular files under ``root``: symlinks not followed, and a file
    hardlinked several times counted once (an image and its clones share their files)."""
    seen: set[tuple[int, int]] = set()
    size = files = 0
    for dirpath, _dirnames, names in os.walk(root):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen or not os.path.isfile(os.path.join(dirpath, name)) or \
                    os.path.islink(os.path.join(dirpath, name)):
                continue
            seen.add(key)
            files += 1
            size += st.st_size
    return size, files

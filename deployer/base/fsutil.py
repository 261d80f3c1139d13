"""Small filesystem helpers shared by the Etherpad profile and the local cloud."""

from __future__ import annotations

import os
from pathlib import Path

from deployer.base.errors import StateError


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


class ForeignFile(StateError):
    """A file this user's tools rely on belongs to another user (``uid``)."""

    def __init__(self, path: Path, uid: int) -> None:
        self.path, self.uid = path, uid
        super().__init__(f"{path} belongs to uid {uid}")


def open_lock_file(path: Path) -> int:
    """Open (create) a lock file read-write, 0600, this user's own; return the descriptor.

    ``flock`` works on any descriptor, a read-only one too: a lock file others may read is a
    lock others may hold. So it is created 0600 (and an older, looser one of ours narrowed to
    0600), never through a symlink, and one another user owns is refused (:class:`ForeignFile`).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise ForeignFile(path, st.st_uid)
    if st.st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd

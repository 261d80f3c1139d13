"""The data dir: where the local cloud keeps its state, images, caches and run history.

Everything in it is trusted: the supervisor's address and pid, the state with the database
password, the lock files. So the data dir must be its user's alone: it is created 0700, and
an existing one owned by another user, or writable by group or others, is refused with one
line (:class:`ConfigError`, exit 1) before anything in it is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from deployer.base.errors import ConfigError


def check_home(path: Path) -> Path:
    """Create ``path`` 0700 if missing (parents too), or check that it is this user's alone."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create the data dir {path}: {exc.strerror}",
                          hint="set DEPLOYER_HOME to a directory you may write") from None
    st = os.stat(path)  # after resolve(): a symlink's target is what is checked
    uid = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"the data dir {path} is not a directory",
                          hint="set DEPLOYER_HOME to a directory of your own")
    if st.st_uid != uid:
        raise ConfigError(f"the data dir {path} is owned by uid {st.st_uid}, not by you "
                          f"(uid {uid}): its state could be anyone's",
                          hint="set DEPLOYER_HOME to a directory of your own, or chown it")
    if st.st_mode & 0o022:
        raise ConfigError(f"the data dir {path} is writable by group or others "
                          f"(mode {stat.S_IMODE(st.st_mode):o})",
                          hint=f"chmod 700 {path}")
    return path


def deployer_home() -> Path:
    """``$DEPLOYER_HOME``, else ``$XDG_DATA_HOME/deployer``, else ``~/.local/share/deployer``.

    Created 0700 when missing; checked (:func:`check_home`) when it exists.
    """
    explicit = os.environ.get("DEPLOYER_HOME")
    if explicit:
        return check_home(Path(explicit).expanduser().resolve())
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return check_home((base / "deployer").resolve())

"""Environment locks: one deployer run per environment at a time.

A run that changes an environment (``release``, ``up``, ``down``) holds a lock file for its
whole length: ``$DEPLOYER_HOME/locks/<strategy>.lock`` (``<target>-<strategy>.lock`` for a
target other than the local cloud), locked with ``flock(2)``. The file names its owner —
pid, command line, release, since when — so a second run is refused with one line that
says who holds the environment and for how long.

Lock files are 0600 in a 0700 directory: ``flock`` works on a read-only descriptor, so a
lock file another user may read is one another user may hold. One owned by another user is
refused, and a lock held by another user's process (an older, looser file opened before it
was narrowed) is refused with one line that names that process: it is no deployer run.

``flock`` locks belong to the open file and vanish with the process, so the lock of a
deployer that was killed (even ``kill -9``) is free at once: the next run takes it over and
logs whose it was. The owner record left in the file is only information, never the lock.

The local cloud's supervisor has its own guard (one operation per stack, ``LockedError``);
this lock is the client-side one that keeps two release runs — two bakes, two pollers, two
reports — from interleaving on one environment.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, ValidationError

from deployer.base import logs
from deployer.base.errors import LockedError
from deployer.base.fsutil import ForeignFile, open_lock_file
from deployer.base.home import deployer_home
from deployer.base.processes import lock_holders, pid_alive

# A run that just took the lock writes its owner record right after; a reader refused in
# that instant waits this long for the record before calling the owner unknown.
OWNER_WAIT_S = 0.5


class LockOwner(BaseModel):
    """Who holds an environment lock (the JSON inside the lock file)."""

    pid: int
    command: str  # the deployer command line, e.g. "deployer release 1.8.18 --strategy packer"
    action: str  # release | up | down
    release: str | None = None
    host: str = ""
    since: float

    def describe(self, now: float | None = None) -> str:
        age = max(0.0, (now or time.time()) - self.since)
        release = f", release {self.release}" if self.release else ""
        return f"pid {self.pid} ({self.command}){release}, held for {_age(age)}"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def lock_path(strategy: str, target: str = "local", home: Path | None = None) -> Path:
    name = strategy if target == "local" else f"{target}-{strategy}"
    return (home or deployer_home()) / "locks" / f"{name}.lock"


def current_command() -> str:
    return " ".join(["deployer", *sys.argv[1:]])


class EnvironmentLock:
    """The lock of one environment. Not re-entrant; one holder per open file."""

    def __init__(self, strategy: str, *, target: str = "local", home: Path | None = None) -> None:
        self.strategy = strategy
        self.target = target
        self.path = lock_path(strategy, target, home)
        self._file: TextIO | None = None
        self.taken_over: LockOwner | None = None  # the dead owner whose lock this run took

    @property
    def held(self) -> bool:
        return self._file is not None

    def read_owner(self) -> LockOwner | None:
        try:
            return LockOwner.model_validate_json(self.path.read_text() or "{}")
        except (OSError, ValidationError, ValueError):
            return None

    def acquire(self, action: str, *, release: str | None = None,
                command: str | None = None) -> LockOwner:
        """Take the lock or raise :class:`LockedError` naming its owner."""
        if self._file is not None:
            raise LockedError(f"the {self.strategy} environment lock is already held by this run")
        try:
            fd = open_lock_file(self.path)
        except ForeignFile as foreign:
            raise LockedError(f"the {self.strategy} environment's lock file {self.path} "
                              f"belongs to uid {foreign.uid}, not to you: another user made it",
                              hint=f"remove {self.path}") from None
        handle = open(fd, "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            others = [(pid, uid) for pid, uid in lock_holders(fd) if uid != os.geteuid()]
            handle.close()
            if others:
                pid, uid = others[0]
                raise LockedError(
                    f"the {self.strategy} environment's lock {self.path} is held by pid {pid} "
                    f"of uid {uid}, another user: no deployer run of yours",
                    hint=f"stop that process, or remove {self.path} (it is 0600 from now on)"
                ) from None
            raise self._refusal() from None
        previous = self.read_owner()
        owner = LockOwner(pid=os.getpid(), command=command or current_command(), action=action,
                          release=release, host=socket.gethostname(), since=time.time())
        handle.seek(0)
        handle.truncate()
        handle.write(owner.model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
        self._file = handle
        if previous is not None and previous.pid != os.getpid():
            # Its process ended without releasing (killed): its record is all that is left.
            self.taken_over = previous
            logs.get_logger().warning(
                "lock.taken_over", lock=str(self.path), previous_pid=previous.pid,
                previous_command=previous.command, previous_alive=pid_alive(previous.pid))
        return owner

    def _refusal(self) -> LockedError:
        deadline = time.monotonic() + OWNER_WAIT_S
        owner = self.read_owner()
        while owner is None and time.monotonic() < deadline:
            time.sleep(0.05)
            owner = self.read_owner()
        holder = owner.describe() if owner else "another deployer (owner not recorded yet)"
        where = "" if self.target == "local" else f" on {self.target}"
        return LockedError(f"the {self.strategy} environment{where} is locked by {holder}",
                           hint=f"wait for that run to finish; the lock is {self.path}")

    def release(self) -> None:
        """Give the lock up; the file stays (truncated) so no other run's lock is unlinked."""
        handle, self._file = self._file, None
        if handle is None:
            return
        try:
            handle.seek(0)
            handle.truncate()
            handle.flush()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


@contextmanager
def environment_locks(strategies: list[str], action: str, *, release: str | None = None,
                      target: str = "local") -> Iterator[list[EnvironmentLock]]:
    """Hold the locks of ``strategies`` (in a fixed order, so two runs never deadlock)."""
    held: list[EnvironmentLock] = []
    try:
        for strategy in sorted(set(strategies)):
            lock = EnvironmentLock(strategy, target=target)
            lock.acquire(action, release=release)
            held.append(lock)
        yield held
    finally:
        for lock in reversed(held):
            lock.release()


@contextmanager
def environment_lock(strategy: str, action: str, *, release: str | None = None,
                     target: str = "local") -> Iterator[EnvironmentLock]:
    with environment_locks([strategy], action, release=release, target=target) as held:
        yield held[0]


__all__ = ["EnvironmentLock", "LockOwner", "environment_lock", "environment_locks",
           "lock_path"]

"""Questions about processes: is one alive, which carry a marker, does a group still run.

A zombie is not alive: it has exited and waits to be reaped (a container's init may never
reap it). The answers come from psutil rather than from reading ``/proc`` by hand: it
parses ``stat`` and ``environ`` the same way, turns the races of a process that exits
while it is read into one exception, and answers on macOS too, where there is no ``/proc``.
"""

from __future__ import annotations

import os

import psutil

_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return psutil.Process(pid).status() not in _GONE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def has_environ(pid: int, name: str, value: str) -> bool:
    """Whether a live process ``pid`` was started with ``name=value`` in its environment."""
    try:
        process = psutil.Process(pid)
        return process.environ().get(name) == value and process.status() not in _GONE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def pids_with_environ(name: str, value: str) -> list[int]:
    """Every live process started with ``name=value`` in its environment, wherever it moved."""
    pids = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(name) == value and process.status() not in _GONE:
                pids.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return pids


def group_alive(pgid: int) -> bool:
    """Whether a process group has a member that is not a zombie (kill(2) counts zombies)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() not in _GONE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


def module_args(pid: int, module: str) -> list[str] | None:
    """The arguments of live ``pid`` if it is this user's ``python -m module``, else None.

    A pid read from a file is only a number: after a crash or a reboot it may be another
    program's, or another user's. This asks the process itself (its command line and owner).
    """
    try:
        process = psutil.Process(pid)
        if process.status() in _GONE or process.uids().real != os.getuid():
            return None
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    try:
        at = cmdline.index("-m")
    except ValueError:
        return None
    return cmdline[at + 2:] if cmdline[at + 1:at + 2] == [module] else None


def lock_holders(fd: int) -> list[tuple[int, int]]:
    """(pid, uid) of the processes holding a ``flock`` on the file open at ``fd`` (Linux).

    ``/proc/locks`` names the holder's pid and the file's device and inode. Empty when it
    cannot tell (no ``/proc``, or the holder is gone).
    """
    st = os.fstat(fd)
    holders: list[tuple[int, int]] = []
    try:
        lines = open("/proc/locks").read().splitlines()
    except OSError:
        return holders
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
        except ValueError:
            continue
        if int(inode) != st.st_ino or os.makedev(int(major, 16), int(minor, 16)) != st.st_dev:
            continue
        try:
            holders.append((pid, psutil.Process(pid).uids().real))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return holders

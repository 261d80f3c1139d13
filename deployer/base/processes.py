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

"""Environment locks: one run per environment, the refusal names the owner, dead owners lose it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployer.base.errors import LockedError
from deployer.core.locks import EnvironmentLock, LockOwner, environment_locks, lock_path


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    return tmp_path


def test_second_holder_is_refused_with_the_owner_and_its_age(home: Path):
    first = EnvironmentLock("packer")
    first.acquire("release", release="1.8.18", command="deployer release 1.8.18 -s packer")
    assert first.path == home / "locks" / "packer.lock"
    with pytest.raises(LockedError) as refused:
        EnvironmentLock("packer").acquire("release", release="1.8.19")
    message = str(refused.value)
    assert "\n" not in message
    assert f"pid {os.getpid()}" in message
    assert "(deployer release 1.8.18 -s packer)" in message
    assert "release 1.8.18" in message
    assert re.search(r"held for \d+s", message)
    assert str(first.path) in message
    first.release()
    second = EnvironmentLock("packer")
    second.acquire("release", release="1.8.19")
    assert second.taken_over is None  # released cleanly: nothing to take over
    second.release()


def test_other_environments_and_targets_are_independent():
    with environment_locks(["packer"], "release"):
        other = EnvironmentLock("codedeploy")
        other.acquire("release")
        other.release()
        aws = EnvironmentLock("packer", target="aws")
        aws.acquire("release")
        assert aws.path.name == "aws-packer.lock"
        aws.release()


def test_the_lock_of_a_killed_process_is_taken_over(home: Path):
    script = ("import sys, time; from deployer.core.locks import EnvironmentLock;"
              "lock = EnvironmentLock('cloudformation'); lock.acquire('release', release='2.0');"
              "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "DEPLOYER_HOME": str(home)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"pid {holder.pid} "):
            EnvironmentLock("cloudformation").acquire("release")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
        holder.wait()
    lock = EnvironmentLock("cloudformation")
    lock.acquire("release", release="3.0")
    assert lock.taken_over is not None and lock.taken_over.pid == holder.pid
    assert lock.taken_over.release == "2.0"
    assert LockOwner.model_validate_json(lock.path.read_text()).pid == os.getpid()
    lock.release()


def test_a_stale_record_without_a_holder_is_taken_over(home: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = lock_path("codedeploy")
    path.parent.mkdir(parents=True)
    path.write_text(LockOwner(pid=int(dead.stdout), command="deployer release 9", action="release",
                              since=time.time() - 3600).model_dump_json())
    lock = EnvironmentLock("codedeploy")
    lock.acquire("up")
    assert lock.taken_over is not None and lock.taken_over.command == "deployer release 9"
    lock.release()
    assert path.read_text() == ""


def test_a_refused_group_gives_back_what_it_took():
    blocker = EnvironmentLock("packer")
    blocker.acquire("release")
    with pytest.raises(LockedError):
        with environment_locks(["codedeploy", "packer", "cloudformation"], "down"):
            pass
    blocker.release()
    for name in ("cloudformation", "codedeploy"):
        lock = EnvironmentLock(name)
        lock.acquire("up")  # free again: the refused group released it
        lock.release()


def test_an_unwritten_owner_is_reported_as_unknown(home: Path, monkeypatch):
    import fcntl

    monkeypatch.setattr("deployer.core.locks.OWNER_WAIT_S", 0.1)
    path = lock_path("packer")
    path.parent.mkdir(parents=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(LockedError, match="owner not recorded yet"):
            EnvironmentLock("packer").acquire("release")

"""Drills of the deployer process itself, through the real CLI and the stand-in app's stack.

The stack is released by a plug-in strategy (``fixture``, tests/drills/fixture_strategy.py):
the same CLI, engine, locks, poller, reports and local cloud as the built-in strategies, with
an app that starts in half a second.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from deployer.base.errors import LockedError
from deployer.core.locks import LockOwner, lock_path
from deployer.localcloud.client import LocalCloud
from tests.drills.conftest import Cli, Watch, error_lines, wait_for

pytestmark = pytest.mark.slow


def stack_status(home: Path) -> str | None:
    record = LocalCloud(home).state().stacks.get("etherpad-fixture")
    return record.status.value if record else None


def test_deployer_killed_mid_rollout_the_cloud_finishes_and_the_next_release_works(
        cli: Cli, home: Path, tmp_path: Path, drill):
    drill.title = "the deployer process is killed mid-rollout (SIGKILL)"
    drill.app = "stand-in"
    drill.expected = ("the supervisor finishes the update; the next status shows the true "
                      "state; the next release takes the dead run's lock and succeeds; no failed "
                      "probe")
    cli.run("up", "--strategy", "fixture", "--version", "1.0", check=True)
    watch = Watch(cli.environment()["url"])
    run = cli.start("release", "2.0", "--strategy", "fixture", "--editors", "0")
    wait_for(lambda: stack_status(home) == "UPDATE_IN_PROGRESS", 60, step=0.05,
             what="the stack update to start")
    os.kill(run.pid, signal.SIGKILL)
    run.communicate(timeout=10)

    first = cli.environment()
    assert first["status"] in ("UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"), first["status"]
    assert first["parameters"]["EtherpadVersion"] == "2.0"  # what the cloud is doing, truly
    wait_for(lambda: stack_status(home) == "UPDATE_COMPLETE", 120,
             what="the supervisor to finish the update")
    finished = cli.environment()
    assert [i["release"] for i in finished["instances"]] == ["2.0"]
    assert all(i["target_health"] == "healthy" for i in finished["instances"])
    stale = LockOwner.model_validate_json(lock_path("fixture", home=home).read_text())
    assert stale.pid == run.pid  # the killed run's record, but no longer its lock

    report_file = tmp_path / "release.json"
    again = cli.run("release", "3.0", "--strategy", "fixture", "--editors", "0", "--json", str(report_file))
    analysis = watch.stop()
    drill.probes(analysis)
    assert again.returncode == 0, again.stderr[-3000:]
    taken = [json.loads(line) for line in again.stderr.splitlines()
             if line.startswith("{") and '"lock.taken_over"' in line]
    assert taken and taken[0]["previous_pid"] == run.pid
    report = json.loads(report_file.read_text())
    assert report["outcome"] == "succeeded" and report["served_versions"] == ["3.0"]
    assert report["from_release"] == "2.0"
    assert report["probes"]["failed"] == 0
    assert analysis.probes.failed == 0, analysis.downtime_windows
    drill.result = (f"status right after the kill: {first['status']}; the supervisor finished "
                    f"it (UPDATE_COMPLETE on 2.0); the next release took over the lock of pid "
                    f"{run.pid} and served 3.0")


def test_two_releases_at_once_the_second_is_refused_naming_the_first(cli: Cli, home: Path,
                                                                      drill):
    drill.title = "two releases on one environment at once"
    drill.app = "stand-in"
    drill.expected = ("the second (and a down) is refused in one line naming the owner (pid, "
                      "command, release) and its age, exit 1; the first completes; no failed "
                      "probe")
    cli.run("up", "--strategy", "fixture", "--version", "1.0", check=True)
    watch = Watch(cli.environment()["url"])
    first = cli.start("release", "2.0", "--strategy", "fixture", "--editors", "0")

    def owner() -> LockOwner | None:
        try:
            found = LockOwner.model_validate_json(lock_path("fixture", home=home).read_text())
        except (OSError, ValueError):
            return None
        return found if found.pid == first.pid else None

    wait_for(owner, 30, step=0.05, what="the first release to take the lock")
    second = cli.run("release", "3.0", "--strategy", "fixture", "--editors", "0")
    down = cli.run("down", "--strategy", "fixture")
    # The supervisor's own guard stays: one operation per stack, whoever asks.
    wait_for(lambda: stack_status(home) == "UPDATE_IN_PROGRESS", 60, step=0.05,
             what="the first release's stack update")
    with pytest.raises(LockedError, match="etherpad-fixture is in UPDATE_IN_PROGRESS"):
        LocalCloud(home).update_stack("fixture", {"EtherpadVersion": "9.0"}, lambda e: None)
    _out, err = first.communicate(timeout=180)
    analysis = watch.stop()
    drill.probes(analysis)

    assert second.returncode == 1, second.stderr[-2000:]
    lines = error_lines(second.stderr)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("deployer: error: the fixture environment is locked by ")
    assert f"pid {first.pid} (deployer --log-format json release 2.0 --strategy fixture --editors 0)" in line
    assert "release 2.0, held for " in line and "locks/fixture.lock" in line
    assert "Traceback" not in second.stderr
    assert down.returncode == 1 and "is locked by pid" in error_lines(down.stderr)[0]
    assert first.returncode == 0, err[-3000:]
    env = cli.environment()
    assert env["status"] == "UPDATE_COMPLETE" and env["release"] == "2.0"
    assert analysis.probes.failed == 0, analysis.downtime_windows
    drill.result = f"second release refused: `{line.removeprefix('deployer: error: ')}`; the first completed"

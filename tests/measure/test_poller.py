"""The health poller against a server that misbehaves on a script."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deployer.base.errors import UsageError
from deployer.measure.analysis import analyse
from deployer.measure.poller import HealthPoller
from tests.support.scripted_server import ScriptedServer

HZ = 20.0
INTERVAL = 1.0 / HZ
TOLERANCE = 2 * INTERVAL  # the bound: within two probe intervals


@pytest.fixture
def server():
    srv = ScriptedServer(commit="c85ab49")
    yield srv
    srv.close()


def run_script(poller: HealthPoller, steps: list[tuple[float, callable]], end: float) -> float:
    """Run (at_seconds, action) steps on the poller's clock; return the script's end time."""
    for at, action in steps:
        delay = poller.t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        action()
    delay = poller.t0 + end - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return end


def test_windows_classes_and_version_timeline(server):
    server.hang_seconds = 1.5
    poller = HealthPoller(server.url, hz=HZ, timeout=0.5)
    poller.start()
    steps = [
        (1.0, server.set_refuse), (1.3, server.set_ok),
        (2.0, lambda: server.set_status(503)), (2.2, server.set_ok),
        (3.0, server.set_hang), (3.3, server.set_ok),
        (4.0, lambda: server.set_ok(commit="4b96ff6")),
    ]
    run_script(poller, steps, end=5.0)
    probes = poller.stop()
    a = analyse(probes, url=server.url, hz=HZ, duration_s=5.0)

    assert not a.zero_downtime
    windows = a.downtime_windows
    # Closing a listener also resets connections still queued in its backlog: as when a
    # real server process dies, the refusal window may open with a reset.
    assert len(windows) == 3, windows
    assert "refused" in windows[0].by_class and set(windows[0].by_class) <= {"refused", "reset"}
    assert list(windows[1].by_class) == ["http_503"]
    assert list(windows[2].by_class) == ["timeout"]
    for window, (start, length) in zip(windows, [(1.0, 0.3), (2.0, 0.2), (3.0, 0.3)], strict=False):
        assert abs(window.start_s - start) <= TOLERANCE, window
        assert abs(window.end_s - (start + length)) <= TOLERANCE, window
        assert abs(window.duration_ms - length * 1000) <= TOLERANCE * 1000, window
    assert {"refused", "http_503", "timeout"} <= set(a.probes.by_class)
    assert a.probes.failed == sum(w.failed for w in windows)

    old, new = a.versions
    assert (old.version, new.version) == ("1.8.17", "1.8.18")
    assert old.first_s <= TOLERANCE
    assert abs(old.last_s - 4.0) <= TOLERANCE
    assert abs(new.first_s - 4.0) <= TOLERANCE
    assert abs(new.last_s - 5.0) <= TOLERANCE
    assert a.mixed_window_ms <= TOLERANCE * 1000
    # The longest silence users saw is the hang: probes sent from 3.0 to 3.3 never answered.
    assert 300 - TOLERANCE * 1000 <= a.longest_gap_ms <= 300 + 2 * TOLERANCE * 1000


def test_hanging_probes_do_not_delay_the_schedule(server):
    server.hang_seconds = 3.0
    server.set_hang()
    poller = HealthPoller(server.url, hz=HZ, timeout=2.0)
    probes = poller.run_for(1.5)
    # Every probe hung for the whole timeout, yet they kept going out on their ticks: a
    # schedule held up by hanging probes would show gaps as long as the 2 s timeout.
    sent = [p.sent_s for p in probes]
    gaps = sorted(b - a for a, b in itertools.pairwise(sent))
    assert len(probes) >= 1.5 * HZ - 1
    assert all(p.outcome == "timeout" for p in probes)
    assert gaps[-1] < 0.25 * 2.0
    assert abs(gaps[len(gaps) // 2] - INTERVAL) < 0.2 * INTERVAL


def test_reset_is_its_own_class(server):
    server.set_reset()
    probes = HealthPoller(server.url, hz=HZ, timeout=1.0).run_for(0.5)
    assert probes and {p.outcome for p in probes} == {"reset"}


def test_clean_run_reports_zero_downtime(server):
    poller = HealthPoller(server.url, hz=HZ, timeout=1.0)
    probes = poller.run_for(5.0)
    a = analyse(probes, url=server.url, hz=HZ, duration_s=5.0)
    assert a.zero_downtime
    assert a.probes.failed == 0 and a.downtime_windows == []
    # Ticks the scheduler reached late on a loaded machine are skipped, never bunched.
    assert a.probes.total + poller.skipped >= 5.0 * HZ - 2
    assert a.probes.total >= 0.8 * 5.0 * HZ
    assert [v.version for v in a.versions] == ["1.8.17"]
    # Generous: on a loaded 2-core machine a probe can take a while to be answered.
    assert a.longest_gap_ms <= 5 * TOLERANCE * 1000


def test_dns_failure_is_classified():
    probes = HealthPoller("http://no-such-host.invalid/", hz=10, timeout=1.0).run_for(0.3)
    assert probes and {p.outcome for p in probes} == {"dns"}


@pytest.mark.parametrize("url", ["foo", "ftp://x/", "http://", "http://h:99999/"])
def test_bad_urls_are_usage_errors(url):
    with pytest.raises(UsageError, match="bad URL"):
        HealthPoller(url)


@pytest.mark.parametrize("hz", [0, -5, 5000])
def test_bad_rates_are_usage_errors(hz):
    with pytest.raises(UsageError, match="probe rate"):
        HealthPoller("http://127.0.0.1/", hz=hz)


# -- the CLI, as a user runs it -------------------------------------------------------------
def deployer(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployer", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_probe_exits_0_without_outage_and_writes_reports(server, tmp_path: Path):
    result = deployer("probe", server.url, "--duration", "1.5", "--json",
                      str(tmp_path / "p.json"), "--junit", str(tmp_path / "p.xml"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["zero_downtime"] is True
    assert report["probes"]["failed"] == 0 and report["probes"]["ok"] == report["probes"]["total"]
    for key in ("downtime_windows", "longest_gap_ms", "versions", "mixed_window_ms"):
        assert key in report
    assert report["versions"][0]["version"] == "1.8.17"
    junit = (tmp_path / "p.xml").read_text()
    assert 'failures="0"' in junit and "<failure" not in junit


def test_probe_exits_3_when_the_target_had_an_outage(server, tmp_path: Path):
    threading.Timer(0.5, server.set_refuse).start()
    threading.Timer(0.9, server.set_ok).start()
    result = deployer("probe", server.url, "--duration", "1.5", "--json",
                      str(tmp_path / "p.json"), "--junit", str(tmp_path / "p.xml"))
    assert result.returncode == 3, result.stderr
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["zero_downtime"] is False
    assert report["probes"]["by_class"]["refused"] >= 1
    assert len(report["downtime_windows"]) == 1
    assert "<failure" in (tmp_path / "p.xml").read_text()


@pytest.mark.parametrize("args, fragment", [
    (["probe", "http://127.0.0.1:9/", "--bogus"], "No such option: --bogus"),
    (["probe", "not-a-url"], "bad URL 'not-a-url'"),
    (["probe", "http://127.0.0.1:9/", "--hz", "-5"], "probe rate"),
    (["probe", "http://127.0.0.1:9/", "--duration", "0"], "duration must be positive"),
    (["frobnicate"], "No such command"),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    result = deployer(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("deployer: error: ") and fragment in lines[0]
    assert "Traceback" not in result.stderr

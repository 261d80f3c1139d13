"""Fixtures for failure drills: a local cloud of its own per test, a poller, the real CLI.

Each drill gets a fresh ``$DEPLOYER_HOME``; at the end every environment is removed and no
process of that cloud may be left behind (instances, hooks, the supervisor).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer.localcloud.client import LocalCloud
from deployer.localcloud.compute.instances import MARKER
from deployer.measure.analysis import ProbeAnalysis, analyse
from deployer.measure.poller import HealthPoller
from tests.drills.fixture_strategy import FIXTURES, install_plugin
from tests.helpers import processes_with

REPO = Path(__file__).resolve().parents[2]
APP = FIXTURES / "app.py"
APP_STACK = FIXTURES / "app-stack.yaml"
CD_STACK = FIXTURES / "codedeploy-stack.yaml"


def instance_processes(home: Path) -> list[int]:
    return processes_with(MARKER.encode(), home)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Watch:
    """The health poller on the load balancer for the length of a drill step."""

    def __init__(self, url: str, hz: float = 20.0) -> None:
        self.poller = HealthPoller(url, hz=hz, timeout=2.0)
        self.poller.start()

    def stop(self, settle_s: float = 0.5) -> ProbeAnalysis:
        time.sleep(settle_s)
        probes = self.poller.stop()
        return analyse(probes, url=self.poller.url, hz=self.poller.hz,
                       duration_s=max((p.sent_s for p in probes), default=0.0))


def wait_for(check: Callable[[], object], timeout: float, step: float = 0.25,
             what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


def _teardown(home: Path, cloud: LocalCloud) -> None:
    try:
        cloud._url = None
        cloud.destroy_all(lambda event: None)
    finally:
        deadline = time.monotonic() + 30
        while instance_processes(home) and time.monotonic() < deadline:
            time.sleep(0.2)
        leftovers = instance_processes(home)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        supervisor = cloud.supervisor_info()
        if supervisor:
            os.kill(int(supervisor["pid"]), signal.SIGKILL)
        assert not leftovers, f"processes left behind: {[cmdline(p) for p in leftovers]}"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    # Instances inherit DEPLOYER_HOME: it lets the drill find every process of this cloud.
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    return home


@pytest.fixture
def cloud(home: Path):
    cloud = LocalCloud(home)
    cloud.events = []  # type: ignore[attr-defined]
    yield cloud
    _teardown(home, cloud)


def stand_in_parameters(release: str, **extra: str) -> dict[str, str]:
    return {"EtherpadVersion": release, "AppScript": str(APP), "StartDelay": "0.5", **extra}


class Cli:
    """``python -m deployer`` in a subprocess, on the drill's data dir, JSON logs on stderr."""

    def __init__(self, home: Path, plugins: Path) -> None:
        self.home = home
        self.env = {**os.environ, "DEPLOYER_HOME": str(home),
                    "PYTHONPATH": os.pathsep.join([str(plugins), str(REPO),
                                                   os.environ.get("PYTHONPATH", "")])}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "deployer", "--log-format", "json", *args]

    def run(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*args), capture_output=True, text=True,
                                timeout=timeout, env={**self.env, **(env or {})}, cwd=REPO)
        if check:
            assert result.returncode == 0, result.stderr[-3000:]
        return result

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=REPO,
                                env={**self.env, **(env or {})})

    def status(self) -> dict:
        return json.loads(self.run("status", "--json", check=True).stdout)

    def environment(self, strategy: str = "fixture") -> dict | None:
        return next((e for e in self.status()["environments"] if e["strategy"] == strategy),
                    None)


@pytest.fixture
def cli(home: Path, tmp_path: Path):
    cli = Cli(home, install_plugin(tmp_path / "plugins"))
    yield cli
    _teardown(home, LocalCloud(home))


def error_lines(stderr: str) -> list[str]:
    """The lines a user reads on stderr, without the JSON log lines."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]

"""The live view on a terminal: the current phase with its elapsed seconds, the instances and
their targets, and probe health so far, redrawn a few times a second (rich Live).

It is a :class:`~deployer.core.compare.CompareObserver` (so also a run observer): the engine feeds
it phases, cloud events and every probe; the instances and target states it reads from the
cloud itself, once a second, on a thread of its own. Only the CLI uses it; the engine never
imports rich.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from deployer.base.errors import DeployerError
from deployer.cloud.port import CloudPort, Event
from deployer.core.compare import CompareObserver
from deployer.measure.poller import Probe
from deployer.report.history import RunRole

STATE_STYLE = {"healthy": "green", "initial": "yellow", "unhealthy": "red",
               "draining": "dark_orange", "unused": "dim"}


class LiveView(CompareObserver):
    """Shows one release run, or each run of a compare in turn."""

    def __init__(self, console: Console, cloud: CloudPort, *, poll_s: float = 1.0) -> None:
        self.console = console
        self.cloud = cloud
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.heading = ""
        self.run_id = self.release = ""
        self.compare_line = ""
        self.strategy: str | None = None
        self.phase: str | None = None
        self._phase_t0 = 0.0
        self.done: list[tuple[str, float, bool]] = []
        self.ok = self.failed = 0
        self.by_class: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.last_version: str | None = None
        self.events: deque[str] = deque(maxlen=5)
        self._run_t0 = 0.0
        self.instances: list[tuple[str, str, str | None, str | None]] = []
        self.editors: Callable[[], dict[str, int]] | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> LiveView:
        self._live = Live(console=self.console, refresh_per_second=4, transient=True,
                          get_renderable=self.render)
        self._live.start()
        self._poller = threading.Thread(target=self._poll_cloud, name="live-view", daemon=True)
        self._poller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._poller:
            self._poller.join(timeout=5)
        if self._live:
            self._live.stop()

    def _poll_cloud(self) -> None:
        while not self._stop.wait(self.poll_s):
            strategy = self.strategy
            if not strategy:
                continue
            try:
                view = self.cloud.describe_environment(strategy)
            except DeployerError:
                continue  # the supervisor may be busy or restarting: next second
            rows = [(i.instance_id, i.state, i.release, i.target_health)
                    for i in (view.instances if view else [])]
            with self._lock:
                self.instances = rows

    # -- what the engine tells ----------------------------------------------------------------
    def compare_run_started(self, strategy: str, repetition: int, repeat: int, role: RunRole,
                            index: int, count: int) -> None:
        what = "reset to the starting release" if role is RunRole.RESET else "measured release"
        with self._lock:
            self.compare_line = (f"compare: {strategy} ({index} of {count}"
                                 + (f", repetition {repetition} of {repeat}" if repeat > 1
                                    else "") + f") — {what}")

    def run_started(self, run_id: str, strategy: str, release: str,
                    from_release: str | None) -> None:
        with self._lock:
            self.run_id, self.release = run_id, release
            self.heading = f"release {release} via {strategy} — run {run_id}"
            self.strategy = strategy
            self.phase, self.done = None, []
            self.ok = self.failed = 0
            self.by_class, self.versions, self.last_version = {}, {}, None
            self.events.clear()
            self.instances = []
            self.editors = None
            self._run_t0 = time.monotonic()

    def environment_ready(self, url: str | None, from_release: str | None) -> None:
        with self._lock:
            self.heading = (f"release {self.release} via {self.strategy}"
                            + (f" (from {from_release})" if from_release else "")
                            + (f" at {url}" if url else "") + f" — run {self.run_id}")

    def phase_started(self, name: str) -> None:
        with self._lock:
            self.phase, self._phase_t0 = name, time.monotonic()

    def phase_ended(self, name: str, seconds: float, ok: bool) -> None:
        with self._lock:
            self.done.append((name, seconds, ok))
            if self.phase == name:
                self.phase = None

    def probe(self, probe: Probe) -> None:
        with self._lock:
            if probe.ok:
                self.ok += 1
                if probe.version:
                    self.versions[probe.version] = self.versions.get(probe.version, 0) + 1
                    self.last_version = probe.version
            else:
                self.failed += 1
                self.by_class[probe.outcome] = self.by_class.get(probe.outcome, 0) + 1

    def editors_started(self, status: Callable[[], dict[str, int]]) -> None:
        with self._lock:
            self.editors = status

    def event(self, event: Event) -> None:
        at = time.monotonic() - self._run_t0
        line = f"{at:6.1f}s  {event.resource} {event.status}"
        if event.reason:
            line += f": {event.reason}"
        with self._lock:
            self.events.append(line[:160])

    # -- drawing ------------------------------------------------------------------------------
    def render(self) -> Group:
        with self._lock:
            lines: list = []
            if self.compare_line:
                lines.append(Text(self.compare_line, style="bold cyan"))
            lines.append(Text(self.heading or "starting…", style="bold"))
            phases = Text()
            for name, seconds, ok in self.done:
                phases.append(f"{name} {seconds:.1f}s ", style="green" if ok else "red")
                phases.append("· ", style="dim")
            if self.phase:
                phases.append(f"{self.phase} {time.monotonic() - self._phase_t0:.1f}s …",
                              style="bold yellow")
            lines.append(phases)
            probes = Text("probes: ")
            probes.append(f"{self.ok} ok", style="green")
            probes.append(", ")
            probes.append(f"{self.failed} failed", style="red" if self.failed else "green")
            if self.by_class:
                probes.append(" (" + ", ".join(f"{k} {n}" for k, n in self.by_class.items())
                              + ")", style="red")
            if self.versions:
                probes.append("   answered by: " + ", ".join(
                    f"{v} {n}" for v, n in self.versions.items()))
            lines.append(probes)
            if self.editors is not None:
                lines.append(editors_line(self.editors()))
            if self.instances:
                table = Table(box=None, padding=(0, 2), show_header=True, header_style="dim")
                for column in ("instance", "state", "release", "target"):
                    table.add_column(column)
                for instance_id, state, release, health in self.instances:
                    table.add_row(instance_id, state, release or "—",
                                  Text(health or "—", style=STATE_STYLE.get(health or "", "")))
                lines.append(table)
            for line in self.events:
                lines.append(Text(line, style="dim"))
        return Group(*lines)


def editors_line(counts: dict[str, int]) -> Text:
    """``editors: 5 connected, 1 reconnecting, 0 gone`` (and still loading, when any)."""
    line = Text("editors: ")
    line.append(f"{counts.get('connected', 0)} connected", style="green")
    reconnecting, gone = counts.get("reconnecting", 0), counts.get("gone", 0)
    line.append(", ")
    line.append(f"{reconnecting} reconnecting", style="dark_orange" if reconnecting else "green")
    line.append(", ")
    line.append(f"{gone} gone", style="red" if gone else "green")
    if counts.get("loading"):
        line.append(f", {counts['loading']} loading", style="yellow")
    return line

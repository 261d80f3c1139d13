"""The live view a terminal shows during a release or a compare."""

from __future__ import annotations

import io
import time

from rich.console import Console

from deployer.cli.live import LiveView
from deployer.cloud.port import EnvironmentView, Event, InstanceView
from deployer.measure.poller import Probe
from deployer.report.history import RunRole


class OneEnvironment:
    """Just what the live view reads from a cloud."""

    def __init__(self) -> None:
        self.calls = 0

    def describe_environment(self, strategy: str) -> EnvironmentView:
        self.calls += 1
        return EnvironmentView(
            strategy=strategy, stack_name=f"etherpad-{strategy}", stack_status="UPDATE_IN_PROGRESS",
            url="http://127.0.0.1:1/", instances=[
                InstanceView(instance_id="i-old", state="running", release="1.8.17",
                             target_health="draining"),
                InstanceView(instance_id="i-new", state="running", release="1.8.18",
                             target_health="healthy")])


def text_of(view: LiveView) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(view.render())
    return console.file.getvalue()


def test_live_view_shows_phase_probes_instances_and_events():
    cloud = OneEnvironment()
    view = LiveView(Console(file=io.StringIO(), force_terminal=True), cloud, poll_s=0.05)
    with view:
        view.compare_run_started("packer", 1, 2, RunRole.MEASURED, 3, 6)
        view.run_started("run-1", "packer", "1.8.18", "1.8.16")
        view.environment_ready("http://127.0.0.1:8080/", "1.8.17")  # what it really runs
        view.phase_started("prepare")
        view.phase_ended("prepare", 20.04, True)
        view.phase_started("rollout")
        for i in range(5):
            view.probe(Probe(i, i / 20, i / 20, "ok", 3.0, 200, "1.8.17"))
        view.probe(Probe(5, 0.25, 0.25, "http_503", 1.0, 503))
        view.event(Event(at=time.time(), source="stack", resource="AutoScalingGroup",
                         status="LAUNCHING", reason="Launching a new EC2 instance: i-new"))
        deadline = time.monotonic() + 5
        while cloud.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        shown = text_of(view)
    assert "compare: packer (3 of 6, repetition 1 of 2) — measured release" in shown
    assert "release 1.8.18 via packer (from 1.8.17) at http://127.0.0.1:8080/ — run run-1" in shown
    assert "prepare 20.0s" in shown and "rollout" in shown
    assert "5 ok, 1 failed (http_503 1)" in shown and "answered by: 1.8.17 5" in shown
    assert "i-new" in shown and "draining" in shown
    assert "AutoScalingGroup LAUNCHING: Launching a new EC2 instance: i-new" in shown


def test_a_new_run_starts_the_counts_again():
    view = LiveView(Console(file=io.StringIO()), OneEnvironment())
    view.run_started("run-1", "packer", "1.8.17", "1.8.18")
    view.probe(Probe(0, 0, 0, "refused", 1.0))
    view.run_started("run-2", "packer", "1.8.18", "1.8.17")
    assert "0 ok, 0 failed" in text_of(view)


def test_live_view_counts_editors_connected_reconnecting_and_gone():
    view = LiveView(Console(file=io.StringIO()), OneEnvironment())
    view.run_started("run-1", "packer", "1.8.18", "1.8.17")
    assert "editors:" not in text_of(view)  # --editors 0: no line
    counts = {"connected": 4, "reconnecting": 1, "gone": 1}
    view.editors_started(lambda: dict(counts))
    assert "editors: 4 connected, 1 reconnecting, 1 gone" in text_of(view)
    counts.update(connected=6, reconnecting=0, gone=0, loading=0)
    assert "editors: 6 connected, 0 reconnecting, 0 gone" in text_of(view)

"""The run engine with a fake clock, a fake strategy, a fake cloud and a fake poller.

Everything comes in through constructors; nothing sleeps for real, nothing listens.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from deployer.base.errors import CloudError, ExitStatus, RolloutFailed
from deployer.cloud.port import EnvironmentView, Event
from deployer.core.engine import PollerSettings, ReleaseRun
from deployer.core.strategy import Prepared, PreparedKind, ReleaseContext, Strategy
from deployer.measure.poller import Probe
from deployer.report.release import Outcome, Verdict
from tests.support.clock import FakeClock
from tests.support.fake_cloud import UnscriptedCloud


class FakeCloud(UnscriptedCloud):
    """No environment; every verb the engine is not expected to call refuses."""


class FakePoller:
    """Answers with the release the fake 'load balancer' serves."""

    def __init__(self, serving: list[str]) -> None:
        self.serving = serving
        self.skipped = 0
        self.started_at: float | None = None

    def start(self) -> None:
        self.started_at = 1_700_000_000.0

    def stop(self) -> list[Probe]:
        return []

    def snapshot(self) -> list[Probe]:
        return []

    def run_for(self, seconds: float) -> list[Probe]:
        return [Probe(seq=0, scheduled_s=0.0, sent_s=0.0, outcome="ok", latency_ms=1.0,
                      version=self.serving[-1])]


class FakeStrategy(Strategy):
    """Each verb advances the clock by a scripted amount and can be told to fail."""

    name = "fake"

    def __init__(self, clock: FakeClock, serving: list[str], *, rollout: Exception | None = None,
                 restores: bool = True, escape: BaseException | None = None) -> None:
        self.clock, self.serving = clock, serving
        self.rollout_error, self.restores, self.escape = rollout, restores, escape
        self.calls: list[str] = []

    def preflight(self, ctx: ReleaseContext) -> None:
        self.calls.append("preflight")

    def ensure_environment(self, ctx: ReleaseContext) -> EnvironmentView:
        self.calls.append("environment")
        self.clock.sleep(2.0)
        return EnvironmentView(strategy=self.name, stack_name="etherpad-fake",
                               stack_status="UPDATE_COMPLETE", url="http://127.0.0.1:9/")

    def prepare(self, ctx: ReleaseContext) -> Prepared:
        self.calls.append("prepare")
        self.clock.sleep(3.0)
        return Prepared(kind=PreparedKind.IMAGE, ref="ami-1")

    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        self.calls.append("roll_out")
        ctx.on_event(Event(at=self.clock.now(), source="stack", resource="g", status="X"))
        self.clock.sleep(5.0)
        if self.escape is not None:
            raise self.escape
        if self.rollout_error is not None:
            raise self.rollout_error
        self.serving.append(ctx.release)

    def roll_back(self, ctx: ReleaseContext) -> bool:
        self.calls.append("roll_back")
        self.clock.sleep(1.0)
        return self.restores


def run(tmp_path: Path, **strategy_options):
    clock = FakeClock()
    serving = ["1.8.17"]
    strategy = FakeStrategy(clock, serving, **strategy_options)
    heard: list[Event] = []
    ctx = ReleaseContext(release="1.8.18", from_release="1.8.17", cloud=FakeCloud(),
                         workdir=tmp_path, on_event=heard.append)
    engine = ReleaseRun(strategy, ctx, poller=PollerSettings(hz=20.0), clock=clock,
                        run_id="run-1", make_poller=lambda url, s, on_probe: FakePoller(serving))
    return SimpleNamespace(engine=engine, strategy=strategy, ctx=ctx, heard=heard, clock=clock)


def test_phases_are_timed_in_order_on_the_injected_clock(tmp_path):
    r = run(tmp_path)
    report = r.engine.execute()
    assert report.outcome is Outcome.SUCCEEDED
    assert [(p.name, p.seconds, p.start_s) for p in report.phases] == [
        ("environment", 2.0, 0.0), ("prepare", 3.0, 2.0), ("rollout", 5.0, 5.0),
        ("verify", 0.0, 10.5)]  # 0.5 s of watching after the rollout (10 / hz)
    assert r.clock.slept == [2.0, 3.0, 5.0, 0.5]
    assert report.served_versions == ["1.8.18"]
    assert report.details["prepared"]["kind"] == "image"
    assert [e["status"] for e in report.events] == ["X"] and len(r.heard) == 1
    assert Verdict.of(report.outcome, report.zero_downtime).exit_status is ExitStatus.SUCCESS


def test_a_failed_rollout_is_rolled_back_and_exits_4(tmp_path):
    r = run(tmp_path, rollout=CloudError("batch 1 failed"))
    report = r.engine.execute()
    assert r.strategy.calls == ["preflight", "environment", "prepare", "roll_out", "roll_back"]
    assert report.outcome is Outcome.ROLLED_BACK
    assert [p.name for p in report.phases] == ["environment", "prepare", "rollout", "rollback",
                                               "verify"]
    assert report.error == "batch 1 failed"
    assert Verdict.of(report.outcome, report.zero_downtime).exit_status == 4


def test_a_roll_back_that_did_nothing_is_not_reported_as_rolled_back(tmp_path):
    r = run(tmp_path, rollout=CloudError("timed out"),
                restores=False)
    report = r.engine.execute()
    assert r.strategy.calls[-1] == "roll_back"
    assert report.outcome is Outcome.FAILED
    assert Verdict.of(report.outcome, report.zero_downtime).exit_status is ExitStatus.ERROR


def test_a_rollout_the_cloud_rolled_back_needs_no_roll_back(tmp_path):
    r = run(tmp_path, rollout=RolloutFailed("rolled back"))
    report = r.engine.execute()
    assert "roll_back" not in r.strategy.calls
    assert report.outcome is Outcome.ROLLED_BACK


@pytest.mark.parametrize("escape", [KeyboardInterrupt(), RuntimeError("a bug")])
def test_on_event_is_restored_when_an_exception_escapes(tmp_path, escape):
    r = run(tmp_path, escape=escape)
    listener = r.ctx.on_event
    with pytest.raises(type(escape)):
        r.engine.execute()
    assert r.ctx.on_event is listener

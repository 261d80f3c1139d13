"""deployer compare: the measures, the floor, the comparison math, with no cloud.

The end-to-end compare on the local cloud with real Etherpad is in tests/e2e/test_compare.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import pytest

from deployer.base.assets import asset_path
from deployer.base.errors import ExitStatus, UsageError
from deployer.cloud.port import EnvironmentView, Event
from deployer.core.compare import (
    CompareObserver,
    CompareRun,
    CompareSettings,
    overall_outcome,
    parse_strategies,
    representative,
)
from deployer.core.strategy import Prepared, ReleaseContext, Strategy
from deployer.report.floor import FloorConfig, RolloutModel, compute_floor, floor_config
from deployer.report.history import History, RunRole
from deployer.report.release import junit_xml
from deployer.report.rollout import measure, spread
from tests.support.fake_cloud import UnscriptedCloud
from tests.support.reports import in_place_report, rolling_report
from tests.support.scripted_server import ScriptedServer

OLD_COMMIT, NEW_COMMIT = "c85ab49", "4b96ff6"  # 1.8.17, 1.8.18 as Etherpad's header says


# -- measures --------------------------------------------------------------------------------
def test_measures_of_a_rolling_update_read_the_report():
    m = measure(rolling_report(launch_to_healthy=6.0, prepare=20.0, drain=10.0, overhead=2.0))
    assert m.phases == {"environment": 30.0, "prepare": 20.0, "rollout": 18.0, "verify": 1.0}
    assert m.release_s == 38.0 and m.total_s == 69.0
    assert m.environment_created
    [boot] = m.boot_to_healthy
    assert (boot.target_id, boot.since, boot.seconds) == ("i-new", "launch", 6.0)
    assert not boot.failed_checks_first
    assert m.batches_observed == 1
    assert m.first_new_s == pytest.approx(6.6, abs=0.01)
    assert m.last_old_s == pytest.approx(6.55, abs=0.01)
    assert (m.storage_kind, m.storage_bytes) == ("image", 100_000_000)
    assert m.zero_downtime and m.failed_probes == 0 and m.downtime_windows == 0


def test_measures_count_downtime_windows_and_classes():
    m = measure(rolling_report(down=(3.0, 4.0), outcome="succeeded"))
    assert not m.zero_downtime
    assert m.failed_probes == 20 and m.failed_by_class == {"http_503": 20}
    assert m.downtime_windows == 1 and m.downtime_ms == pytest.approx(1000.0, abs=2)


def test_measures_of_an_in_place_deployment_use_the_lifecycle_events():
    m = measure(in_place_report(install=40.0, drain=10.0))
    # ApplicationStop .. ValidateService: 0.2 + 0.5 + 0.3 + 40 + 0.2 + 5.0 per instance
    assert m.in_place_s == pytest.approx(46.2)
    assert {b.since for b in m.boot_to_healthy} == {"registration"}
    assert m.batches_observed == 2
    assert m.storage_kind == "revision"


# -- floor -----------------------------------------------------------------------------------
ROLLING = FloorConfig(model=RolloutModel.ROLLING_UPDATE, instances=1, batch_size=1, batches=1,
                      batches_from="test", health_check_interval_s=5, healthy_threshold=2,
                      deregistration_delay_s=10)


def test_floor_of_a_rolling_update_is_bake_plus_boot_plus_drain():
    report = rolling_report(prepare=20.0, launch_to_healthy=6.0, drain=10.0, overhead=2.0)
    floor = compute_floor(ROLLING, measure(report))
    # one check (the target passed its first): 5 s of the 6 s launch → healthy
    assert (floor.health_check_s, floor.checks_needed, floor.app_start_s) == (5.0, 1, 1.0)
    assert floor.per_batch_s == 16.0
    assert floor.floor_s == 36.0  # 20 bake + 1 × (1 + 5 + 10)
    assert floor.actual_s == 38.0
    assert floor.ratio_to_floor == pytest.approx(38.0 / 36.0, abs=0.001)
    assert floor.overhead_s == 2.0 and not floor.notes


def test_floor_counts_the_healthy_threshold_after_failed_checks():
    report = rolling_report(strategy="cloudformation", prepare=0.0, launch_to_healthy=30.0,
                            failed_checks_first=True, overhead=4.0)
    floor = compute_floor(ROLLING, measure(report))
    assert (floor.checks_needed, floor.health_check_s, floor.app_start_s) == (2, 10.0, 20.0)
    assert floor.floor_s == 40.0 and floor.rollout_ratio == pytest.approx(44.0 / 40.0)


def test_floor_grows_with_batches_and_slowness_shows_as_ratio():
    two = ROLLING.model_copy(update={"batches": 2, "instances": 2})
    floor = compute_floor(two, measure(rolling_report(prepare=0.0, overhead=30.0)))
    assert floor.rollout_floor_s == 32.0  # 2 × (1 + 5 + 10)
    assert floor.rollout_ratio == pytest.approx(46.0 / 32.0, abs=0.001)
    assert "the run shows 1 batches, the template 2" in floor.notes[0]


def test_floor_of_an_in_place_deployment():
    config = FloorConfig(model=RolloutModel.IN_PLACE, instances=2, batch_size=1, batches=2,
                         batches_from="OneAtATime", health_check_interval_s=5,
                         healthy_threshold=2, deregistration_delay_s=10)
    floor = compute_floor(config, measure(in_place_report(install=40.0, drain=10.0)))
    assert floor.app_start_s == pytest.approx(46.2)
    assert floor.health_check_s == pytest.approx(0.01)
    assert floor.rollout_floor_s == pytest.approx(2 * (46.2 + 0.01 + 10))
    assert 1.0 <= floor.rollout_ratio < 1.01  # only hooks starting and polling on top


def test_floor_without_a_healthy_instance_says_so():
    report = rolling_report(outcome="rolled_back")
    report.target_health = []
    floor = compute_floor(ROLLING, measure(report))
    assert floor.app_start_s == 0.0 and floor.health_check_s == 0.0
    assert "no new instance turned healthy" in floor.notes[0]


@pytest.mark.parametrize("strategy, model, batches, instances", [
    ("packer", RolloutModel.ROLLING_UPDATE, 1, 1),
    ("cloudformation", RolloutModel.ROLLING_UPDATE, 1, 1),
    ("codedeploy", RolloutModel.IN_PLACE, 2, 2),
])
def test_floor_config_reads_the_shipped_stacks(strategy, model, batches, instances):
    config = floor_config(asset_path("etherpad", "stacks", f"{strategy}.yaml"))
    assert (config.model, config.batches, config.instances) == (model, batches, instances)
    assert (config.health_check_interval_s, config.healthy_threshold,
            config.deregistration_delay_s) == (5, 2, 10)


# -- comparison math -------------------------------------------------------------------------
def test_spread_is_median_and_range_and_skips_missing():
    s = spread([3.0, None, 1.0, 10.0])
    assert (s.n, s.median, s.min, s.max, s.spread) == (3, 3.0, 1.0, 10.0, 9.0)
    assert spread([None]) is None


def test_representative_is_the_median_run_unless_one_went_wrong():
    runs = [rolling_report(overhead=o) for o in (9.0, 1.0, 5.0)]
    pairs = [(r, measure(r)) for r in runs]
    assert representative(pairs) == 2  # the 5 s overhead run is the median
    runs[0] = rolling_report(down=(3.0, 3.2))
    pairs = [(r, measure(r)) for r in runs]
    assert representative(pairs) == 0  # downtime: the entry explains the exit code


def test_overall_outcome_orders_failure_rollback_downtime():
    ok, down = rolling_report(), rolling_report(down=(1.0, 2.0))
    back, failed = rolling_report(outcome="rolled_back"), rolling_report(outcome="failed")
    assert overall_outcome([ok, ok]) == "succeeded"
    assert overall_outcome([ok, down]) == "downtime"
    assert overall_outcome([down, back]) == "rolled_back"
    assert overall_outcome([back, failed]) == "failed"
    assert overall_outcome([ok], failed_resets=1) == "failed"


def test_parse_strategies():
    assert parse_strategies(None) == ["codedeploy", "cloudformation", "packer"]
    assert parse_strategies("packer, codedeploy") == ["packer", "codedeploy"]
    for bad, words in [("", "bad --strategies"), ("packer,,codedeploy", "bad --strategies"),
                       ("packer,bluegreen", "unknown strategy 'bluegreen'"),
                       ("packer,packer", "appears twice")]:
        with pytest.raises(UsageError, match=words):
            parse_strategies(bad)


# -- a compare run against a fake cloud (real ReleaseRun, real poller, loopback server) -----
class FakeCloud(UnscriptedCloud):
    """Environments that are a scripted server each; a release switches the server's commit."""

    name = "fake"

    def __init__(self) -> None:
        self.servers: dict[str, ScriptedServer] = {}
        self.releases: dict[str, str] = {}
        self.log: list[tuple[str, str]] = []

    def environment(self, strategy: str, release: str) -> EnvironmentView:
        if strategy not in self.servers:
            self.servers[strategy] = ScriptedServer(commit=OLD_COMMIT)
            self.releases[strategy] = release
            self.log.append((strategy, f"create at {release}"))
        return self.describe_environment(strategy)

    def describe_environment(self, strategy):
        if strategy not in self.servers:
            return None
        return EnvironmentView(strategy=strategy, stack_name=f"etherpad-{strategy}",
                               stack_status="UPDATE_COMPLETE", url=self.servers[strategy].url,
                               release=self.releases[strategy])

    def switch(self, strategy: str, release: str) -> None:
        commit = {"1.8.17": OLD_COMMIT, "1.8.18": NEW_COMMIT}[release]
        self.servers[strategy].set_ok(commit)
        self.releases[strategy] = release
        self.log.append((strategy, f"release {release}"))

    def ensure_environment(self, strategy, template, parameters, on_event):
        return self.environment(strategy, parameters["EtherpadVersion"])

    def destroy_environment(self, strategy, on_event):
        self.servers.pop(strategy).close()








class SwitchStrategy(Strategy):
    """Rolls out by switching the fake environment's server, after a short 'boot'."""

    def stack_template(self) -> Path:
        return asset_path("etherpad", "stacks", "packer.yaml")

    preflights: ClassVar[list[tuple[str, int]]] = []

    def preflight(self, ctx: ReleaseContext) -> None:
        # No source to ask here; remember when it was asked (cloud log length).
        SwitchStrategy.preflights.append((self.name, len(ctx.cloud.log)))

    def prepare(self, ctx: ReleaseContext) -> Prepared:
        return Prepared(kind="image", ref="ami-1", size_bytes=1234)

    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        ctx.on_event(Event(at=time.time(), source="stack", resource="AutoScalingGroup",
                           status="LAUNCHING", reason="Launching a new EC2 instance: i-1"))
        time.sleep(0.3)
        ctx.cloud.switch(self.name, ctx.release)

    def roll_back(self, ctx: ReleaseContext) -> None:
        pass


class Recorder(CompareObserver):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def compare_run_started(self, strategy, repetition, repeat, role, index, count):
        self.calls.append(("run", strategy, repetition, role.value))

    def phase_started(self, name):
        self.calls.append(("phase", name))

    def probe(self, probe):
        self.calls.append(("probe",))


def _loader(name: str) -> Strategy:
    strategy = SwitchStrategy()
    strategy.name = name
    return strategy


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    return tmp_path


def test_compare_runs_each_strategy_resets_between_repetitions_and_records(home):
    cloud = FakeCloud()
    SwitchStrategy.preflights.clear()
    history = History(home / "history.sqlite")
    observer = Recorder()
    settings = CompareSettings(release="1.8.18", from_release="1.8.17",
                               strategies=["alpha", "beta"], repeat=2, hz=20.0)
    try:
        comparison = CompareRun(settings, cloud=cloud, observer=observer, history=history,
                                strategy_loader=_loader).execute()
    finally:
        for server in cloud.servers.values():
            server.close()
    # the source is checked for every strategy before anything is created
    assert SwitchStrategy.preflights[:2] == [("alpha", 0), ("beta", 0)]
    # rounds interleave; the second round first brings each environment back to 1.8.17
    assert cloud.log == [("alpha", "create at 1.8.17"), ("alpha", "release 1.8.18"),
                         ("beta", "create at 1.8.17"), ("beta", "release 1.8.18"),
                         ("alpha", "release 1.8.17"), ("alpha", "release 1.8.18"),
                         ("beta", "release 1.8.17"), ("beta", "release 1.8.18")]
    assert [(r.strategy, r.repetition, r.role.value) for r in comparison.runs] == [
        ("alpha", 1, "measured"), ("beta", 1, "measured"), ("alpha", 2, "reset"),
        ("alpha", 2, "measured"), ("beta", 2, "reset"), ("beta", 2, "measured")]
    assert [c for c in observer.calls if c[0] == "run"][:3] == [
        ("run", "alpha", 1, "measured"), ("run", "beta", 1, "measured"),
        ("run", "alpha", 2, "reset")]
    assert ("probe",) in observer.calls and ("phase", "rollout") in observer.calls

    doc = json.loads(comparison.model_dump_json())
    assert set(doc) >= {"release", "from_release", "strategies", "runs", "summary"}
    assert list(doc["strategies"]) == ["alpha", "beta"]
    for name, entry in doc["strategies"].items():
        # every key of the release JSON, then what compare adds
        assert set(entry) >= {"run_id", "strategy", "release", "from_release", "outcome",
                              "phases", "total_seconds", "zero_downtime", "probes",
                              "versions", "timeline", "target_health", "events", "floor",
                              "ratio_to_floor", "measures", "repeats"}
        assert entry["strategy"] == name and entry["outcome"] == "succeeded"
        assert entry["from_release"] == "1.8.17" and entry["served_versions"] == ["1.8.18"]
        assert entry["repeats"]["rollout_s"]["n"] == 2
        assert entry["floor"]["batches"] == 1 and entry["ratio_to_floor"] > 0
        assert entry["outcomes"] == {"succeeded": 2}
    summary = doc["summary"]
    assert (summary["outcome"], summary["exit_code"]) == ("succeeded", 0)
    assert sorted(summary["ranking"]) == ["alpha", "beta"]

    junit = junit_xml(list(comparison.reports().values()), budget_s=60)
    assert junit.count("<testsuite ") == 2 and 'name="within_budget"' in junit

    entries = history.entries(limit=50)
    assert [e.kind.value for e in entries].count("compare") == 1
    releases = [e for e in entries if e.kind.value == "release"]
    assert len(releases) == 6 and all(e.parent_id == comparison.run_id for e in releases)
    assert sum(e.role is RunRole.RESET for e in releases) == 2
    stored = history.report(comparison.run_id)
    assert stored.report["summary"]["exit_code"] == int(ExitStatus.SUCCESS)


def test_compare_refuses_a_repeat_below_one():
    settings = CompareSettings(release="1.8.18", from_release="1.8.17", strategies=["a"],
                               repeat=0)
    with pytest.raises(UsageError, match="--repeat"):
        CompareRun(settings, cloud=FakeCloud(), strategy_loader=_loader)

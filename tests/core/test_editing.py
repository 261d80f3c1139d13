"""Editors and the data check around a rollout, with a fake simulator and a fake data check:
the engine's wiring, the verdict (exit 5 wins), the report's keys, the compare ranking.

With real Etherpad: tests/measure/editors (the simulator and the data check each shown able
to fail), tests/e2e (every strategy's release with editors on).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployer.base.errors import ExitStatus, SourceError, UsageError
from deployer.core.compare import overall_outcome, representative
from deployer.core.editing import EditorSettings, EditorsWatch
from deployer.core.engine import PollerSettings, ReleaseRun
from deployer.core.strategy import ReleaseContext
from deployer.measure.editors.datacheck import judge
from deployer.measure.editors.models import DataReport, EditorRecord, Span
from deployer.report.compare_table import StrategyView, measured_rows
from deployer.report.html import render_release
from deployer.report.release import Verdict, junit_xml
from deployer.report.rollout import measure
from tests.core.test_engine import FakeCloud, FakePoller, FakeStrategy
from tests.support.clock import FakeClock
from tests.support.reports import rolling_report


class EditorsCloud(FakeCloud):
    """A cloud that knows the instances' API key and one live instance."""

    def etherpad_api_key(self, strategy: str) -> str | None:
        return "key"

    def instance_urls(self, strategy: str) -> dict[str, str]:
        return {"i-1": "http://127.0.0.1:9001/"}


class FakeSimulator:
    """Editors that load their pads, type, and (scripted) lose the old instance."""

    def __init__(self, url: str, *, editors: int, pads: int, type_interval_s: float,
                 gave_up: int = 0) -> None:
        self.tag = "t1"
        self.pads = [f"deployer-editors-t1-{i + 1}" for i in range(pads)]
        self.assignments = [(f"e{i + 1}", self.pads[i % pads]) for i in range(editors)]
        self.gave_up = gave_up
        self.started_at: float | None = None
        self.stopped = False

    def start(self):
        self.started_at = 1_700_000_001.0  # a second after the poller's start
        return self

    def wait_ready(self, timeout_s: float) -> bool:
        return True

    def records(self) -> list[EditorRecord]:
        out = []
        for n, (editor, pad) in enumerate(self.assignments):
            gone = n < self.gave_up
            spans = [Span(state="connected", start_s=0.0, end_s=4.0),
                     Span(state="reconnecting", start_s=4.0, end_s=5.5),
                     Span(state="gone" if gone else "connected", start_s=5.5, end_s=9.0)]
            marks = [f"[t1{editor}n{i}]" for i in range(1, 4)]
            out.append(EditorRecord(
                editor=editor, pad=pad, sessions=1 if gone else 2, disconnects=1,
                reconnect_ms=[] if gone else [1500.0], gave_up=gone,
                gave_up_reason="reconnects ran out" if gone else None, typed=marks,
                acknowledged=marks, acknowledged_at={m: 1.0 + i for i, m in enumerate(marks)},
                timeline=spans))
        return out

    def stop(self) -> list[EditorRecord]:
        self.stopped = True
        return self.records()

    def acknowledged(self) -> dict[str, list[str]]:
        marks: dict[str, list[str]] = {pad: [] for pad in self.pads}
        for record in self.records():
            marks[record.pad] += record.acknowledged
        return marks


class FakeCheck:
    """Reads back what was seeded and acknowledged, minus ``lose`` marks (the fault)."""

    def __init__(self, url: str, api_key: str | None, *, tag: str, lose: tuple[str, ...] = (),
                 diverge: bool = False) -> None:
        self.url, self.api_key, self.tag = url, api_key, tag
        self.lose, self.diverge = lose, diverge
        self.seeded: dict[str, str] = {}
        self.instances: dict[str, str] | None = None

    def seed(self, pads):
        self.seeded = {pad: f"seed {pad}\n" for pad in pads}
        return dict(self.seeded)

    def verify(self, acknowledged, instance_urls) -> DataReport:
        self.instances = dict(instance_urls)
        seen = {}
        for pad in sorted(set(self.seeded) | set(acknowledged)):
            text = self.seeded.get(pad, "") + "".join(
                m for m in acknowledged.get(pad, []) if m not in self.lose)
            other = text + ("[x]" if self.diverge else "")
            seen[pad] = {"load balancer": text, "i-1": other}
        return judge(self.seeded, acknowledged, seen)


def release(tmp_path: Path, settings: EditorSettings | None, **faults):
    clock = FakeClock()
    serving = ["1.8.17"]
    made: dict = {}

    def make_watch(s, cloud, strategy, url):
        def simulator(*a, **kw):
            made["simulator"] = FakeSimulator(*a, **kw, gave_up=faults.get("gave_up", 0))
            return made["simulator"]

        def check(*a, **kw):
            made["check"] = FakeCheck(*a, **kw, lose=faults.get("lose", ()),
                                      diverge=faults.get("diverge", False))
            return made["check"]

        return EditorsWatch(s, cloud, strategy, url, make_simulator=simulator,
                            make_check=check, sleep=lambda s: None)

    ctx = ReleaseContext(release="1.8.18", from_release="1.8.17", cloud=EditorsCloud(),
                         workdir=tmp_path, on_event=lambda e: None)
    report = ReleaseRun(FakeStrategy(clock, serving), ctx, poller=PollerSettings(hz=20.0),
                        clock=clock, run_id="run-1",
                        make_poller=lambda url, s, on_probe: FakePoller(serving),
                        editors=settings, make_watch=make_watch).execute()
    return report, made


def test_editors_typing_through_a_release_make_the_report_and_exit_0(tmp_path):
    report, made = release(tmp_path, EditorSettings(editors=6))
    assert made["simulator"].stopped and made["check"].instances == {
        "i-1": "http://127.0.0.1:9001/"}
    assert made["check"].api_key == "key"  # the cloud's own key, read from the owner's state
    e, d = report.editors, report.data
    assert (e.editors, e.pads, e.sessions, e.disconnects, e.gave_up) == (6, 3, 12, 6, 0)
    assert (e.edits_typed, e.edits_acknowledged, e.edits_lost) == (18, 18, 0)
    assert e.interruption_ms == 1500.0 and e.reconnect_ms.p99 == 1500.0
    assert [(w.start_s, w.end_s, w.editors) for w in e.windows] == [(4.0, 5.5, 6)]
    assert (d.pads_checked, d.pads_intact, d.pads_diverged, d.edits_lost) == (3, 3, 0, 0)
    assert report.users_unaffected and Verdict.of_report(report) is Verdict.SUCCEEDED
    # the timeline is on the probe clock: the editors started a second after the poller
    first = report.editor_timeline[0]
    assert first["editor"] == "e1" and first["spans"][1] == ["reconnecting", 5.0, 6.5]
    assert first["lost"] == []
    keys = json.loads(report.model_dump_json())
    assert set(keys["editors"]) == {"editors", "pads", "sessions", "disconnects", "reconnect_ms",
                                    "gave_up", "edits_typed", "edits_acknowledged",
                                    "edits_lost", "interruption_ms", "windows"}
    assert set(keys["editors"]["reconnect_ms"]) == {"p50", "p99", "max"}
    assert {"pads_checked", "pads_intact", "pads_diverged", "edits_lost"} <= set(keys["data"])
    assert keys["users_unaffected"] is True


def test_a_lost_acknowledged_edit_exits_5_and_is_named_everywhere(tmp_path):
    report, _ = release(tmp_path, EditorSettings(editors=6), lose=("[t1e1n2]",))
    assert report.outcome == "succeeded" and report.zero_downtime
    assert report.data.edits_lost == 1 and report.editors.edits_lost == 1
    assert not report.users_unaffected
    verdict = Verdict.of_report(report)
    assert verdict is Verdict.DATA_LOST and verdict.exit_status is ExitStatus.DATA_LOST == 5
    assert report.editor_timeline[0]["lost"] == [["[t1e1n2]", 3.0]]
    xml = junit_xml([report])
    assert 'name="data_intact"' in xml and "[t1e1n2]" in xml
    html = render_release(report)
    assert "lost edit [t1e1n2]" in html and "data lost" in html
    view = StrategyView.from_report(report)
    rows = dict(measured_rows([view]))
    assert rows["edits lost (acknowledged)"]["fake"] == "1 of 18"
    assert rows["users unaffected"]["fake"] == "NO"


def test_instances_that_disagree_about_a_pad_exit_5(tmp_path):
    report, _ = release(tmp_path, EditorSettings(editors=2, pads=1), diverge=True)
    assert report.data.pads_diverged == 1
    assert Verdict.of_report(report) is Verdict.DATA_LOST


def test_an_editor_who_gave_up_is_downtime_exit_3(tmp_path):
    report, _ = release(tmp_path, EditorSettings(editors=4), gave_up=1)
    assert report.zero_downtime  # the visitors' poller saw nothing
    assert report.editors.gave_up == 1 and not report.users_unaffected
    assert Verdict.of_report(report) is Verdict.DOWNTIME
    xml = junit_xml([report])
    assert 'name="editors_unaffected"' in xml and "1 of 4 editors gave up" in xml
    timeline = report.editor_timeline[0]
    assert timeline["spans"][-1][0] == "gone" and timeline["gave_up_reason"]


def test_without_editors_the_report_has_none_and_the_verdict_is_the_pollers(tmp_path):
    report, made = release(tmp_path, None)
    assert not made and report.editors is None and report.data is None
    assert report.users_unaffected and report.editor_timeline == []


def test_editor_settings_are_checked_before_anything_is_created(monkeypatch):
    with pytest.raises(UsageError, match="--editors must be between 0 and 500"):
        EditorSettings(editors=-1)
    assert EditorSettings(editors=6).pad_count == 3
    assert EditorSettings(editors=6).interval_s == 1.0
    assert EditorSettings(editors=60).interval_s == 10.0  # under Etherpad's rate limit

    def no_npm():
        raise SourceError("npm install of the editors' client failed", hint="check npm")

    monkeypatch.setattr("deployer.core.editing.ensure_driver", no_npm)
    with pytest.raises(SourceError) as caught:
        EditorSettings(editors=6).check_client()
    assert "--editors 0" in (caught.value.hint or "")
    EditorSettings(editors=0).check_client()  # nothing to install


def test_data_lost_outranks_failure_in_a_comparison():
    ok, down = rolling_report(), rolling_report(down=(1.0, 2.0))
    failed = rolling_report(outcome="failed")
    lost = rolling_report()
    lost.data = DataReport(pads_checked=3, pads_intact=3, pads_diverged=0, edits_lost=2)
    lost.judge_users()
    gave_up = rolling_report()
    gave_up.editors = FakeSimulatorSummary.with_gave_up(1)
    gave_up.judge_users()
    assert overall_outcome([ok, gave_up]) == "downtime"
    assert overall_outcome([ok, down, failed, lost]) == "data_lost"
    assert overall_outcome([lost], failed_resets=1) == "data_lost"
    assert overall_outcome([ok], failed_resets=1) == "failed"
    pairs = [(r, measure(r)) for r in (ok, lost, ok)]
    assert representative(pairs) == 1  # the entry shows why the exit code is 5


class FakeSimulatorSummary:
    @staticmethod
    def with_gave_up(n: int):
        from deployer.measure.editors.models import summarize

        records = FakeSimulator("http://x/", editors=4, pads=2, type_interval_s=1.0,
                                gave_up=n).records()
        return summarize(records)

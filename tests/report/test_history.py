"""Run history (SQLite in the data dir), `deployer history`, `deployer report`, CLI errors."""

from __future__ import annotations

import json

import pytest
import structlog
from rich.console import Console

from deployer.cli import app as cli
from deployer.cli.app import main
from deployer.core.compare import CompareSummary, Comparison, RunRecord, strategy_entry
from deployer.report.history import History, RunKind, RunRole, UnknownRun
from deployer.report.rollout import measure
from tests.support.reports import rolling_report


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path))
    # A wide console, so table cells do not wrap in the captured output.
    monkeypatch.setattr(cli.ENV, "stdout", Console(width=200))
    yield tmp_path
    # The CLI pointed the log at this test's captured stderr: the next test must not write there.
    structlog.reset_defaults()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["--log-format", "json", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def _release(strategy: str, run_id: str, total_extra: float, started_at: float,
             outcome: str = "succeeded") -> dict:
    report = rolling_report(strategy, overhead=total_extra, outcome=outcome)
    report.run_id, report.started_at = run_id, started_at
    return report.model_dump(mode="json")


def _comparison(run_id: str = "cmp-1") -> Comparison:
    report = rolling_report("packer")
    m = measure(report)
    return Comparison(
        run_id=run_id, release="1.8.18", from_release="1.8.17", target="local", source="npm",
        hz=20.0, repeat=1, started_at=1_900_000_000.0, machine={"cpus": 2},
        strategies={"packer": strategy_entry(report, m, None, [(m, None)])},
        runs=[RunRecord(run_id=report.run_id, strategy="packer", repetition=1,
                        role=RunRole.MEASURED, release="1.8.18", from_release="1.8.17",
                        outcome="succeeded", zero_downtime=True,
                        total_seconds=report.total_seconds, failed_probes=0, measures=m)],
        summary=CompareSummary(outcome="succeeded", exit_code=0, zero_downtime=True,
                               seconds=120.0, ranking=["packer"]))


def test_history_lists_newest_first_and_filters_by_strategy(home):
    history = History()
    assert history.entries() == [] and not history.path.exists()
    for i in range(3):
        history.record(_release("packer", f"p{i}", 1.0 + i, 1_000.0 + i))
    history.record(_release("codedeploy", "c0", 1.0, 2_000.0), machine={"cpus": 2})
    history.record(_comparison().model_dump(mode="json"), kind=RunKind.COMPARE)
    assert history.path == home / "history.sqlite"
    ids = [e.run_id for e in history.entries()]
    assert ids == ["cmp-1", "c0", "p2", "p1", "p0"]
    packer = history.entries(strategy="packer")
    assert [e.run_id for e in packer] == ["cmp-1", "p2", "p1", "p0"]  # and its compare
    assert [e.run_id for e in history.entries(limit=2)] == ["cmp-1", "c0"]
    entry = next(e for e in packer if e.run_id == "p2")
    assert (entry.strategy, entry.release, entry.outcome, entry.failed_probes) == (
        "packer", "1.8.18", "succeeded", 0)
    assert entry.total_seconds == pytest.approx(67.0 + 3.0)  # phases + overhead
    stored = history.report("c0")
    assert stored.kind is RunKind.RELEASE and stored.machine == {"cpus": 2}
    assert stored.report["run_id"] == "c0"
    with pytest.raises(UnknownRun, match="no run 'nope'"):
        history.report("nope")


def test_trend_compares_the_last_window_with_the_one_before(home):
    history = History()
    # older runs faster (overhead 1 s), newer slower (overhead 11 s): trend up
    for i, extra in enumerate([1, 1, 1, 11, 11, 11]):
        history.record(_release("packer", f"p{i}", extra, 1_000.0 + i))
    history.record(_release("packer", "px", 50, 2_000.0, outcome="rolled_back"))
    history.record(_release("packer", "reset", 50, 2_001.0), role=RunRole.RESET)
    for i, extra in enumerate([9, 1]):
        history.record(_release("cloudformation", f"c{i}", extra, 1_000.0 + i))
    trends = {t.strategy: t for t in history.trends(window=3)}
    packer = trends["packer"]
    assert packer.runs == 6  # the rollback and the reset time something else
    assert packer.recent_median_s == pytest.approx(78.0)
    assert packer.previous_median_s == pytest.approx(68.0)
    assert packer.direction == "up" and packer.change == pytest.approx(78 / 68 - 1, abs=1e-3)
    assert trends["cloudformation"].direction == "new"
    trends = {t.strategy: t for t in history.trends(window=1)}
    assert trends["cloudformation"].direction == "down"  # 68 s after 76 s


def test_cli_history_table_json_and_trend_arrows(home, capsys):
    history = History()
    for i, extra in enumerate([1, 1, 30, 30]):
        history.record(_release("packer", f"p{i}", extra, 1_000.0 + i))
    code, out, _ = run_cli(capsys, "history", "--window", "2")
    assert code == 0
    assert "p3" in out and "1.8.17 → 1.8.18" in out and "succeeded" in out
    assert "↑ slower" in out
    code, out, _ = run_cli(capsys, "history", "--json", "--strategy", "packer", "--limit", "3")
    doc = json.loads(out)
    assert [r["run_id"] for r in doc["runs"]] == ["p3", "p2", "p1"]
    assert doc["trends"][0]["strategy"] == "packer"
    assert set(doc["runs"][0]) >= {"run_id", "started_at", "strategy", "release", "outcome",
                                   "total_seconds", "failed_probes"}


def test_cli_report_rebuilds_a_release_from_history(home, capsys, tmp_path):
    stored = _release("packer", "p0", 2.0, 1_000.0)
    History().record(stored)
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code, _, err = run_cli(capsys, "report", "p0", "--json", str(out_json), "--html",
                           str(out_html))
    assert code == 0, err
    assert json.loads(out_json.read_text()) == stored
    page = out_html.read_text()
    assert "deployer release: 1.8.18 via packer" in page and "<svg" in page
    code, out, _ = run_cli(capsys, "report", "p0")
    assert code == 0 and "rollout" in out and "zero downtime" in out


def test_cli_report_rebuilds_a_compare_from_history(home, capsys, tmp_path):
    History().record(_comparison("cmp-9").model_dump(mode="json"), kind=RunKind.COMPARE)
    out_html = tmp_path / "c.html"
    code, _, err = run_cli(capsys, "report", "cmp-9", "--html", str(out_html))
    assert code == 0, err
    assert "deployer compare: 1.8.18" in out_html.read_text()
    code, out, _ = run_cli(capsys, "report", "cmp-9")
    assert code == 0 and "packer" in out and "deployment speed (book)" in out


def test_cli_report_of_an_unknown_run_is_one_line_and_exit_1(home, capsys):
    History().record(_release("packer", "p0", 2.0, 1_000.0))
    code, _out, err = run_cli(capsys, "report", "20990101T000000Z-abcdef")
    assert code == 1
    assert err.strip().splitlines() == [
        f"deployer: error: no run '20990101T000000Z-abcdef' in the history "
        f"{home / 'history.sqlite'} ('deployer history' lists the run ids)"]


@pytest.mark.parametrize("value", ["packer,bluegreen", "", "packer,packer"])
def test_cli_compare_with_a_bad_strategies_value_is_one_line_and_exit_2(home, capsys, value):
    code, _, err = run_cli(capsys, "compare", "1.8.18", "--strategies", value)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deployer: error: ")
    assert "--strategies" in lines[0]
    assert not (home / "localcloud").exists()  # nothing was started


def test_cli_compare_needs_a_starting_release(home, capsys):
    code, _, err = run_cli(capsys, "compare", "1.8.14-r2", "--repeat", "1")
    assert code == 2 and "pass --from VERSION" in err
    code, _, err = run_cli(capsys, "compare", "1.8.18", "--repeat", "0")
    assert code == 2 and "--repeat" in err

"""Reports: JSON (a contract for scripts), JUnit XML (for CI) and a console table (rich)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from xml.etree import ElementTree as ET

from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deployer.base.errors import ExitStatus
from deployer.measure.analysis import ProbeAnalysis
from deployer.measure.editors.models import DataReport, EditorsSummary


class Outcome(StrEnum):
    """How a release run ended (the report's ``outcome``)."""

    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"  # the rollout failed and the previous release was restored
    FAILED = "failed"


class Verdict(StrEnum):
    """An outcome with the instruments' word on it: what ``release`` and ``compare`` exit
    with."""

    SUCCEEDED = "succeeded"  # and users unaffected
    DOWNTIME = "downtime"  # the release succeeded, but a probe failed or an editor gave up
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    DATA_LOST = "data_lost"  # whatever else happened: an acknowledged edit lost, a pad diverged

    @classmethod
    def of(cls, outcome: Outcome | str, zero_downtime: bool, *, editors_gave_up: int = 0,
           data_lost: bool = False) -> Verdict:
        if data_lost:
            return cls.DATA_LOST
        if outcome == Outcome.SUCCEEDED:
            return cls.SUCCEEDED if zero_downtime and not editors_gave_up else cls.DOWNTIME
        return cls(outcome)

    @classmethod
    def of_report(cls, report: ReleaseReport) -> Verdict:
        """A release report's verdict: its outcome, the poller, the editors, the data."""
        return cls.of(report.outcome, report.zero_downtime,
                      editors_gave_up=report.editors.gave_up if report.editors else 0,
                      data_lost=report.data is not None and not report.data.ok)

    @property
    def exit_status(self) -> ExitStatus:
        """The one outcome → exit code mapping (README, "Exit codes")."""
        return _EXIT_STATUS[self]


_EXIT_STATUS = {Verdict.SUCCEEDED: ExitStatus.SUCCESS, Verdict.DOWNTIME: ExitStatus.DOWNTIME,
                Verdict.ROLLED_BACK: ExitStatus.ROLLED_BACK, Verdict.FAILED: ExitStatus.ERROR,
                Verdict.DATA_LOST: ExitStatus.DATA_LOST}


class PhaseTiming(BaseModel):
    name: str
    seconds: float
    start_s: float = 0.0  # since the run started (started_at)


class ReleaseReport(ProbeAnalysis):
    """A release run: the poller's keys plus the release keys (all part of the contract)."""

    run_id: str
    strategy: str
    release: str
    from_release: str | None
    target: str
    outcome: Outcome
    phases: list[PhaseTiming]
    total_seconds: float
    served_versions: list[str] = Field(default_factory=list)
    error: str | None = None
    details: dict = Field(default_factory=dict)
    # For timelines (HTML reports, history): when the run started (unix time), where probe
    # times start on the run's clock, every probe as [sent_s, outcome, version, latency_ms],
    # target health transitions and cloud events with times on the probe clock.
    started_at: float = 0.0
    probe_offset_s: float = 0.0
    timeline: list[list] = Field(default_factory=list)
    target_health: list[dict] = Field(default_factory=list)
    events: list[dict] = Field(default_factory=list)
    # What editors lived through (None: no editors) and what the data check found (None:
    # not run); users_unaffected: no failed probe, no lost edit, no diverged pad, no editor
    # who gave up. editor_timeline: per editor {editor, pad, spans [[state, start_s, end_s]],
    # lost [[mark, acknowledged_at_s]], gave_up_reason}, times on the probe clock.
    editors: EditorsSummary | None = None
    data: DataReport | None = None
    users_unaffected: bool = True
    editor_timeline: list[dict] = Field(default_factory=list)

    def judge_users(self) -> None:
        """Set ``users_unaffected`` from the poller, the editors and the data check."""
        self.users_unaffected = (self.zero_downtime
                                 and (self.editors is None or self.editors.gave_up == 0)
                                 and (self.data is None or self.data.ok))


def data_line(data: DataReport) -> str:
    """The data check in one line: what a user would want named first."""
    parts = [f"{data.pads_intact} of {data.pads_checked} pads intact"]
    if data.edits_lost:
        marks = [f"{pad}: {', '.join(m)}" for pad, m in data.lost_marks.items() if m]
        parts.append(f"{data.edits_lost} acknowledged edits lost ({'; '.join(marks)})")
    if data.pads_diverged:
        parts.append(f"{data.pads_diverged} diverged ({', '.join(data.diverged_pads)})")
    if data.damaged_pads:
        parts.append(f"damaged: {', '.join(data.damaged_pads)}")
    return ", ".join(parts)


def editors_line(e: EditorsSummary) -> str:
    """The editors in one line."""
    p99 = e.reconnect_ms.p99
    return (f"{e.editors} editors on {e.pads} pads: {e.disconnects} disconnects, "
            f"{e.gave_up} gave up, longest interruption {e.interruption_ms:.0f} ms"
            + (f", reconnect p99 {p99:.0f} ms" if p99 is not None else "")
            + f"; {e.edits_acknowledged} of {e.edits_typed} edits acknowledged, "
              f"{e.edits_lost} lost")


def write_json(report: BaseModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    tmp.replace(path)


def _case(suite: ET.Element, classname: str, name: str, seconds: float,
          failure: str | None) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name,
                         time=f"{seconds:.3f}")
    if failure:
        ET.SubElement(case, "failure", message=failure.splitlines()[0]).text = failure


def _downtime_text(a: ProbeAnalysis) -> str | None:
    if a.zero_downtime:
        return None
    lines = [f"{a.probes.failed} of {a.probes.total} probes failed: {a.probes.by_class}"]
    lines += [f"  window {w.start_s:.3f}s-{w.end_s:.3f}s ({w.duration_ms:.0f} ms) {w.by_class}"
              for w in a.downtime_windows]
    return "\n".join(lines)


def junit_xml(reports: Sequence[ProbeAnalysis], *, budget_s: float | None = None) -> str:
    suites = ET.Element("testsuites", name="deployer")
    for report in reports:
        if isinstance(report, ReleaseReport):
            classname = f"deployer.{report.strategy}"
            suite = ET.SubElement(suites, "testsuite", name=classname)
            _case(suite, classname, "zero_downtime", report.duration_s, _downtime_text(report))
            served = None if report.outcome == "succeeded" and report.served_versions == [
                report.release] else (f"outcome {report.outcome}; load balancer serves "
                                      f"{report.served_versions or 'nothing'}, wanted "
                                      f"{report.release}" + (f": {report.error}"
                                                              if report.error else ""))
            _case(suite, classname, "release_served", report.total_seconds, served)
            if report.editors is not None:
                gave_up = (f"{report.editors.gave_up} of {report.editors.editors} editors gave "
                           f"up (their reconnects ran out: the user must reload)\n"
                           + editors_line(report.editors)) if report.editors.gave_up else None
                _case(suite, classname, "editors_unaffected", report.duration_s, gave_up)
            if report.data is not None:
                lost = None if report.data.ok else "\n".join(
                    [data_line(report.data), *report.data.details])
                _case(suite, classname, "data_intact", report.duration_s, lost)
            if budget_s is not None:
                over = (f"took {report.total_seconds:.1f}s, budget {budget_s:.1f}s"
                        if report.total_seconds > budget_s else None)
                _case(suite, classname, "within_budget", report.total_seconds, over)
        else:
            suite = ET.SubElement(suites, "testsuite", name="deployer.probe")
            _case(suite, "deployer.probe", f"zero_downtime {report.url}", report.duration_s,
                  _downtime_text(report))
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(reports: Sequence[ProbeAnalysis], path: Path, *, budget_s: float | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(reports, budget_s=budget_s))


def print_probe_table(a: ProbeAnalysis, console: Console) -> None:
    verdict = "[green]zero downtime[/]" if a.zero_downtime else "[red]DOWNTIME[/]"
    console.print(f"{a.url} — {verdict}", soft_wrap=True)
    table = Table()
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("probes (ok / failed / total)",
                  f"{a.probes.ok} / {a.probes.failed} / {a.probes.total}")
    table.add_row("rate", f"{a.hz:g}/s over {a.duration_s:.1f} s")
    for cls, n in a.probes.by_class.items():
        table.add_row(f"  failed: {cls}", str(n))
    table.add_row("downtime windows", str(len(a.downtime_windows)))
    for w in a.downtime_windows:
        table.add_row(f"  {w.start_s:.2f}s → {w.end_s:.2f}s", f"{w.duration_ms:.0f} ms")
    table.add_row("longest gap between answers", f"{a.longest_gap_ms:.0f} ms")
    for v in a.versions:
        table.add_row(f"version {v.version}",
                      f"{v.count} answers, {v.first_s:.2f}s → {v.last_s:.2f}s")
    table.add_row("mixed-version window", f"{a.mixed_window_ms:.0f} ms")
    table.add_row("scheduling jitter p50 / p99",
                  f"{a.jitter.p50_ms:.1f} / {a.jitter.p99_ms:.1f} ms")
    console.print(table)


def print_release_table(r: ReleaseReport, console: Console) -> None:
    colour = {"succeeded": "green", "rolled_back": "yellow", "failed": "red"}[r.outcome]
    console.print(f"release {r.release} (from {r.from_release or '-'}) via {r.strategy} on "
                  f"{r.target}: [{colour}]{r.outcome}[/]", soft_wrap=True)
    table = Table()
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    for phase in r.phases:
        table.add_row(phase.name, f"{phase.seconds:.1f}")
    table.add_row("[bold]total[/]", f"[bold]{r.total_seconds:.1f}[/]")
    console.print(table)
    print_probe_table(r, console)
    if r.editors is not None:
        print_editors_table(r.editors, console)
    if r.data is not None:
        colour = "green" if r.data.ok else "red"
        console.print(f"data check: [{colour}]{escape(data_line(r.data))}[/]", soft_wrap=True)
        for detail in r.data.details[:10]:
            console.print(f"  {escape(detail)}", soft_wrap=True)
    if r.editors is not None or r.data is not None:
        verdict = ("[green]users unaffected[/]" if r.users_unaffected
                   else "[red]USERS AFFECTED[/]")
        console.print(f"{verdict} (visitors: {r.probes.failed} failed probes; editors: "
                      f"{r.editors.gave_up if r.editors else 0} gave up; data: "
                      f"{r.data.edits_lost if r.data else 0} edits lost, "
                      f"{r.data.pads_diverged if r.data else 0} pads diverged)", soft_wrap=True)


def print_editors_table(e: EditorsSummary, console: Console) -> None:
    table = Table(title="editors")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("editors / pads / sessions", f"{e.editors} / {e.pads} / {e.sessions}")
    table.add_row("disconnects", str(e.disconnects))
    figures = e.reconnect_ms
    table.add_row("reconnect p50 / p99 / max", " / ".join(
        "-" if v is None else f"{v:.0f} ms" for v in (figures.p50, figures.p99, figures.max)))
    table.add_row("gave up (must reload)", ("[red]" if e.gave_up else "") + str(e.gave_up))
    table.add_row("edits typed / acknowledged / lost",
                  f"{e.edits_typed} / {e.edits_acknowledged} / "
                  + ("[red]" if e.edits_lost else "") + str(e.edits_lost))
    table.add_row("longest interruption", f"{e.interruption_ms:.0f} ms")
    for w in e.windows[:10]:
        table.add_row(f"  {w.start_s:.2f}s → {w.end_s:.2f}s",
                      f"{(w.end_s - w.start_s) * 1000:.0f} ms, {w.editors} editors")
    console.print(table)

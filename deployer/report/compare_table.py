"""The trade-off table: measured rows per strategy, with the book's qualitative rows beside.

Rows are plain data (label, one cell per strategy) so the console (rich) and the HTML
report print the very same table. With repetitions a cell reads ``median (min–max)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deployer.base.errors import DeployerError
from deployer.report.floor import Floor, compute_floor, floor_config
from deployer.report.release import ReleaseReport, Verdict
from deployer.report.rollout import RunMeasures, Spread, measure

# The book's qualitative comparison, in short: what each strategy is like to live with.
# "deployment speed" is the book's verdict; the measured rows above it are this machine's.
QUALITATIVE: dict[str, dict[str, str]] = {
    "codedeploy": {
        "deployment speed (book)": "fast",
        "agility": "high: a new revision reaches the running instances, no new machines",
        "advantages": "nothing to bake; lifecycle hooks to stop, install, start and validate; "
                      "auto-rollback redeploys the last good revision",
        "disadvantages": "instances are changed in place (drift, leftovers of old releases); "
                         "each instance is out of service while it installs; an agent on "
                         "every instance",
    },
    "cloudformation": {
        "deployment speed (book)": "slow",
        "agility": "medium: every release is a stack update that replaces instances",
        "advantages": "simplest: one template, no artifact to build; fresh instances every "
                      "release; stack rollback to the previous launch template",
        "disadvantages": "every boot downloads and installs the release (slow, and fails "
                         "when a package source is down, at the worst moment: scaling out)",
    },
    "packer": {
        "deployment speed (book)": "medium",
        "agility": "low: every release, even a config change, needs an image bake first",
        "advantages": "immutable: what was tested boots, fast boot (configure and start); "
                      "broken installs fail at bake time, not in the rollout",
        "disadvantages": "the bake takes minutes; images to store, prune and patch; two "
                         "artifacts to keep in step (image and stack)",
    },
}
QUALITATIVE_ROWS = ("deployment speed (book)", "agility", "advantages", "disadvantages")
PREPARE_LABEL = {"codedeploy": "bundle + upload", "packer": "bake", "cloudformation": "nothing"}


@dataclass
class StrategyView:
    """What one column of the table is made of."""

    name: str
    report: ReleaseReport
    measures: RunMeasures
    floor: Floor | None
    repeats: dict[str, Spread | None] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    environment_created_s: float | None = None  # the run that created the environment

    @classmethod
    def from_entry(cls, name: str, entry: dict) -> StrategyView:
        """From a strategy's entry in a compare report (JSON)."""
        report = ReleaseReport.model_validate(entry)
        measures = (RunMeasures.model_validate(entry["measures"]) if entry.get("measures")
                    else measure(report))
        floor = Floor.model_validate(entry["floor"]) if entry.get("floor") else None
        repeats = {key: Spread.model_validate(value) if value else None
                   for key, value in (entry.get("repeats") or {}).items()}
        return cls(name, report, measures, floor, repeats, entry.get("outcomes") or {},
                   entry.get("environment_created_s"))

    @classmethod
    def from_report(cls, report: ReleaseReport,
                    stack_template: Path | None = None) -> StrategyView:
        """From a single release report: measured again, floor from ``stack_template`` (the
        strategy's stack template, which the caller knows; without it, no floor)."""
        measures = measure(report)
        floor = None
        if stack_template is not None:
            try:
                floor = compute_floor(floor_config(stack_template), measures)
            except DeployerError:
                floor = None
        return cls(report.strategy, report, measures, floor)


Row = tuple[str, dict[str, str]]


def _num(value: float | None, unit: str = "s", digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f} {unit}".rstrip()


def _cell(view: StrategyView, key: str, value: float | None, unit: str = "s",
          digits: int = 1) -> str:
    """The run's value, or ``median (min–max)`` over repetitions."""
    spread = view.repeats.get(key)
    if spread is not None and spread.n > 1:
        return (f"{spread.median:.{digits}f} ({spread.min:.{digits}f}–{spread.max:.{digits}f})"
                f" {unit}").rstrip()
    return _num(value, unit, digits)


def _size(size: int, kind: str) -> str:
    if kind == "none" or not size:
        return "none"
    label = {"image": "image", "revision": "revision bundle"}.get(kind, kind)
    return f"{size / 1e6:.1f} MB {label}"


def _outcome(view: StrategyView) -> str:
    r = view.report
    if view.outcomes and sum(view.outcomes.values()) > 1:
        return ", ".join(f"{n}× {name.replace('_', ' ')}" for name, n in view.outcomes.items())
    verdict = Verdict.of_report(r)
    if verdict is Verdict.DATA_LOST:
        return f"{r.outcome.replace('_', ' ')}, DATA LOST"
    text = r.outcome.replace("_", " ")
    if not r.zero_downtime:
        return f"{text}, downtime"
    return text if r.users_unaffected else f"{text}, editors affected"


def measured_rows(views: list[StrategyView]) -> list[Row]:
    def row(label: str, fn) -> Row:
        return label, {v.name: fn(v) for v in views}

    def phase(name: str):
        return lambda v: _cell(v, f"{name}_s", v.measures.phases.get(name))

    def boots(v: StrategyView) -> str:
        if not v.measures.boot_to_healthy:
            return "—"
        since = {b.since for b in v.measures.boot_to_healthy}
        return (_cell(v, "boot_to_healthy_s", v.measures.boot_to_healthy_s, digits=2)
                + f" from {'/'.join(sorted(since))}"
                + f" ({len(v.measures.boot_to_healthy)} instance"
                + ("s" if len(v.measures.boot_to_healthy) != 1 else "") + ")")

    def floor_parts(v: StrategyView) -> str:
        f = v.floor
        if f is None:
            return "—"
        return (f"{f.prepare_s:.1f} + {f.batches} × ({f.app_start_s:.1f} app start + "
                f"{f.health_check_s:.1f} health check + {f.deregistration_delay_s:.0f} drain)")

    def downtime(v: StrategyView) -> str:
        m = v.measures
        text = f"{m.failed_probes} of {m.probes} probes failed"
        if m.failed_by_class:
            text += " (" + ", ".join(f"{k} {n}" for k, n in m.failed_by_class.items()) + ")"
        return text

    def windows(v: StrategyView) -> str:
        m = v.measures
        return "none" if not m.downtime_windows else (
            f"{m.downtime_windows}, {m.downtime_ms:.0f} ms in all")

    def cutover(v: StrategyView) -> str:
        m = v.measures
        if m.first_new_s is None and m.last_old_s is None:
            return "—"
        return f"new from {_num(m.first_new_s, 's', 2)}, old until {_num(m.last_old_s, 's', 2)}"

    def editors(fn):
        return lambda v: "—" if v.report.editors is None else fn(v.report.editors)

    def reconnects(e) -> str:
        figures = e.reconnect_ms
        text = f"{e.disconnects} disconnects"
        if figures.p50 is not None:
            text += f", p50 {figures.p50:.0f} / max {figures.max:.0f} ms"
        return text + (f", {e.gave_up} gave up" if e.gave_up else "")

    def data(fn):
        return lambda v: "—" if v.report.data is None else fn(v.report.data)

    def edits_lost(v: StrategyView) -> str:
        d, e = v.report.data, v.report.editors
        if d is None:
            return "—"
        return f"{d.edits_lost}" + (f" of {e.edits_acknowledged}" if e is not None else "")

    def created(v: StrategyView) -> str:
        spread = v.repeats.get("environment_s")
        if spread is not None and spread.n > 1 and v.environment_created_s is not None:
            return (f"{v.environment_created_s:.1f} s to create (first repetition); "
                    f"median {spread.median:.1f} s")
        value = _cell(v, "environment_s", v.measures.phases.get("environment"))
        return value + (" (created)" if v.measures.environment_created else "")

    return [
        row("outcome", _outcome),
        row("environment", created),
        row("prepare", lambda v: _cell(v, "prepare_s", v.measures.phases.get("prepare"))
            + f" ({PREPARE_LABEL.get(v.name, 'prepare')})"),
        row("roll out", phase("rollout")),
        row("verify", phase("verify")),
        row("total", lambda v: _cell(v, "total_s", v.measures.total_s)),
        row("release (prepare + roll out)", lambda v: _cell(v, "release_s",
                                                             v.measures.release_s)),
        row("floor", lambda v: _cell(v, "floor_s", v.floor.floor_s if v.floor else None)),
        row("  = prepare + batches × (…)", floor_parts),
        row("actual / floor", lambda v: _cell(
            v, "ratio_to_floor", v.floor.ratio_to_floor if v.floor else None, "×", 2)),
        row("downtime (failed probes)", downtime),
        row("downtime windows", windows),
        row("longest gap between answers", lambda v: _cell(v, "longest_gap_ms",
                                                            v.measures.longest_gap_ms, "ms", 0)),
        row("users unaffected", lambda v: "yes" if v.report.users_unaffected else "NO"),
        row("editor interruption (longest)", editors(
            lambda e: f"{e.interruption_ms:.0f} ms ({e.editors} editors on {e.pads} pads)")),
        row("editor reconnects", editors(reconnects)),
        row("edits lost (acknowledged)", edits_lost),
        row("pads diverged", data(lambda d: f"{d.pads_diverged} of {d.pads_checked}")),
        row("cut-over (probe clock)", cutover),
        row("mixed-version window", lambda v: _cell(v, "mixed_window_ms",
                                                     v.measures.mixed_window_ms, "ms", 0)),
        row("instance boot → healthy", boots),
        row("in-place work per instance", lambda v: _cell(v, "in_place_s",
                                                           v.measures.in_place_s)),
        row("image / artifact storage", lambda v: _size(v.measures.storage_bytes,
                                                         v.measures.storage_kind)),
    ]


def qualitative_rows(names: list[str]) -> list[Row]:
    return [(label, {name: QUALITATIVE.get(name, {}).get(label, "—") for name in names})
            for label in QUALITATIVE_ROWS]


def print_compare_table(views: list[StrategyView], console, *, title: str) -> None:
    """The table on the console (rich): strategies as columns."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("")
    for view in views:
        colour = {"succeeded": "green", "rolled_back": "yellow", "failed": "red"}[
            view.report.outcome]
        if view.report.outcome == "succeeded" and not view.report.zero_downtime:
            colour = "red"
        table.add_column(f"[{colour}]{view.name}[/]", overflow="fold")
    names = [v.name for v in views]
    for label, cells in measured_rows(views):
        table.add_row(label, *(cells[n] for n in names))
    table.add_section()
    for label, cells in qualitative_rows(names):
        table.add_row(f"[dim]{label}[/]", *(f"[dim]{cells[n]}[/]" for n in names))
    console.print(table)

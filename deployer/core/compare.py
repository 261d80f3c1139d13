"""`deployer compare`: the same release through each strategy, measured side by side.

Each strategy releases on its own environment (stack ``etherpad-<strategy>``), one
:class:`~deployer.core.engine.ReleaseRun` at a time, never two at once: they would share the
machine's cores and slow each other down. With ``repeat`` N the rounds interleave (every
strategy once, then every strategy again), so a machine that gets busier mid-way slows all
strategies alike instead of the last one.

Every measured release starts from ``from_release``. An environment that runs anything else
(the release of the previous repetition, or of an earlier compare) is first brought back by
releasing ``from_release`` through the same strategy — a rollback by release, recorded as a
``reset`` run and left out of the numbers. The measured release then meets what a real
release meets: a running environment with its database and pads, instances that a previous
rollout left behind. (Removing and recreating the environment instead would measure a first
release on a brand-new stack every time — CodeDeploy without a previous revision, an empty
database — and add an environment creation to every repetition.) The first repetition
creates a missing environment inside its ``environment`` phase, and says so
(``environment_created``).

Per strategy the comparison keeps one release report (all the release JSON keys) — the run
with the median release time, or the worst run when any run failed, rolled back or saw
downtime, so the entry explains the exit code — plus its floor (:mod:`deployer.report.floor`), its
measures (:mod:`deployer.report.rollout`) and, over the repetitions, median and spread of each.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from collections.abc import Callable

import psutil
from pydantic import BaseModel, Field

from deployer.base import logs
from deployer.base.clock import Clock
from deployer.base.errors import ConfigError, ExitStatus, UsageError
from deployer.cloud.port import CloudPort, OnEvent, is_gone
from deployer.core.editing import EditorSettings
from deployer.core.engine import (
    MakePoller,
    PollerSettings,
    ReleaseRun,
    RunObserver,
    health_poller,
    new_run_id,
    workdir_for,
)
from deployer.core.strategy import (
    ReleaseContext,
    ReleaseOptions,
    Strategy,
    load_strategy,
    strategy_names,
)
from deployer.report.floor import Floor, FloorConfig, compute_floor, floor_config
from deployer.report.history import History, RunKind, RunRole
from deployer.report.release import Outcome, ReleaseReport, Verdict
from deployer.report.rollout import RunMeasures, measure, spread

DEFAULT_STRATEGIES = ("codedeploy", "cloudformation", "packer")
# Measures summarised over repetitions: (key in the strategy's "repeats", how to read it).
_REPEATED: dict[str, Callable[[RunMeasures, Floor | None], float | None]] = {
    "total_s": lambda m, f: m.total_s,
    "release_s": lambda m, f: m.release_s,
    "environment_s": lambda m, f: m.phases.get("environment"),
    "prepare_s": lambda m, f: m.phases.get("prepare"),
    "rollout_s": lambda m, f: m.phases.get("rollout"),
    "verify_s": lambda m, f: m.phases.get("verify"),
    "failed_probes": lambda m, f: m.failed_probes,
    "downtime_ms": lambda m, f: m.downtime_ms,
    "longest_gap_ms": lambda m, f: m.longest_gap_ms,
    "first_new_s": lambda m, f: m.first_new_s,
    "last_old_s": lambda m, f: m.last_old_s,
    "mixed_window_ms": lambda m, f: m.mixed_window_ms,
    "boot_to_healthy_s": lambda m, f: m.boot_to_healthy_s,
    "in_place_s": lambda m, f: m.in_place_s,
    "storage_bytes": lambda m, f: m.storage_bytes,
    "floor_s": lambda m, f: f.floor_s if f else None,
    "ratio_to_floor": lambda m, f: f.ratio_to_floor if f else None,
}


class CompareSettings(BaseModel):
    release: str
    from_release: str
    strategies: list[str]
    repeat: int = 1
    source: str = "github"
    target: str = "local"
    hz: float = 20.0
    budget_s: float | None = None


class RunRecord(BaseModel):
    """One release run of a compare (an entry of the JSON's ``runs``)."""

    run_id: str
    strategy: str
    repetition: int
    role: RunRole
    release: str
    from_release: str | None
    outcome: Outcome
    zero_downtime: bool
    total_seconds: float
    failed_probes: int
    users_unaffected: bool = True
    measures: RunMeasures | None = None  # measured runs only
    floor: Floor | None = None


class CompareSummary(BaseModel):
    outcome: Verdict
    exit_code: int
    zero_downtime: bool
    users_unaffected: bool = True  # every measured run's (see the release report)
    seconds: float  # the whole compare, wall clock
    ranking: list[str]  # by median release time (prepare + rollout), fastest first
    per_strategy: dict[str, dict] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class Comparison(BaseModel):
    """The JSON report of `deployer compare` (a contract, like the release report)."""

    run_id: str
    release: str
    from_release: str
    target: str
    source: str
    hz: float
    repeat: int
    budget_s: float | None = None
    started_at: float
    machine: dict
    strategies: dict[str, dict]
    runs: list[RunRecord]
    summary: CompareSummary

    def reports(self) -> dict[str, ReleaseReport]:
        """Each strategy's release report, as `release --json` would have written it."""
        return {name: ReleaseReport.model_validate(entry)
                for name, entry in self.strategies.items()}


class CompareObserver(RunObserver):
    """A run observer that also hears which run of the compare is starting."""

    def compare_run_started(self, strategy: str, repetition: int, repeat: int,
                            role: RunRole, index: int, count: int) -> None: ...


def parse_strategies(text: str | None) -> list[str]:
    """``codedeploy,cloudformation,packer`` → the names, checked against the installed ones."""
    if text is None:
        return list(DEFAULT_STRATEGIES)
    names = [part.strip() for part in text.split(",")]
    installed = strategy_names()
    if not text.strip() or any(not name for name in names):
        raise UsageError(f"bad --strategies value {text!r}",
                         hint=f"give a comma-separated list of: {', '.join(installed)}")
    unknown = [name for name in names if name not in installed]
    if unknown:
        raise UsageError(f"unknown strategy {unknown[0]!r} in --strategies",
                         hint=f"choose from: {', '.join(installed)}")
    if len(set(names)) != len(names):
        raise UsageError(f"a strategy appears twice in --strategies {text!r}",
                         hint="name each strategy once; use --repeat to run it again")
    return names


def machine_info() -> dict:
    """What the numbers were measured on (they only compare on the same machine)."""
    info: dict = {"platform": platform.platform(), "machine": platform.machine(),
                  "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    info["memory_gb"] = round(psutil.virtual_memory().total / 1024 ** 3, 1)
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def exit_status(outcome: Verdict | str) -> ExitStatus:
    return Verdict(outcome).exit_status


# Worst first: the comparison's verdict is the worst of its runs'.
_WORST_FIRST = (Verdict.DATA_LOST, Verdict.FAILED, Verdict.ROLLED_BACK, Verdict.DOWNTIME,
                Verdict.SUCCEEDED)


def overall_outcome(reports: list[ReleaseReport], failed_resets: int = 0) -> Verdict:
    """data_lost (an acknowledged edit lost or a pad diverged in any run) > failed (any run
    failed, or an environment could not be reset) > rolled_back (any) > downtime (any failed
    probe, any editor who gave up) > succeeded."""
    verdicts = {Verdict.of_report(r) for r in reports}
    if failed_resets and Verdict.DATA_LOST not in verdicts:
        return Verdict.FAILED
    return next((v for v in _WORST_FIRST if v in verdicts), Verdict.SUCCEEDED)


def _badness(report: ReleaseReport) -> int:
    return len(_WORST_FIRST) - 1 - _WORST_FIRST.index(Verdict.of_report(report))


def representative(runs: list[tuple[ReleaseReport, RunMeasures]]) -> int:
    """Index of the run that stands for a strategy: the worst when any went wrong, else the
    one with the median release time (the lower one of an even count)."""
    worst = max(range(len(runs)), key=lambda i: _badness(runs[i][0]))
    if _badness(runs[worst][0]):
        return worst
    ordered = sorted(range(len(runs)), key=lambda i: runs[i][1].release_s)
    return ordered[(len(ordered) - 1) // 2]


def strategy_entry(report: ReleaseReport, measures: RunMeasures, floor: Floor | None,
                   repeated: list[tuple[RunMeasures, Floor | None]]) -> dict:
    """A strategy's entry in the JSON: its release report's keys, then what compare adds."""
    entry = report.model_dump(mode="json")
    entry["floor"] = floor.model_dump(mode="json") if floor else None
    entry["ratio_to_floor"] = floor.ratio_to_floor if floor else None
    entry["measures"] = measures.model_dump(mode="json")
    entry["repeats"] = {key: (s.model_dump() if (s := spread(read(m, f) for m, f in repeated))
                              else None) for key, read in _REPEATED.items()}
    entry["outcomes"] = {}
    return entry


class CompareRun:
    """Runs the comparison; the CLI only turns options into settings and shows results."""

    def __init__(self, settings: CompareSettings, *, cloud: CloudPort,
                 on_event: OnEvent = lambda event: None,
                 observer: CompareObserver | None = None, history: History | None = None,
                 strategy_loader: Callable[[str], Strategy] = load_strategy,
                 context_options: ReleaseOptions | None = None, clock: Clock | None = None,
                 make_poller: MakePoller = health_poller,
                 editors: EditorSettings | None = None) -> None:
        if settings.repeat < 1:
            raise UsageError(f"--repeat must be at least 1, got {settings.repeat}",
                             hint="pass --repeat 1 or more")
        self.settings = settings
        self.cloud = cloud
        self.on_event = on_event
        self.observer = observer or CompareObserver()
        self.history = history
        self.load_strategy = strategy_loader
        self.options = context_options or ReleaseOptions()
        self.clock = clock or Clock()
        self.make_poller = make_poller
        # Editors and the data check watch the measured runs; resets are not measured.
        self.editors = editors
        self.run_id = new_run_id(self.clock)
        self.log = logs.get_logger(compare=self.run_id)

    def _context(self, release: str, from_release: str | None) -> ReleaseContext:
        return ReleaseContext(release=release, from_release=from_release, cloud=self.cloud,
                              workdir=workdir_for(self.cloud, self.clock),
                              on_event=self.on_event, source=self.settings.source,
                              options=self.options)

    def _release(self, strategy_name: str, release: str, from_release: str | None,
                 role: RunRole) -> ReleaseReport:
        strategy = self.load_strategy(strategy_name)
        ctx = self._context(release, from_release)
        try:
            report = ReleaseRun(strategy, ctx, poller=PollerSettings(hz=self.settings.hz),
                                observer=self.observer, clock=self.clock,
                                make_poller=self.make_poller,
                                editors=self.editors if role is RunRole.MEASURED else None,
                                ).execute()
        finally:
            # Bundles and build output were uploaded or registered: the scratch space can go.
            shutil.rmtree(ctx.workdir, ignore_errors=True)
        if self.history is not None:
            self.history.record(report.model_dump(mode="json"), kind=RunKind.RELEASE,
                                role=role, parent_id=self.run_id)
        return report

    def _needs_reset(self, strategy_name: str) -> str | None:
        """The release the environment runs, when it is not the starting release."""
        view = self.cloud.describe_environment(strategy_name)
        if view is None or is_gone(view.stack_status):
            return None
        current = view.release
        return current if current != self.settings.from_release else None

    def execute(self) -> Comparison:
        s = self.settings
        started_at, started = self.clock.now(), self.clock.monotonic()
        machine = machine_info()
        self.log.info("compare.start", release=s.release, from_release=s.from_release,
                      strategies=s.strategies, repeat=s.repeat)
        # The source must have both releases: find out now, not after the first strategy.
        for name in s.strategies:
            ctx = self._context(s.release, s.from_release)
            try:
                self.load_strategy(name).preflight(ctx)
            finally:
                shutil.rmtree(ctx.workdir, ignore_errors=True)
        configs: dict[str, FloorConfig | None] = {}
        notes: list[str] = []
        for name in s.strategies:
            try:
                configs[name] = floor_config(self.load_strategy(name).stack_template())
            except ConfigError as exc:
                configs[name] = None
                notes.append(f"{name}: no floor ({exc})")
        runs: list[RunRecord] = []
        measured: dict[str, list[tuple[ReleaseReport, RunMeasures, Floor | None]]] = {
            name: [] for name in s.strategies}
        failed_resets = 0
        count, index = s.repeat * len(s.strategies), 0
        for repetition in range(1, s.repeat + 1):
            for name in s.strategies:
                index += 1
                current = self._needs_reset(name)
                if current is not None:
                    self.log.info("compare.reset", strategy=name, runs=current,
                                  to=s.from_release)
                    self.observer.compare_run_started(name, repetition, s.repeat,
                                                      RunRole.RESET, index, count)
                    reset = self._release(name, s.from_release, current, RunRole.RESET)
                    runs.append(_record(reset, repetition, RunRole.RESET))
                    if reset.outcome is not Outcome.SUCCEEDED:
                        failed_resets += 1
                        notes.append(f"{name}, repetition {repetition}: the environment could "
                                     f"not be brought back to {s.from_release} "
                                     f"({reset.outcome}: {reset.error}); the release below "
                                     f"started from what it ran")
                self.observer.compare_run_started(name, repetition, s.repeat, RunRole.MEASURED,
                                                  index, count)
                report = self._release(name, s.release, s.from_release, RunRole.MEASURED)
                measures = measure(report)
                config = configs.get(name)
                floor = compute_floor(config, measures) if config else None
                measured[name].append((report, measures, floor))
                runs.append(_record(report, repetition, RunRole.MEASURED, measures, floor))
        strategies: dict[str, dict] = {}
        per_strategy: dict[str, dict] = {}
        for name, results in measured.items():
            pick = representative([(r, m) for r, m, _ in results])
            report, measures, floor = results[pick]
            entry = strategy_entry(report, measures, floor, [(m, f) for _, m, f in results])
            outcomes: dict[str, int] = {}
            for r, _, _ in results:
                key = Verdict.of_report(r).value
                outcomes[key] = outcomes.get(key, 0) + 1
            entry["outcomes"] = outcomes
            # A creation happens once, in the first repetition: keep its time apart from the
            # median, which with repetitions is the time of finding the environment there.
            created = [m.phases.get("environment") for _, m, _ in results
                       if m.environment_created]
            entry["environment_created_s"] = created[0] if created else None
            strategies[name] = entry
            release_times = entry["repeats"]["release_s"]
            per_strategy[name] = {
                "outcomes": outcomes,
                "release_s": release_times["median"] if release_times else None,
                "total_s": entry["repeats"]["total_s"]["median"],
                "ratio_to_floor": (entry["repeats"]["ratio_to_floor"] or {}).get("median"),
                "failed_probes": sum(m.failed_probes for _, m, _ in results),
                "users_unaffected": all(r.users_unaffected for r, _, _ in results),
                "edits_lost": sum(r.data.edits_lost for r, _, _ in results if r.data),
                "pads_diverged": sum(r.data.pads_diverged for r, _, _ in results if r.data),
                "editors_gave_up": sum(r.editors.gave_up for r, _, _ in results if r.editors),
                "editor_interruption_ms": max((r.editors.interruption_ms for r, _, _ in results
                                               if r.editors), default=None),
            }
        all_reports = [r for results in measured.values() for r, _, _ in results]
        outcome = overall_outcome(all_reports, failed_resets)
        ranking = sorted((n for n in s.strategies if per_strategy[n]["release_s"] is not None),
                         key=lambda n: per_strategy[n]["release_s"])
        comparison = Comparison(
            run_id=self.run_id, release=s.release, from_release=s.from_release, target=s.target,
            source=s.source, hz=s.hz, repeat=s.repeat, budget_s=s.budget_s,
            started_at=started_at, machine=machine, strategies=strategies, runs=runs,
            summary=CompareSummary(
                outcome=outcome, exit_code=int(exit_status(outcome)),
                zero_downtime=all(r.zero_downtime for r in all_reports),
                users_unaffected=all(r.users_unaffected for r in all_reports),
                seconds=round(self.clock.monotonic() - started, 3), ranking=ranking,
                per_strategy=per_strategy, notes=notes))
        if self.history is not None:
            self.history.record(comparison.model_dump(mode="json"), kind=RunKind.COMPARE)
        self.log.info("compare.end", outcome=outcome, ranking=ranking,
                      seconds=comparison.summary.seconds)
        return comparison


def _record(report: ReleaseReport, repetition: int, role: RunRole,
            measures: RunMeasures | None = None, floor: Floor | None = None) -> RunRecord:
    return RunRecord(run_id=report.run_id, strategy=report.strategy, repetition=repetition,
                     role=role, release=report.release, from_release=report.from_release,
                     outcome=report.outcome, zero_downtime=report.zero_downtime,
                     total_seconds=report.total_seconds, failed_probes=report.probes.failed,
                     users_unaffected=report.users_unaffected,
                     measures=measures, floor=floor)

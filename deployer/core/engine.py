"""The run engine: a release run is a sequence of timed phases with the poller watching.

    ensure environment → prepare (bundle/upload or bake) → [poller on] roll out
    (→ roll back on failure) [poller off] → verify → report

The engine knows strategies only through :class:`deployer.core.strategy.Strategy` and clouds only
through :class:`deployer.cloud.port.CloudPort`; it never imports typer, rich or boto3.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deployer.base import logs
from deployer.base.clock import Clock
from deployer.base.errors import DeployerError, RollbackFailed, RolloutFailed, UsageError
from deployer.base.home import deployer_home
from deployer.cloud.port import Event, OnEvent
from deployer.core.editing import EditorSettings, EditorsFindings, EditorsWatch
from deployer.core.strategy import Prepared, PreparedKind, ReleaseContext, Strategy
from deployer.measure.analysis import analyse
from deployer.measure.poller import HealthPoller, Probe
from deployer.report.release import Outcome, PhaseTiming, ReleaseReport


def workdir_for(cloud, clock: Clock | None = None) -> Path:
    """Scratch space for one run (bundles, build output), under the data dir."""
    path = deployer_home() / "work" / new_run_id(clock)
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_id(clock: Clock | None = None) -> str:
    now = (clock or Clock()).now()
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + uuid.uuid4().hex[:6]


class RunObserver:
    """What a live view hears from a release run while it happens.

    The engine calls these from its own thread (phases, cloud events) and from the poller's
    thread (probes); an observer must be quick and thread-safe. The defaults do nothing, so
    an observer overrides only what it shows. The engine never imports a UI library: the CLI
    passes a rich view in, a test passes a recorder.
    """

    def run_started(self, run_id: str, strategy: str, release: str,
                    from_release: str | None) -> None: ...

    def environment_ready(self, url: str | None, from_release: str | None) -> None:
        """The environment exists; ``from_release`` is the release it really runs."""

    def phase_started(self, name: str) -> None: ...

    def phase_ended(self, name: str, seconds: float, ok: bool) -> None: ...

    def probe(self, probe: Probe) -> None: ...

    def event(self, event: Event) -> None: ...

    def editors_started(self, status: Callable[[], dict[str, int]]) -> None:
        """The editors are on; ``status()`` counts them connected, reconnecting, gone."""


@dataclass
class PhaseClock:
    """Times named phases; a phase that raises is still timed."""

    clock: Callable[[], float] = time.monotonic  # a monotonic reading
    phases: list[PhaseTiming] = field(default_factory=list)
    log: Any = None
    observer: RunObserver = field(default_factory=RunObserver)

    origin: float | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.clock()
        if self.origin is None:
            self.origin = start
        if self.log:
            self.log.info("phase.start", phase=name)
        self.observer.phase_started(name)
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = round(self.clock() - start, 3)
            self.phases.append(PhaseTiming(name=name, seconds=seconds,
                                           start_s=round(start - (self.origin or start), 3)))
            if self.log:
                self.log.info("phase.end", phase=name, seconds=seconds, ok=ok)
            self.observer.phase_ended(name, seconds, ok)

    def total(self) -> float:
        return round(sum(p.seconds for p in self.phases), 3)


@dataclass
class PollerSettings:
    hz: float = 20.0
    timeout: float = 2.0
    extractor: Any = None


class Poller(Protocol):
    """What the engine needs of a health poller (:class:`HealthPoller`, or a test's fake)."""

    skipped: int
    started_at: float | None

    def start(self) -> None: ...

    def stop(self) -> list[Probe]: ...

    def snapshot(self) -> list[Probe]: ...

    def run_for(self, seconds: float) -> list[Probe]: ...


MakePoller = Callable[[str, PollerSettings, Callable[[Probe], None] | None], Poller]
MakeWatch = Callable[[EditorSettings, Any, str, str], EditorsWatch]


def health_poller(url: str, settings: PollerSettings,
                  on_probe: Callable[[Probe], None] | None = None) -> Poller:
    """The real poller: fresh connections to the load balancer, tens of probes a second."""
    return HealthPoller(url, hz=settings.hz, timeout=settings.timeout,
                        extractor=settings.extractor, on_probe=on_probe)


class ReleaseRun:
    """One release of one strategy on one cloud.

    Every wait and time reading goes through ``clock``; the poller comes from
    ``make_poller``. Both are real by default; a unit test passes a fake of each.
    """

    def __init__(self, strategy: Strategy, ctx: ReleaseContext, *,
                 poller: PollerSettings | None = None, run_id: str | None = None,
                 clock: Clock | None = None, observer: RunObserver | None = None,
                 make_poller: MakePoller = health_poller,
                 editors: EditorSettings | None = None,
                 make_watch: MakeWatch = EditorsWatch) -> None:
        self.strategy = strategy
        # None: no editors and no data check (unit tests); the CLI passes its --editors.
        self.editor_settings = editors
        self.make_watch = make_watch
        self.ctx = ctx
        self.poller_settings = poller or PollerSettings()
        self.clock = clock or Clock()
        self.run_id = run_id or new_run_id(self.clock)
        self.make_poller = make_poller
        self.log = logs.get_logger()
        self.observer = observer or RunObserver()
        self.phases = PhaseClock(clock=self.clock.monotonic, log=self.log,
                                 observer=self.observer)

    def execute(self) -> ReleaseReport:
        ctx = self.ctx
        # Bad input (an unreachable source, a release it lacks) fails here, before anything
        # is created: one line from the CLI, no report of a run that never started.
        self.strategy.preflight(ctx)
        if self.editor_settings is not None:
            self.editor_settings.check_client()
        on_event = ctx.on_event
        try:
            return self._execute(on_event)
        finally:
            # Whatever ends the run (a report, bad input, Ctrl-C, a bug), the context's
            # listener is the caller's again and the log forgets the run.
            ctx.on_event = on_event
            logs.clear_run()

    def _execute(self, on_event: OnEvent) -> ReleaseReport:
        ctx = self.ctx
        started_at = self.clock.now()
        events: list[dict] = []

        def record(event) -> None:
            events.append({"at": event.at, "source": event.source, "resource": event.resource,
                           "status": event.status, "reason": event.reason})
            on_event(event)
            self.observer.event(event)

        ctx.on_event = record
        logs.bind_run(run_id=self.run_id, strategy=self.strategy.name, release=ctx.release,
                      target=ctx.cloud.name)
        self.log.info("release.start", from_release=ctx.from_release)
        self.observer.run_started(self.run_id, self.strategy.name, ctx.release,
                                  ctx.from_release)
        outcome, error = Outcome.SUCCEEDED, None
        prepared = Prepared(kind=PreparedKind.NONE)
        poller: Poller | None = None
        watch: EditorsWatch | None = None
        url: str | None = None
        details: dict[str, Any] = {}
        try:
            with self.phases.phase("environment"):
                env = self.strategy.ensure_environment(ctx)
                url = env.url
            self.observer.environment_ready(url, ctx.from_release)
            with self.phases.phase("prepare"):
                prepared = self.strategy.prepare(ctx)
            details["prepared"] = {"kind": prepared.kind.value, "ref": prepared.ref,
                                   "size_bytes": prepared.size_bytes, **prepared.details}
            if self.editor_settings is not None and url:
                watch = self.make_watch(self.editor_settings, ctx.cloud, self.strategy.name,
                                        url)
                watch.start()
                self.observer.editors_started(watch.status)
            poller = self.make_poller(url or "", self.poller_settings, self.observer.probe)
            poller.start()
            try:
                with self.phases.phase("rollout"):
                    self.strategy.roll_out(ctx, prepared)
            except RolloutFailed as exc:
                outcome, error = Outcome.ROLLED_BACK, str(exc)
                self.log.warning("release.rolled_back", reason=str(exc))
            except RollbackFailed as exc:
                # The cloud's own rollback failed: trying another by hand would only stack
                # a second failure on a stack that needs a human.
                outcome, error = Outcome.FAILED, str(exc)
                self.log.error("release.rollback_failed", reason=str(exc))
            except DeployerError as exc:
                outcome, error = Outcome.FAILED, str(exc)
                self.log.error("release.rollout_failed", reason=str(exc))
                with self.phases.phase("rollback"):
                    try:
                        if self.strategy.roll_back(ctx):
                            outcome = Outcome.ROLLED_BACK
                        else:
                            self.log.warning("release.nothing_rolled_back")
                    except DeployerError as rb_exc:
                        error = f"{exc}; rollback failed: {rb_exc}"
            finally:
                # Keep watching briefly so the end of the cut-over is measured, not assumed.
                self.clock.sleep(min(1.0, 10.0 / self.poller_settings.hz))
                poller.stop()
        except UsageError:
            raise  # bad input: nothing was changed, the CLI says what to fix (exit 2)
        except DeployerError as exc:
            outcome, error = Outcome.FAILED, str(exc)
            self.log.error("release.failed", reason=str(exc))
        except BaseException:
            if watch is not None:
                watch.abort()
            raise
        served: list[str] = []
        if poller is not None:
            with self.phases.phase("verify"):
                served = verify_served(url, self.poller_settings, make_poller=self.make_poller)
        probes = poller.snapshot() if poller else []
        duration = (max((p.sent_s + p.latency_ms / 1000 for p in probes), default=0.0))
        probe_start = poller.started_at if poller and poller.started_at else started_at
        findings = EditorsFindings(editors=None, data=None, timeline=[])
        if watch is not None:
            findings = watch.finish(probe_start)
        health = []
        if poller is not None:
            try:
                health = ctx.cloud.target_health_history(self.strategy.name)
            except DeployerError as exc:
                self.log.warning("report.no_target_health", reason=str(exc))
        analysis = analyse(probes, url=url or "", hz=self.poller_settings.hz,
                           duration_s=duration, skipped=poller.skipped if poller else 0)
        report = ReleaseReport(
            **analysis.model_dump(), run_id=self.run_id, strategy=self.strategy.name,
            release=ctx.release, from_release=ctx.from_release, target=ctx.cloud.name,
            outcome=outcome, phases=self.phases.phases, total_seconds=self.phases.total(),
            served_versions=served, error=error, details=details,
            started_at=started_at, probe_offset_s=round(probe_start - started_at, 3),
            timeline=[[p.sent_s, p.outcome, p.version, round(p.latency_ms, 1)] for p in probes],
            target_health=[{**h, "at_s": round(h["at"] - probe_start, 3)} for h in health],
            events=[{**e, "at_s": round(e["at"] - probe_start, 3)} for e in events],
            editors=findings.editors, data=findings.data, editor_timeline=findings.timeline,
        )
        report.judge_users()
        if outcome is Outcome.SUCCEEDED and served != [ctx.release]:
            report.outcome = Outcome.FAILED
            report.error = f"load balancer serves {served or 'nothing'}, not {ctx.release}"
        self.log.info("release.end", outcome=report.outcome, total_seconds=report.total_seconds,
                      zero_downtime=report.zero_downtime, failed_probes=report.probes.failed,
                      users_unaffected=report.users_unaffected,
                      edits_lost=report.data.edits_lost if report.data else None)
        return report


def verify_served(url: str | None, settings: PollerSettings, seconds: float = 1.0, *,
                  make_poller: MakePoller = health_poller) -> list[str]:
    """Which releases the load balancer serves now, from a short burst of probes."""
    if not url:
        return []
    poller = make_poller(url, dataclasses.replace(settings, hz=max(settings.hz, 20.0)), None)
    probes = poller.run_for(seconds)
    return sorted({p.version for p in probes if p.ok and p.version})

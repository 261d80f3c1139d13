"""What a release manager compares between runs, read off one release report.

Everything here is derived from a :class:`~deployer.report.release.ReleaseReport` alone (its phases,
probe analysis, target health transitions and cloud events), so a report rebuilt from the
history gives the same numbers as the run that wrote it. Times ``*_s`` on the probe clock
are seconds since the poller started, which is when the rollout started.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from deployer.report.release import ReleaseReport

LAUNCH_REASON = re.compile(r"Launching a new EC2 instance: (\S+)")
# CodeDeploy lifecycle events arrive as "<deployment>/<instance>/<event>".
LIFECYCLE_RESOURCE = re.compile(r"^(d-[^/]+)/([^/]+)/([A-Za-z]+)$")
# The work on an instance between traffic blocked and traffic allowed again.
IN_PLACE_EVENTS = ("ApplicationStop", "DownloadBundle", "BeforeInstall", "Install",
                   "AfterInstall", "ApplicationStart", "ValidateService")
# Events no earlier than this before the rollout started still belong to it (clock skew
# between the supervisor's wall clock and the poller's start).
_SLACK_S = 0.5


class BootToHealthy(BaseModel):
    """One instance: from launch (a new instance) or registration (CodeDeploy's AllowTraffic)
    to the load balancer calling it healthy."""

    target_id: str
    since: str  # "launch" | "registration"
    start_s: float
    healthy_s: float
    seconds: float
    failed_checks_first: bool  # went unhealthy before healthy: needed the healthy threshold


class RunMeasures(BaseModel):
    """The comparison's rows for one release run."""

    run_id: str
    strategy: str
    outcome: str
    zero_downtime: bool
    phases: dict[str, float]
    total_s: float
    release_s: float  # prepare + roll out (+ rollback): what a release costs on a running env
    environment_created: bool
    probes: int
    failed_probes: int
    failed_by_class: dict[str, int]
    downtime_windows: int
    downtime_ms: float
    longest_gap_ms: float
    first_new_s: float | None
    last_old_s: float | None
    mixed_window_ms: float
    boot_to_healthy: list[BootToHealthy] = Field(default_factory=list)
    boot_to_healthy_s: float | None  # median over instances
    in_place_s: float | None  # CodeDeploy: median per instance, ApplicationStop..ValidateService
    batches_observed: int
    storage_kind: str
    storage_bytes: int


def phase_seconds(report: ReleaseReport) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for phase in report.phases:
        seconds[phase.name] = round(seconds.get(phase.name, 0.0) + phase.seconds, 3)
    return seconds


def environment_created(report: ReleaseReport) -> bool:
    """Whether this run created its environment (a stack CREATE on the run's events)."""
    stack = f"etherpad-{report.strategy}"
    return any(e.get("resource") == stack and e.get("status") == "CREATE_IN_PROGRESS"
               for e in report.events)


def boot_to_healthy(report: ReleaseReport) -> list[BootToHealthy]:
    """Per target that turned healthy during the rollout: the launch that brought it (a new
    instance), else its registration (an in-place deployment allowing traffic again)."""
    launches: dict[str, list[float]] = {}
    for event in report.events:
        match = LAUNCH_REASON.search(event.get("reason") or "")
        if event.get("status") == "LAUNCHING" and match:
            launches.setdefault(match[1], []).append(event["at_s"])
    registrations: dict[str, list[float]] = {}
    history: dict[str, list[dict]] = {}
    for change in sorted(report.target_health, key=lambda h: h["at_s"]):
        history.setdefault(change["target_id"], []).append(change)
        if change["to_state"] == "initial":
            registrations.setdefault(change["target_id"], []).append(change["at_s"])
    found = []
    for target, changes in history.items():
        previous_healthy = float("-inf")
        for i, change in enumerate(changes):
            if change["to_state"] != "healthy":
                continue
            at = change["at_s"]
            if at >= -_SLACK_S:
                since, start = _start_of(target, previous_healthy, at, launches, registrations)
                if start is not None:
                    failed_first = any(c["to_state"] == "unhealthy" and start <= c["at_s"] < at
                                       for c in changes[:i])
                    found.append(BootToHealthy(
                        target_id=target, since=since, start_s=round(start, 3),
                        healthy_s=round(at, 3), seconds=round(at - start, 3),
                        failed_checks_first=failed_first))
            previous_healthy = at
    return sorted(found, key=lambda b: b.healthy_s)


def _start_of(target: str, after: float, before: float, launches: dict[str, list[float]],
              registrations: dict[str, list[float]]) -> tuple[str, float | None]:
    launched = [t for t in launches.get(target, []) if after < t <= before]
    if launched:
        return "launch", launched[-1]
    registered = [t for t in registrations.get(target, []) if after < t <= before]
    return "registration", (registered[-1] if registered else None)


def lifecycle_seconds(report: ReleaseReport) -> dict[str, dict[str, float]]:
    """CodeDeploy during the rollout: per instance, seconds of each lifecycle event."""
    started: dict[tuple[str, str], float] = {}
    seconds: dict[str, dict[str, float]] = {}
    for event in sorted(report.events, key=lambda e: e["at_s"]):
        match = LIFECYCLE_RESOURCE.match(event.get("resource") or "")
        if not match or event["at_s"] < -_SLACK_S:
            continue
        _, instance, name = match.groups()
        if event.get("status") == "InProgress":
            started[(instance, name)] = event["at_s"]
        elif (instance, name) in started:
            seconds.setdefault(instance, {})[name] = round(
                event["at_s"] - started.pop((instance, name)), 3)
    return seconds


def in_place_seconds(report: ReleaseReport) -> float | None:
    per_instance = [sum(events.get(name, 0.0) for name in IN_PLACE_EVENTS)
                    for events in lifecycle_seconds(report).values()
                    if any(name in events for name in IN_PLACE_EVENTS)]
    return round(statistics.median(per_instance), 3) if per_instance else None


def batches_observed(report: ReleaseReport) -> int:
    """Rolling update batches, or CodeDeploy instances deployed one after another."""
    rolling = sum(1 for e in report.events if e.get("at_s", -1) >= -_SLACK_S and
                  (e.get("reason") or "").startswith("Rolling update batch"))
    if rolling:
        return rolling
    return len(lifecycle_seconds(report))


def measure(report: ReleaseReport) -> RunMeasures:
    phases = phase_seconds(report)
    spans = {v.version: v for v in report.versions}
    new, old = spans.get(report.release), spans.get(report.from_release or "")
    boots = boot_to_healthy(report)
    prepared = report.details.get("prepared", {})
    return RunMeasures(
        run_id=report.run_id, strategy=report.strategy, outcome=report.outcome,
        zero_downtime=report.zero_downtime, phases=phases, total_s=report.total_seconds,
        release_s=round(sum(phases.get(p, 0.0) for p in ("prepare", "rollout", "rollback")), 3),
        environment_created=environment_created(report),
        probes=report.probes.total, failed_probes=report.probes.failed,
        failed_by_class=report.probes.by_class,
        downtime_windows=len(report.downtime_windows),
        downtime_ms=round(sum(w.duration_ms for w in report.downtime_windows), 1),
        longest_gap_ms=report.longest_gap_ms,
        # Only a release that differs from where it started has a cut-over.
        first_new_s=new.first_s if new and old is not new else None,
        last_old_s=old.last_s if old and old is not new else None,
        mixed_window_ms=report.mixed_window_ms,
        boot_to_healthy=boots,
        boot_to_healthy_s=median([b.seconds for b in boots]),
        in_place_s=in_place_seconds(report),
        batches_observed=batches_observed(report),
        storage_kind=prepared.get("kind", "none"),
        storage_bytes=int(prepared.get("size_bytes") or 0),
    )


def median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


class Spread(BaseModel):
    """One measure over the repetitions of a strategy."""

    n: int
    median: float
    min: float
    max: float
    spread: float  # max - min


def spread(values: Iterable[float | None]) -> Spread | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return Spread(n=len(present), median=round(statistics.median(present), 3),
                  min=round(min(present), 3), max=round(max(present), 3),
                  spread=round(max(present) - min(present), 3))

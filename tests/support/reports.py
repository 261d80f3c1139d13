"""Synthetic release reports: what a real run reports, with numbers a test chooses.

``rolling_report`` is a one-batch rolling update (launch → healthy → signal → terminate →
drain), ``in_place_report`` a CodeDeploy OneAtATime deployment to two instances; both with a
probe timeline that switches version at the cut-over and, on request, a downtime window.
"""

from __future__ import annotations

from deployer.measure.analysis import analyse
from deployer.measure.poller import Probe
from deployer.report.release import PhaseTiming, ReleaseReport

T0 = 1_800_000_000.0  # the probe clock's zero, unix time


def _probes(duration: float, cutover: float, old: str, new: str, hz: float = 20.0,
            down: tuple[float, float] | None = None, outcome: str = "http_503") -> list[Probe]:
    probes = []
    for i in range(int(duration * hz)):
        t = i / hz
        if down and down[0] <= t < down[1]:
            probes.append(Probe(i, t, t, outcome, 3.0, 503 if outcome.startswith("http") else None))
            continue
        version = old if t < cutover else new
        probes.append(Probe(i, t, t + 0.001, "ok", 5.0 + (i % 7), 200, version))
    return probes


def _report(strategy: str, phases: dict[str, float], probes: list[Probe], *, release: str,
            from_release: str, health: list[tuple[float, str, str, str]],
            events: list[tuple[float, str, str, str]], prepared: dict, outcome: str,
            created: bool) -> ReleaseReport:
    timings, start = [], 0.0
    for name, seconds in phases.items():
        timings.append(PhaseTiming(name=name, seconds=seconds, start_s=round(start, 3)))
        start += seconds
    rollout_start = sum(s for n, s in phases.items() if n in ("environment", "prepare"))
    duration = max(p.sent_s + p.latency_ms / 1000 for p in probes)
    analysis = analyse(probes, url="http://127.0.0.1:9/", hz=20.0, duration_s=duration)
    all_events = list(events)
    if created:
        all_events.insert(0, (-rollout_start + 1.0, "stack", f"etherpad-{strategy}",
                              "CREATE_IN_PROGRESS"))
    return ReleaseReport(
        **analysis.model_dump(), run_id=f"run-{strategy}", strategy=strategy, release=release,
        from_release=from_release, target="local", outcome=outcome, phases=timings,
        total_seconds=round(sum(phases.values()), 3),
        served_versions=[release] if outcome == "succeeded" else [from_release],
        details={"prepared": prepared}, started_at=T0 - rollout_start,
        probe_offset_s=rollout_start,
        timeline=[[p.sent_s, p.outcome, p.version, p.latency_ms] for p in probes],
        target_health=[{"at": T0 + at, "at_s": at, "target_id": t, "from_state": a,
                        "to_state": b, "reason": ""} for at, t, a, b in health],
        events=[_event(*e) for e in all_events],
    )


def _event(at: float, source: str, resource: str, status: str, reason: str = "") -> dict:
    return {"at": T0 + at, "at_s": at, "source": source, "resource": resource,
            "status": status, "reason": reason}


def rolling_report(strategy: str = "packer", *, prepare: float = 20.0, launch_to_healthy: float = 6.0,
                   failed_checks_first: bool = False, drain: float = 10.0, overhead: float = 2.0,
                   release: str = "1.8.18", from_release: str = "1.8.17",
                   down: tuple[float, float] | None = None, outcome: str = "succeeded",
                   created: bool = True, image_bytes: int = 100_000_000) -> ReleaseReport:
    """One batch: the new instance launches at 0.1 s, turns healthy, signals 1 s later; the
    old one drains for ``drain`` seconds; the rollout ends ``overhead`` seconds later than
    launch + healthy + drain."""
    healthy = 0.1 + launch_to_healthy
    signal = healthy + 1.0
    rollout = round(launch_to_healthy + drain + overhead, 3)
    health = [(-30.0, "i-old", "unused", "initial"), (-25.0, "i-old", "initial", "healthy"),
              (0.2, "i-new", "unused", "initial")]
    if failed_checks_first:
        health.append((5.2, "i-new", "initial", "unhealthy"))
    health += [(healthy, "i-new", "unhealthy" if failed_checks_first else "initial", "healthy"),
               (signal, "i-old", "healthy", "draining"),
               (signal + drain, "i-old", "draining", "unused")]
    events = [(0.02, "stack", "AutoScalingGroup", "UPDATE_IN_PROGRESS",
               "Rolling update batch 1: replacing 1 instance(s) (launch then terminate)"),
              (0.1, "stack", "AutoScalingGroup", "LAUNCHING",
               "Launching a new EC2 instance: i-new"),
              (signal, "stack", "AutoScalingGroup", "SIGNAL_RECEIVED",
               "Received SUCCESS signal with UniqueId i-new"),
              (signal + 0.01, "stack", "AutoScalingGroup", "TERMINATING",
               "Terminating EC2 instance i-old: rolling update"),
              (rollout, "stack", f"etherpad-{strategy}", "UPDATE_COMPLETE")]
    phases = {"environment": 30.0, "prepare": prepare, "rollout": rollout, "verify": 1.0}
    probes = _probes(rollout + 1.0, healthy + 0.5, from_release, release, down=down)
    prepared = ({"kind": "image", "ref": "ami-1", "size_bytes": image_bytes}
                if prepare else {"kind": "none", "ref": None, "size_bytes": 0})
    return _report(strategy, phases, probes, release=release, from_release=from_release,
                   health=health, events=events, prepared=prepared, outcome=outcome,
                   created=created)


def in_place_report(*, install: float = 40.0, drain: float = 10.0, release: str = "1.8.18",
                    from_release: str = "1.8.17", outcome: str = "succeeded") -> ReleaseReport:
    """CodeDeploy OneAtATime to two instances: block (drain), install, start, allow."""
    events, health, t = [], [], 0.2
    for instance in ("i-a", "i-b"):
        events.append((t, "stack", f"d-1/{instance}", "InProgress"))
        steps = [("BlockTraffic", drain), ("ApplicationStop", 0.2), ("DownloadBundle", 0.5),
                 ("Install", 0.3), ("AfterInstall", install), ("ApplicationStart", 0.2),
                 ("ValidateService", 5.0), ("AllowTraffic", 0.01)]
        for name, seconds in steps:
            events.append((t, "stack", f"d-1/{instance}/{name}", "InProgress"))
            if name == "BlockTraffic":
                health.append((t, instance, "healthy", "draining"))
                health.append((t + drain, instance, "draining", "unused"))
            t = round(t + seconds, 3)
            if name == "AllowTraffic":
                health.append((t - 0.01, instance, "unused", "initial"))
                health.append((t, instance, "initial", "healthy"))
            events.append((t, "stack", f"d-1/{instance}/{name}", "Succeeded"))
        events.append((t, "stack", f"d-1/{instance}", "Succeeded"))
        t += 0.1
    rollout = round(t + 0.2, 3)
    phases = {"environment": 80.0, "prepare": 1.5, "rollout": rollout, "verify": 1.0}
    probes = _probes(rollout + 1.0, rollout / 2, from_release, release)
    return _report("codedeploy", phases, probes, release=release, from_release=from_release,
                   health=health, events=events,
                   prepared={"kind": "revision", "ref": "/tmp/x.tgz", "size_bytes": 5_000_000},
                   outcome=outcome, created=True)

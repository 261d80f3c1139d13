"""From probes to the facts a release manager asks about: downtime, gaps, cut-over."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel

from deployer.measure.poller import Probe


class ProbeCounts(BaseModel):
    total: int
    ok: int
    failed: int
    skipped: int = 0
    by_class: dict[str, int]


class DowntimeWindow(BaseModel):
    """A merged run of failed probes, from the first failure's send time to the send time of
    the next successful probe (or the last failure's answer when no success followed)."""

    start_s: float
    end_s: float
    duration_ms: float
    failed: int
    by_class: dict[str, int]


class VersionSpan(BaseModel):
    version: str
    first_s: float
    last_s: float
    count: int


class Jitter(BaseModel):
    p50_ms: float
    p99_ms: float
    max_ms: float


class ProbeAnalysis(BaseModel):
    """The poller's half of every report (JSON keys are a contract)."""

    url: str
    hz: float
    duration_s: float
    zero_downtime: bool
    probes: ProbeCounts
    downtime_windows: list[DowntimeWindow]
    longest_gap_ms: float
    versions: list[VersionSpan]
    mixed_window_ms: float
    jitter: Jitter


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[k]


def _r(x: float, nd: int = 3) -> float:
    return round(x, nd)


def downtime_windows(probes: Sequence[Probe]) -> list[DowntimeWindow]:
    windows: list[DowntimeWindow] = []
    run: list[Probe] = []
    for probe in sorted(probes, key=lambda p: p.sent_s):
        if not probe.ok:
            run.append(probe)
            continue
        if run:
            windows.append(_window(run, end_s=probe.sent_s))
            run = []
    if run:
        last = run[-1]
        windows.append(_window(run, end_s=last.sent_s + last.latency_ms / 1000.0))
    return windows


def _window(run: list[Probe], end_s: float) -> DowntimeWindow:
    start = run[0].sent_s
    return DowntimeWindow(
        start_s=_r(start), end_s=_r(end_s), duration_ms=_r((end_s - start) * 1000.0, 1),
        failed=len(run), by_class=dict(Counter(p.outcome for p in run)),
    )


def longest_gap_ms(probes: Sequence[Probe], duration_s: float) -> float:
    """Longest time between two successful answers a user could have had.

    The edges count too: from the start to the first success, and from the last success
    to the end, so a run that never succeeds has a gap as long as the run.
    """
    answers = sorted(p.sent_s + p.latency_ms / 1000.0 for p in probes if p.ok)
    if not answers:
        return _r(duration_s * 1000.0, 1)
    first_sent = min((p.sent_s for p in probes), default=0.0)
    points = [first_sent, *answers]
    gaps = [b - a for a, b in itertools.pairwise(points)]
    # A failed probe after the last success extends the gap to the end of the run.
    if any(not p.ok and p.sent_s > answers[-1] for p in probes):
        gaps.append(duration_s - answers[-1])
    return _r(max(gaps, default=0.0) * 1000.0, 1)


def version_spans(probes: Sequence[Probe]) -> list[VersionSpan]:
    spans: dict[str, VersionSpan] = {}
    for probe in sorted(probes, key=lambda p: p.sent_s):
        if not probe.ok or probe.version is None:
            continue
        span = spans.get(probe.version)
        if span is None:
            spans[probe.version] = VersionSpan(version=probe.version, first_s=_r(probe.sent_s),
                                               last_s=_r(probe.sent_s), count=1)
        else:
            span.last_s = _r(probe.sent_s)
            span.count += 1
    return sorted(spans.values(), key=lambda s: s.first_s)


def mixed_window_ms(spans: Sequence[VersionSpan]) -> float:
    """Total time during which two or more versions were answering (intervals overlap)."""
    events = sorted([(s.first_s, 1) for s in spans] + [(s.last_s, -1) for s in spans],
                    key=lambda e: (e[0], -e[1]))
    active, since, total = 0, 0.0, 0.0
    for t, delta in events:
        if active >= 2:
            total += t - since
        active += delta
        since = t
    return _r(total * 1000.0, 1)


def analyse(probes: Sequence[Probe], *, url: str, hz: float, duration_s: float,
            skipped: int = 0) -> ProbeAnalysis:
    ok = sum(1 for p in probes if p.ok)
    failed = [p for p in probes if not p.ok]
    spans = version_spans(probes)
    jitters = [max(0.0, p.jitter_ms) for p in probes]
    return ProbeAnalysis(
        url=url,
        hz=hz,
        duration_s=_r(duration_s),
        zero_downtime=not failed,
        probes=ProbeCounts(total=len(probes), ok=ok, failed=len(failed), skipped=skipped,
                           by_class=dict(sorted(Counter(p.outcome for p in failed).items()))),
        downtime_windows=downtime_windows(probes),
        longest_gap_ms=longest_gap_ms(probes, duration_s),
        versions=spans,
        mixed_window_ms=mixed_window_ms(spans),
        jitter=Jitter(p50_ms=_r(percentile(jitters, 50)), p99_ms=_r(percentile(jitters, 99)),
                      max_ms=_r(max(jitters, default=0.0))),
    )

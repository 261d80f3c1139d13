"""What the editors lived through and what the data check found, as models that cross into reports.

``EditorRecord`` is one simulated editor's account, built from the driver's events;
``EditorsSummary`` and ``DataReport`` are the aggregates a release report carries (their
keys are the contract of issue 14: do not rename them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

CONNECTED = "connected"
RECONNECTING = "reconnecting"
GONE = "gone"


class Span(BaseModel):
    """One stretch of an editor's timeline, in seconds since the editors started."""

    model_config = ConfigDict(frozen=True)

    state: str  # connected | reconnecting | gone
    start_s: float
    end_s: float


class EditorRecord(BaseModel):
    """One editor: its sessions, its interruptions and its marks."""

    editor: str
    pad: str
    sessions: int = 0
    disconnects: int = 0
    reconnect_ms: list[float] = Field(default_factory=list)
    gave_up: bool = False
    gave_up_reason: str | None = None
    typed: list[str] = Field(default_factory=list)
    acknowledged: list[str] = Field(default_factory=list)
    acknowledged_at: dict[str, float] = Field(default_factory=dict)  # mark -> its ACCEPT_COMMIT
    unsent: list[str] = Field(default_factory=list)
    timeline: list[Span] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    def not_editing(self) -> list[tuple[float, float]]:
        """The stretches in which this editor could not edit (reconnecting, then perhaps
        gone), adjacent spans joined: one stretch is one interruption the user lived."""
        stretches: list[tuple[float, float]] = []
        for span in self.timeline:
            if span.state == CONNECTED:
                continue
            if stretches and stretches[-1][1] == span.start_s:
                stretches[-1] = (stretches[-1][0], span.end_s)
            else:
                stretches.append((span.start_s, span.end_s))
        return stretches


class ReconnectFigures(BaseModel):
    p50: float | None = None
    p99: float | None = None
    max: float | None = None


class Window(BaseModel):
    """A time in which at least one editor could not edit, and how many at most."""

    start_s: float
    end_s: float
    editors: int


class EditorsSummary(BaseModel):
    """The editors' aggregate for a release report."""

    editors: int
    pads: int
    sessions: int
    disconnects: int
    reconnect_ms: ReconnectFigures
    gave_up: int
    edits_typed: int
    edits_acknowledged: int
    edits_lost: int
    interruption_ms: float
    windows: list[Window]


class DataReport(BaseModel):
    """What the data check found after the rollout. ``details`` names every problem."""

    pads_checked: int
    pads_intact: int
    pads_diverged: int
    edits_lost: int
    lost_marks: dict[str, list[str]] = Field(default_factory=dict)
    duplicated_marks: dict[str, list[str]] = Field(default_factory=dict)
    diverged_pads: list[str] = Field(default_factory=list)
    damaged_pads: list[str] = Field(default_factory=list)
    details: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.pads_intact == self.pads_checked and not self.pads_diverged \
            and not self.edits_lost


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def windows(records: Iterable[EditorRecord]) -> list[Window]:
    """Merge every editor's not-editing spans into windows, each with the most editors that
    could not edit at once inside it."""
    edges: list[tuple[float, int]] = []
    for record in records:
        for start, end in record.not_editing():
            if end > start:
                edges += [(start, 1), (end, -1)]
    edges.sort(key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same time
    result: list[Window] = []
    down = peak = 0
    start = 0.0
    for at, step in edges:
        if down == 0 and step > 0:
            start, peak = at, 0
        down += step
        peak = max(peak, down)
        if down == 0:
            result.append(Window(start_s=round(start, 3), end_s=round(at, 3), editors=peak))
    return result


def summarize(records: Sequence[EditorRecord],
              lost_marks: Mapping[str, Sequence[str]] | None = None) -> EditorsSummary:
    """The aggregate of ``records``; ``lost_marks`` (pad -> marks) comes from the data check:
    acknowledged marks that are not in the pad afterwards."""
    acknowledged = {mark for record in records for mark in record.acknowledged}
    lost = {mark for marks in (lost_marks or {}).values() for mark in marks} & acknowledged
    reconnects = [ms for record in records for ms in record.reconnect_ms]
    longest = max((end - start for record in records
                   for start, end in record.not_editing()), default=0.0)
    return EditorsSummary(
        editors=len(records),
        pads=len({record.pad for record in records}),
        sessions=sum(record.sessions for record in records),
        disconnects=sum(record.disconnects for record in records),
        reconnect_ms=ReconnectFigures(p50=percentile(reconnects, 50),
                                      p99=percentile(reconnects, 99),
                                      max=max(reconnects, default=None)),
        gave_up=sum(record.gave_up for record in records),
        edits_typed=sum(len(record.typed) for record in records),
        edits_acknowledged=len(acknowledged),
        edits_lost=len(lost),
        interruption_ms=round(longest * 1000, 1),
        windows=windows(records),
    )

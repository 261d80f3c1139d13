"""Editors through a release: simulated editors typing and the data check around a rollout.

The engine starts an :class:`EditorsWatch` once the environment is ready and the release is
prepared, just before the poller; it keeps the editors typing through the whole rollout,
lets them settle afterwards (an editor reconnecting when the rollout ends gets the time
Etherpad's pad.js would give it), stops them and checks every pad. What it found goes into
the release report as ``editors``, ``data`` and ``editor_timeline``.

Etherpad counts messages per client address (``commitRateLimiting``: 10 a second) and every
simulated editor comes from this machine, as every user behind a proxy Etherpad does not
trust comes from the proxy: the typing interval grows with the number of editors so that
together they stay under the limit (6 editors type once a second each).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from deployer.base import logs
from deployer.base.errors import DeployerError, SourceError, UsageError
from deployer.cloud.port import CloudPort
from deployer.measure.editors import (
    DataCheck,
    DataReport,
    EditorRecord,
    EditorsSimulator,
    EditorsSummary,
    ensure_driver,
    summarize,
)
from deployer.measure.editors.models import CONNECTED, GONE, RECONNECTING

DEFAULT_EDITORS = 6
MAX_EDITORS = 500
# Together, the editors send at most this many edits a second (Etherpad's limit is 10
# messages a second per address; each edit is one message, plus a little chatter).
EDITS_PER_SECOND = 6.0


@dataclass(frozen=True)
class EditorSettings:
    """How many editors a release holds (0: none) and how long they get to settle."""

    editors: int = 0
    pads: int | None = None  # default: one pad per two editors
    type_interval_s: float | None = None  # default: the rate limit shared out
    ready_timeout_s: float = 45.0
    settle_timeout_s: float = 20.0  # pad.js: five reconnects, 1-5 s apart
    data_check: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.editors <= MAX_EDITORS:
            raise UsageError(f"--editors must be between 0 and {MAX_EDITORS}, "
                             f"got {self.editors}", hint="pass --editors 6, or 0 for none")

    @property
    def pad_count(self) -> int:
        return self.pads or max(1, math.ceil(self.editors / 2))

    @property
    def interval_s(self) -> float:
        return self.type_interval_s or max(1.0, self.editors / EDITS_PER_SECOND)

    def check_client(self) -> None:
        """The editors' client is installed (or installs now): before anything is created."""
        if self.editors:
            try:
                ensure_driver()
            except SourceError as exc:
                raise SourceError(str(exc.message), hint=(exc.hint or "") +
                                  "; or pass --editors 0 to release without editors") from exc


@dataclass
class EditorsFindings:
    """What an :class:`EditorsWatch` found, for the report."""

    editors: EditorsSummary | None
    data: DataReport | None
    timeline: list[dict]


MakeSimulator = Callable[..., EditorsSimulator]
MakeCheck = Callable[..., DataCheck]


class EditorsWatch:
    """Seed pads, hold editors on them through a rollout, then settle, stop and check."""

    def __init__(self, settings: EditorSettings, cloud: CloudPort, strategy: str, url: str,
                 *, make_simulator: MakeSimulator = EditorsSimulator,
                 make_check: MakeCheck = DataCheck,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.cloud = cloud
        self.strategy = strategy
        self.url = url
        self.sleep = sleep
        self.log = logs.get_logger(instrument="editors")
        self.simulator: EditorsSimulator | None = None
        self.check: DataCheck | None = None
        self.problems: list[str] = []
        if settings.editors:
            self.simulator = make_simulator(url, editors=settings.editors,
                                            pads=settings.pad_count,
                                            type_interval_s=settings.interval_s)
        if settings.data_check:
            api_key = cloud.etherpad_api_key(strategy)
            tag = self.simulator.tag if self.simulator else "release"
            self.check = make_check(url, api_key, tag=tag)

    def pads(self) -> list[str]:
        if self.simulator is not None:
            return list(self.simulator.pads)
        return [f"deployer-data-{self.check.tag if self.check else 'x'}-{i + 1}"
                for i in range(self.settings.pad_count)]

    def start(self) -> None:
        """Seed, then open every editor's pad; an editor that cannot load its pad in steady
        state is a finding (it is counted as giving up), not an error of the run."""
        if self.check is not None:
            try:
                self.check.seed(self.pads())
            except DeployerError as exc:
                self.problems.append(f"seeding the pads failed: {exc}")
                self.log.warning("data.seed_failed", reason=str(exc))
        if self.simulator is not None:
            self.simulator.start()
            if not self.simulator.wait_ready(self.settings.ready_timeout_s):
                self.log.warning("editors.not_ready", timeout_s=self.settings.ready_timeout_s)

    def status(self) -> dict[str, int]:
        """Editors connected, reconnecting and gone now (the live view)."""
        counts = {CONNECTED: 0, RECONNECTING: 0, GONE: 0}
        if self.simulator is None:
            return counts
        for record in self.simulator.records():
            state = record.timeline[-1].state if record.timeline else "loading"
            counts[state] = counts.get(state, 0) + 1
        return counts

    def _settle(self) -> None:
        """Wait (bounded) until no editor is reconnecting or still loading its pad."""
        assert self.simulator is not None
        deadline = time.monotonic() + self.settings.settle_timeout_s
        while time.monotonic() < deadline:
            counts = self.status()
            if counts[CONNECTED] + counts[GONE] >= self.settings.editors:
                return
            self.sleep(0.25)
        self.log.warning("editors.not_settled", timeout_s=self.settings.settle_timeout_s)

    def finish(self, probe_start: float) -> EditorsFindings:
        """Stop the editors and check the pads; times in the timeline are on the probe
        clock (seconds since ``probe_start``, unix time)."""
        records: list[EditorRecord] = []
        if self.simulator is not None and self.simulator.started_at is not None:
            self._settle()
            records = self.simulator.stop()
        data = None
        if self.check is not None:
            acknowledged = self.simulator.acknowledged() if self.simulator else {}
            try:
                instances = self.cloud.instance_urls(self.strategy)
                data = self.check.verify(acknowledged, instances)
            except DeployerError as exc:
                # Pads nobody can read after a release are pads users cannot reach: the check
                # says so (none intact) rather than leaving the data unjudged.
                self.log.error("data.check_failed", reason=str(exc))
                pads = sorted(set(self.check.seeded) | set(acknowledged))
                data = DataReport(pads_checked=len(pads), pads_intact=0, pads_diverged=0,
                                  edits_lost=0, damaged_pads=pads,
                                  details=[f"the data check could not read the pads: {exc}"])
            data = data.model_copy(update={"details": self.problems + data.details})
        summary = summarize(records, data.lost_marks if data else None) if records else None
        offset = (self.simulator.started_at or probe_start) - probe_start \
            if self.simulator else 0.0
        lost = {mark for marks in (data.lost_marks.values() if data else ()) for mark in marks}
        timeline = [{
            "editor": record.editor, "pad": record.pad,
            "spans": [[span.state, round(span.start_s + offset, 3), round(span.end_s + offset, 3)]
                      for span in record.timeline],
            # Each lost edit with the time the server acknowledged it.
            "lost": [[mark, round(record.acknowledged_at.get(mark, 0.0) + offset, 3)]
                     for mark in record.acknowledged if mark in lost],
            "gave_up_reason": record.gave_up_reason,
        } for record in records]
        return EditorsFindings(editors=summary, data=data, timeline=timeline)

    def abort(self) -> None:
        """Stop the editors without checking (the run is ending on an error)."""
        if self.simulator is not None and self.simulator.started_at is not None:
            try:
                self.simulator.stop()
            except DeployerError:
                pass

"""Run history: every `release` and `compare` run, kept in SQLite in the data dir.

``$DEPLOYER_HOME/history.sqlite`` holds one row per run with the columns a listing needs
(when, strategy, release, outcome, total seconds, failed probes) and the run's full JSON
report, so ``deployer report RUN_ID`` can rebuild any report later, HTML included. A release
run made by a compare names the compare as its parent and says what it was for (``measured``,
or ``reset``: the release that brought the environment back to the starting release).

Only the standard library's sqlite3: the file opens with the ``sqlite3`` shell too.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, computed_field

from deployer.base.errors import DeployerError
from deployer.base.home import deployer_home

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'measured',
    parent_id     TEXT,
    started_at    REAL NOT NULL,
    strategy      TEXT NOT NULL,
    release       TEXT NOT NULL,
    from_release  TEXT,
    target        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    total_seconds REAL NOT NULL,
    failed_probes INTEGER NOT NULL,
    machine       TEXT,
    report        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_strategy ON runs (strategy, started_at);
"""


class RunKind(str, Enum):
    RELEASE = "release"
    COMPARE = "compare"


class RunRole(str, Enum):
    """Why a release run happened: the run asked for, or a compare's reset to the start."""

    MEASURED = "measured"
    RESET = "reset"


class UnknownRun(DeployerError):
    """No run with that id in the history."""


class HistoryEntry(BaseModel):
    """One row of ``deployer history`` (the JSON keys of ``history --json``)."""

    run_id: str
    kind: RunKind
    role: RunRole
    parent_id: str | None
    started_at: float
    strategy: str  # for a compare: the strategies, comma-separated
    release: str
    from_release: str | None
    target: str
    outcome: str
    total_seconds: float
    failed_probes: int


class StoredRun(BaseModel):
    kind: RunKind
    report: dict
    machine: dict | None = None


class Trend(BaseModel):
    """Total seconds of a strategy's last ``window`` measured releases against the window before."""

    strategy: str
    window: int
    recent_median_s: float | None
    previous_median_s: float | None
    runs: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def change(self) -> float | None:
        """Relative change of the median, e.g. +0.25 = a quarter slower than before."""
        if not self.recent_median_s or not self.previous_median_s:
            return None
        return round(self.recent_median_s / self.previous_median_s - 1.0, 3)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def direction(self) -> str:
        """``up`` (slower), ``down`` (faster), ``flat`` (within 5 %) or ``new`` (no window to
        compare)."""
        change = self.change
        if change is None:
            return "new"
        if change > 0.05:
            return "up"
        if change < -0.05:
            return "down"
        return "flat"


def history_path(home: Path | None = None) -> Path:
    return (home or deployer_home()) / "history.sqlite"


class History:
    """The run history in one SQLite file; every call opens and closes its own connection."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or history_path()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Several deployer processes may finish at once: wait for the writer, never fail.
        db = sqlite3.connect(self.path, timeout=30)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            with db:
                yield db
        except sqlite3.DatabaseError as exc:
            raise DeployerError(f"cannot use the run history {self.path}: {exc}",
                                hint="move the file aside; a new one is created") from exc
        finally:
            db.close()

    def record(self, report: dict, *, kind: RunKind = RunKind.RELEASE,
               role: RunRole = RunRole.MEASURED, parent_id: str | None = None,
               machine: dict | None = None) -> None:
        """Store a run's JSON report (a release report, or a compare report) and what
        machine it ran on (a compare report carries its own)."""
        if kind is RunKind.COMPARE:
            strategies = report.get("strategies", {})
            strategy = ",".join(strategies)
            summary = report.get("summary", {})
            total = summary.get("seconds", 0.0)
            failed = sum(s.get("probes", {}).get("failed", 0) for s in strategies.values())
            outcome = summary.get("outcome", "failed")
        else:
            strategy = report["strategy"]
            total = report["total_seconds"]
            failed = report["probes"]["failed"]
            outcome = report["outcome"]
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs (run_id, kind, role, parent_id, started_at, "
                "strategy, release, from_release, target, outcome, total_seconds, "
                "failed_probes, machine, report) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (report["run_id"], kind.value, role.value, parent_id,
                 report.get("started_at") or time.time(), strategy, report["release"],
                 report.get("from_release"), report.get("target", "local"), outcome, total,
                 failed, json.dumps(machine or report.get("machine")), json.dumps(report)))

    def entries(self, *, strategy: str | None = None, limit: int = 20) -> list[HistoryEntry]:
        """The newest runs first; with ``strategy``, its release runs and the compares it was in."""
        query = ("SELECT run_id, kind, role, parent_id, started_at, strategy, release, "
                 "from_release, target, outcome, total_seconds, failed_probes FROM runs")
        args: list = []
        if strategy:
            query += " WHERE strategy = ? OR (kind = 'compare' AND ',' || strategy || ',' LIKE ?)"
            args += [strategy, f"%,{strategy},%"]
        query += " ORDER BY started_at DESC, run_id DESC LIMIT ?"
        args.append(limit)
        if not self.path.exists():
            return []  # reading never creates the file
        with self._db() as db:
            rows = db.execute(query, args).fetchall()
        keys = list(HistoryEntry.model_fields)
        return [HistoryEntry(**dict(zip(keys, row, strict=False))) for row in rows]

    def report(self, run_id: str) -> StoredRun:
        """A run's report as it was stored."""
        if not self.path.exists():
            raise UnknownRun(f"no run {run_id!r}: there is no run history yet ({self.path})",
                             hint="'deployer release' and 'deployer compare' record runs")
        with self._db() as db:
            row = db.execute("SELECT kind, report, machine FROM runs WHERE run_id = ?",
                             (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"no run {run_id!r} in the history {self.path}",
                             hint="'deployer history' lists the run ids")
        return StoredRun(kind=RunKind(row[0]), report=json.loads(row[1]),
                         machine=json.loads(row[2]) if row[2] else None)

    def trends(self, *, window: int = 5, strategy: str | None = None) -> list[Trend]:
        """Per strategy: median total seconds of the last ``window`` succeeded, measured
        release runs against the ``window`` before them (resets and failures left out: they
        time something else)."""
        query = ("SELECT strategy, total_seconds FROM runs WHERE kind = 'release' AND "
                 "role = 'measured' AND outcome = 'succeeded'")
        args: list = []
        if strategy:
            query += " AND strategy = ?"
            args.append(strategy)
        query += " ORDER BY started_at DESC, run_id DESC"
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute(query, args).fetchall()
        by_strategy: dict[str, list[float]] = {}
        for name, seconds in rows:
            by_strategy.setdefault(name, []).append(seconds)
        trends = []
        for name in sorted(by_strategy):
            totals = by_strategy[name]
            recent, previous = totals[:window], totals[window:2 * window]
            trends.append(Trend(
                strategy=name, window=window, runs=len(totals),
                recent_median_s=round(statistics.median(recent), 3) if recent else None,
                previous_median_s=round(statistics.median(previous), 3) if previous else None))
        return trends

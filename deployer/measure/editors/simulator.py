"""Simulated Etherpad editors held through the load balancer for a whole rollout.

:class:`EditorsSimulator` runs the Node driver (``driver.py``) in a child process and reads
its events in a thread of its own; the engine only calls :meth:`~EditorsSimulator.start`,
:meth:`~EditorsSimulator.wait_ready` and :meth:`~EditorsSimulator.stop`. Turning events into
each editor's account is :func:`build_records`, plain and testable with made-up events.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from deployer.base import logs
from deployer.base.errors import StateError
from deployer.measure.editors import driver
from deployer.measure.editors.models import (
    CONNECTED,
    GONE,
    RECONNECTING,
    EditorRecord,
    Span,
)
from deployer.measure.poller import Target

LOADING = "loading"
CLIENT_CLOSE = "io client disconnect"
STOP_TIMEOUT_S = 10.0


class _Account:
    """One editor's account while its events come in."""

    def __init__(self, editor: str, pad: str) -> None:
        self.record = EditorRecord(editor=editor, pad=pad)
        self.state = LOADING
        self.since = 0.0
        self.lost_at: float | None = None
        self.spans: list[Span] = []
        self.stopped = False
        self.last_error: str | None = None

    def move(self, state: str, at: float) -> None:
        if state == self.state:
            return
        self.spans.append(Span(state=self.state, start_s=self.since, end_s=at))
        self.state, self.since = state, at

    def event(self, ev: str, at: float, fields: dict) -> None:
        record = self.record
        if self.stopped:
            return  # closing the sessions at the end is not an interruption
        if ev == "connecting":
            self.since = at
        elif ev == "session":
            record.sessions += 1
        elif ev == "ready":
            if self.lost_at is not None:
                record.reconnect_ms.append(round((at - self.lost_at) * 1000, 1))
                self.lost_at = None
            if self.state != GONE:
                self.move(CONNECTED, at)
        elif ev in ("disconnect", "not_ready"):
            # The editor's own close (giving up) is not one more disconnect.
            record.disconnects += ev == "disconnect" and fields.get("reason") != CLIENT_CLOSE
            if self.state == CONNECTED:
                self.lost_at = at
                self.move(RECONNECTING, at)
        elif ev == "gave_up":
            record.gave_up = True
            record.gave_up_reason = fields.get("reason")
            self.move(GONE, at)
        elif ev == "typed":
            record.typed.append(fields["mark"])
        elif ev == "ack":
            record.acknowledged.extend(fields["marks"])
            record.acknowledged_at.update((mark, at) for mark in fields["marks"])
        elif ev == "stopped":
            record.unsent = list(fields.get("unsent", []))
            self.stopped = True
        elif ev == "connect_error":
            self.last_error = fields.get("error")
        elif ev in ("error", "bad_revision"):
            record.errors.append(json.dumps({"ev": ev, **fields}, sort_keys=True))

    def close(self, at: float) -> EditorRecord:
        # An editor that never loaded its pad could not edit at all: the user is left at
        # "Loading..." and reloads. That is giving up, whatever socket.io's retries say.
        state = self.state
        if state == LOADING:
            state = GONE
            self.record.gave_up = True
            self.record.gave_up_reason = "never loaded the pad" + (
                f" ({self.last_error})" if self.last_error else "")
        spans = [span for span in self.spans if span.state != LOADING]
        spans.append(Span(state=state, start_s=self.since, end_s=max(at, self.since)))
        return self.record.model_copy(update={"timeline": spans})


def source_addresses(url: str, editors: int) -> list[str]:
    """An address of its own for each editor when the load balancer is on loopback: users
    come from addresses of their own and Etherpad limits messages per address
    (``commitRateLimiting``), so editors sharing one address would be rate-limited together
    where users are not. Every 127/8 address is this machine. Elsewhere (a real load balancer)
    they all come from this machine's one address: none."""
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
        loopback = address.version == 4 and address.is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return []
    return [f"127.77.{n // 250}.{n % 250 + 2}" for n in range(editors)]


def build_records(assignments: Sequence[tuple[str, str]], events: Iterable[dict],
                  end_s: float) -> list[EditorRecord]:
    """Each editor's account from the driver's events (``t`` in ms); ``end_s`` closes the
    timelines. ``assignments`` are (editor, pad) pairs in order."""
    accounts = {editor: _Account(editor, pad) for editor, pad in assignments}
    for event in events:
        account = accounts.get(str(event.get("ed")))
        if account is not None:
            account.event(event["ev"], event["t"] / 1000.0, event)
    return [account.close(end_s) for account in accounts.values()]


class EditorsSimulator:
    """``editors`` simulated editors on ``pads`` pads of the Etherpad behind ``url``.

    Each editor types one unique mark (``[<tag>e<n>n<seq>]``) every ``type_interval_s``.
    The default (1 s) keeps 6 editors under Etherpad's per-IP commit rate limit
    (``commitRateLimiting``: 10 messages a second): every simulated editor, like every user
    behind a proxy Etherpad does not trust, comes from one address, and a limited editor is
    disconnected for good (``rateLimited``).
    Times in the records are seconds since :meth:`start` (``started_at`` is its wall time).
    """

    def __init__(self, url: str, *, editors: int = 6, pads: int = 3,
                 type_interval_s: float = 1.0, tag: str | None = None,
                 pad_prefix: str = "deployer-editors", modules: Path | None = None) -> None:
        Target.parse(url)  # a bad URL is a usage error now, not a dead child later
        if editors < 1 or pads < 1:
            raise StateError("editors and pads must be at least 1",
                             hint="to switch the editors off, do not create a simulator")
        self.url = url if url.endswith("/") else url + "/"
        self.tag = tag or secrets.token_hex(3)
        self.pads = [f"{pad_prefix}-{self.tag}-{i + 1}" for i in range(min(pads, editors))]
        self.assignments = [(f"e{i + 1}", self.pads[i % len(self.pads)]) for i in range(editors)]
        self.type_interval_s = type_interval_s
        self.modules = modules
        self.started_at: float | None = None
        self.log = logs.get_logger(instrument="editors")
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._t0 = 0.0
        self._end_s: float | None = None
        self._stderr = ""

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> EditorsSimulator:
        if self._process is not None:
            raise StateError("the editors were already started", hint="create a new simulator")
        modules = self.modules or driver.ensure_driver()
        addresses = source_addresses(self.url, len(self.assignments))
        config = {"url": self.url, "interval_ms": round(self.type_interval_s * 1000),
                  "tag": self.tag,
                  "editors": [{"id": editor, "pad": pad,
                               **({"local_address": addresses[n]} if addresses else {})}
                              for n, (editor, pad) in enumerate(self.assignments)]}
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._process = driver.launch(config, modules)
        self._reader = threading.Thread(target=self._read, name="editors", daemon=True)
        self._reader.start()
        self.log.info("editors started", editors=len(self.assignments), pads=len(self.pads),
                      url=self.url)
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """True once every editor has loaded its pad (or gave up); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                settled = {e["ed"] for e in self._events if e["ev"] in ("ready", "gave_up")}
                if len(settled) == len(self.assignments):
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or self._process is None or self._process.poll() is not None:
                    return False
                self._changed.wait(min(left, 0.5))

    def stop(self) -> list[EditorRecord]:
        """Stop typing, close every session and return each editor's account."""
        process = self._process
        if process is None:
            raise StateError("the editors were not started", hint="call start() first")
        if self._end_s is None:
            self._end_s = time.monotonic() - self._t0
            try:
                assert process.stdin is not None
                process.stdin.write("stop\n")
                process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if self._reader is not None:
                self._reader.join(timeout=STOP_TIMEOUT_S)
            if process.stderr is not None:
                self._stderr = process.stderr.read()[-4000:]
            if process.returncode not in (0, None):
                self.log.warning("editors driver exited", code=process.returncode,
                                 stderr=self._stderr[-500:])
        return build_records(self.assignments, self.events(), self._end_s)

    def __enter__(self) -> EditorsSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self.stop()

    # -- reading ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The driver's process id (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None else None

    def events(self) -> list[dict]:
        with self._lock:
            return list(self._events)

    def records(self) -> list[EditorRecord]:
        """The accounts so far (a live view), timelines closed at now."""
        return build_records(self.assignments, self.events(), time.monotonic() - self._t0)

    def acknowledged(self) -> dict[str, list[str]]:
        """pad -> marks the server acknowledged: what the data check must find exactly once."""
        pads = dict(self.assignments)
        marks: dict[str, list[str]] = {pad: [] for pad in self.pads}
        for event in self.events():
            if event["ev"] == "ack":
                marks[pads[event["ed"]]].extend(event["marks"])
        return marks

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._changed:
                self._events.append(event)
                self._changed.notify_all()

"""The health poller: what a stream of new users sees through the load balancer.

Probes go out at a fixed rate on absolute ticks (``t0 + i / hz``), each one its own task on a
fresh TCP connection, so a probe that hangs never delays the next: an outage is measured,
not hidden by the poller. A tick that is already more than one interval late when the
scheduler gets to it is recorded as skipped rather than fired in a burst.

The poller runs an asyncio loop in a thread of its own; the engine is synchronous and only
calls :meth:`HealthPoller.start` and :meth:`HealthPoller.stop`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from deployer.base.errors import UsageError
from deployer.measure.versions import EtherpadVersion, VersionExtractor

OK = "ok"
MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe. Times are seconds since the poller started."""

    seq: int
    scheduled_s: float
    sent_s: float
    outcome: str  # "ok", "http_503", "refused", "reset", "timeout", "dns", "closed", "error"
    latency_ms: float
    status: int | None = None
    version: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def jitter_ms(self) -> float:
        return (self.sent_s - self.scheduled_s) * 1000.0


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"bad URL {url!r}", hint="give an http:// or https:// URL with a host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise UsageError(f"bad URL {url!r}: {exc}", hint="the port must be 1-65535") from exc
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(parts.scheme, parts.hostname, port, path, parts.netloc.rsplit("@", 1)[-1])


def classify_status(status: int) -> str:
    """Any 2xx or 3xx is a page a user gets; everything else is a failed probe."""
    return OK if 200 <= status < 400 else f"http_{status}"


def classify_exception(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "closed" if not exc.partial else "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED,):
        return "refused"
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH):
        return "timeout"
    return "error"


async def _fetch(target: Target, ssl_ctx: ssl.SSLContext | None) -> tuple[int, dict[str, str]]:
    reader, writer = await asyncio.open_connection(target.host, target.port, ssl=ssl_ctx)
    try:
        writer.write(
            f"GET {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            "User-Agent: deployer-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
            raise asyncio.IncompleteReadError(head, None)
        status = int(status_line[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        # Read the body to the end: a response cut off by a reset is a failure for the user.
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            await reader.readexactly(min(int(length), MAX_BODY))
        else:
            await reader.read(MAX_BODY)
        return status, headers
    finally:
        writer.close()


class HealthPoller:
    """Polls one URL at ``hz`` probes a second until stopped."""

    def __init__(
        self,
        url: str,
        *,
        hz: float = 20.0,
        timeout: float = 2.0,
        extractor: VersionExtractor | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_probe: Callable[[Probe], None] | None = None,
    ) -> None:
        if not hz > 0 or hz > 1000:
            raise UsageError(f"probe rate must be between 0 and 1000 per second, got {hz}",
                             hint="pass --hz with a positive number such as 20")
        if not timeout > 0:
            raise UsageError(f"probe timeout must be positive, got {timeout}",
                             hint="pass --timeout in seconds, such as 2")
        self.target = Target.parse(url)
        self.url = url
        self.hz = hz
        self.timeout = timeout
        self.extractor = extractor or EtherpadVersion()
        self.clock = clock
        self.on_probe = on_probe
        self.probes: list[Probe] = []
        self.skipped = 0
        self.started_at: float | None = None  # wall clock (time.time) at t0, for reports
        self.t0 = 0.0  # monotonic clock at the start; probe times are relative to it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()

    # -- public API -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_thread, name="health-poller", daemon=True)
        self._thread.start()
        self._ready.wait()

    def stop(self) -> list[Probe]:
        """Stop scheduling, let in-flight probes finish (bounded by the timeout), return all."""
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join()
        return self.snapshot()

    def run_for(self, seconds: float) -> list[Probe]:
        self.start()
        try:
            time.sleep(seconds)
        finally:
            probes = self.stop()
        return probes

    def snapshot(self) -> list[Probe]:
        with self._lock:
            return sorted(self.probes, key=lambda p: p.seq)

    def elapsed(self) -> float:
        return self.clock() - self.t0

    # -- the loop ---------------------------------------------------------------------------
    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        ssl_ctx = ssl.create_default_context() if self.target.scheme == "https" else None
        interval = 1.0 / self.hz
        in_flight: set[asyncio.Task] = set()
        self.t0 = self.clock()
        self.started_at = time.time()
        self._ready.set()
        seq = 0
        while not self._stop.is_set():
            due = seq * interval
            now = self.clock() - self.t0
            if now < due:
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=due - now)
                    break
                except TimeoutError:
                    pass
                now = self.clock() - self.t0
            if now - due > interval:
                self.skipped += 1
            else:
                task = asyncio.create_task(self._probe(seq, due, ssl_ctx))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            seq += 1
        if in_flight:
            await asyncio.wait(in_flight)

    async def _probe(self, seq: int, scheduled: float, ssl_ctx: ssl.SSLContext | None) -> None:
        sent = self.clock() - self.t0
        status: int | None = None
        version: str | None = None
        try:
            code, headers = await asyncio.wait_for(_fetch(self.target, ssl_ctx), self.timeout)
            status = code
            outcome = classify_status(code)
            version = self.extractor.extract(code, headers)
        except Exception as exc:  # every failure is data, classified
            outcome = classify_exception(exc)
        latency = (self.clock() - self.t0 - sent) * 1000.0
        probe = Probe(seq, scheduled, sent, outcome, latency, status, version)
        with self._lock:
            self.probes.append(probe)
        if self.on_probe:
            self.on_probe(probe)

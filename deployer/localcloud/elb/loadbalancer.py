"""The local cloud's Application Load Balancer: one HTTP listener forwarding to one target group.

A real HTTP/1.1 reverse proxy on loopback. Which target gets a request, and when a target
is healthy, is the target group's business (``targetgroup.py``); this module runs the health
checks and the traffic, and answers the way an ALB does, no kinder:

* nowhere to route (no targets, or only initial ones): 503;
* the target refused or reset the connection, or answered garbage: 502, never retried on
  another target;
* the target did not accept the connection within the connect timeout (10 s), or did not
  answer within the idle timeout (60 s): 504;
* a draining target finishes its in-flight requests; when the deregistration delay expires
  whatever is still in flight is cut: 502, or a reset once the response has started.

Error pages carry ``Server: awselb/2.0`` like the ALB's, so a reader of the response can
tell the load balancer's answer from the application's; the application's own response
headers pass through untouched (the poller reads the release from them). Bodies are
streamed in their own framing (Content-Length, chunked, or until close); ``Upgrade``
requests (socket.io's websocket) are tunnelled both ways after the 101. The framing itself
is ``http1.py``; this module decides where a request goes and what an error becomes.

The proxy runs on asyncio streams in an event loop of its own thread; callers use a plain
synchronous, thread-safe API (:class:`LoadBalancer`). The health-check schedule and idle
timers run on that loop's own clock (``loop.time``, ``asyncio.sleep``), the one clock
asyncio's streams and timeouts share; the rules they feed (thresholds, the deregistration
delay) live in the target group on the injected :class:`~deployer.base.clock.Clock`, where
the unit tests drive them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployer.base import logs
from deployer.base.clock import Clock
from deployer.base.errors import CloudError, ConfigError, StateError
from deployer.localcloud.elb import http1
from deployer.localcloud.elb.targetgroup import (
    CHECK_TIMEOUT,
    FAILED_HEALTH_CHECKS,
    NOT_REGISTERED,
    RESPONSE_CODE_MISMATCH,
    TRAFFIC_PORT,
    HealthTransition,
    RegisteredTarget,
    TargetGroup,
    TargetGroupSettings,
    TargetHealthState,
    TargetState,
)

__all__ = [
    "HealthTransition",
    "LoadBalancer",
    "TargetGroup",
    "TargetGroupSettings",
    "TargetHealthState",
    "TargetState",
]


# -- the load balancer ------------------------------------------------------------------------

@dataclass(eq=False)
class _Links:
    """The load balancer's I/O for one target (loop thread only)."""

    exchanges: set[_Upstream] = field(default_factory=set)  # in use: cut when draining ends
    idle: list[_Upstream] = field(default_factory=list)  # kept for reuse
    checker: asyncio.Task | None = None

    def cut(self) -> None:
        for upstream in [*self.exchanges, *self.idle]:
            upstream.abort()
        self.idle.clear()


@dataclass(eq=False, slots=True)
class _Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def abort(self) -> None:
        self.writer.transport.abort()


class LoadBalancer:
    """An ALB with one HTTP listener on loopback forwarding to one target group.

    ``connect_timeout_s`` is the ALB's fixed 10 s target connect timeout and
    ``idle_timeout_s`` the ``idle_timeout.timeout_seconds`` attribute (60 s); both can be
    shortened for tests. ``target_keepalive_s`` bounds how long an idle connection to a
    target is kept for reuse; like an ALB's it is the idle timeout unless given (0 turns
    reuse off). A target that closes idle connections sooner (Node's default
    keepAliveTimeout is 5 s) races the next request sent on one: a 502, as on AWS, which
    is why targets should keep connections open longer than the load balancer does.
    """

    def __init__(self, name: str, settings: TargetGroupSettings | None = None, *,
                 host: str = "127.0.0.1", port: int = 0,
                 clock: Clock | None = None,
                 connect_timeout_s: float = 10.0, idle_timeout_s: float = 60.0,
                 target_keepalive_s: float | None = None,
                 on_transition: Callable[[HealthTransition], None] | None = None) -> None:
        if target_keepalive_s is None:
            target_keepalive_s = idle_timeout_s
        if not connect_timeout_s > 0 or not idle_timeout_s > 0 or target_keepalive_s < 0:
            raise ConfigError("connect and idle timeouts must be positive and the target "
                              "keep-alive not negative", location=f"load balancer {name}")
        self.name = name
        self.host = host
        self.clock = clock or Clock()
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.target_keepalive_s = target_keepalive_s
        self.group = TargetGroup(name, settings or TargetGroupSettings(),
                                 clock=self.clock, on_transition=on_transition)
        self.log = logs.get_logger(load_balancer=name)
        self._requested_port = port
        self._port = 0
        self._port_bytes = b"0"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._background: set[asyncio.Task] = set()
        self._links: dict[RegisteredTarget, _Links] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> LoadBalancer:
        if self._loop is not None:
            raise StateError(f"load balancer {self.name} was already started",
                             hint="a stopped load balancer is not restarted: create a new one")
        self._thread = threading.Thread(target=self._run_thread, name=f"lb-{self.name}",
                                        daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            error = self._startup_error
            raise CloudError(f"load balancer {self.name} cannot listen on "
                             f"{self.host}:{self._requested_port}: {error}",
                             hint="pick another port, or 0 for a free one") from error
        self.log.info("load balancer listening", url=self.url)
        return self

    def stop(self) -> None:
        """Close the listener, every connection and every check; return when the thread ended."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stop_event.set)  # type: ignore[union-attr]
            except RuntimeError:
                pass  # the loop already finished
        thread.join()
        self._thread = None
        self.log.info("load balancer stopped")

    def __enter__(self) -> LoadBalancer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}/"

    # -- targets ----------------------------------------------------------------------------
    def register(self, target_id: str, port: int, host: str = "127.0.0.1") -> None:
        """Register a target; it is ``initial`` until its first health check passes."""
        loop = self._running_loop()
        if not 1 <= port <= 65535:
            raise ConfigError(f"target port must be 1-65535, got {port}",
                              location=f"target {target_id}")
        target = self.group.register(target_id, host, port)
        if target is not None:
            loop.call_soon_threadsafe(self._start_checks, target)

    def deregister(self, target_id: str) -> None:
        """Start draining: no new requests; removed when the deregistration delay is over."""
        loop = self._running_loop()
        target = self.group.deregister(target_id)
        if target is not None:
            loop.call_soon_threadsafe(self._start_draining, target)

    def update_settings(self, settings: TargetGroupSettings) -> None:
        """New health settings apply from each target's next check; a drain keeps its delay."""
        self.group.settings = settings

    @property
    def settings(self) -> TargetGroupSettings:
        return self.group.settings

    def states(self) -> dict[str, TargetState]:
        return self.group.states()

    def target_health(self, target_id: str) -> TargetState:
        """Like describe-target-health for one id: an unknown target is ``unused``."""
        state = self.group.state_of(target_id)
        if state is not None:
            return state
        return TargetState(target_id=target_id, host="", port=0, state=TargetHealthState.UNUSED,
                           reason=NOT_REGISTERED,
                           description="Target is not registered to the target group",
                           since=self.group.wall_clock())

    def history(self) -> list[HealthTransition]:
        return self.group.history()

    def in_flight(self, target_id: str) -> int:
        return self.group.in_flight(target_id)

    def wait_healthy(self, target_id: str, timeout: float) -> bool:
        return self._wait(lambda: (t := self.group.get(target_id)) is not None
                          and t.state is TargetHealthState.HEALTHY, timeout)

    def wait_drained(self, target_id: str, timeout: float) -> bool:
        return self._wait(lambda: self.group.get(target_id) is None, timeout)

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = self.clock.monotonic() + timeout
        with self.group.changed:
            while not done():
                left = deadline - self.clock.monotonic()
                if left <= 0:
                    return False
                self.clock.wait(self.group.changed, min(left, 0.5))
            return True

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if self._thread is None or loop is None or loop.is_closed():
            raise StateError(f"load balancer {self.name} is not running", hint="start it first")
        return loop

    # -- the loop thread --------------------------------------------------------------------
    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # the thread must not die silently
            if self._ready.is_set():
                self.log.error("load balancer loop failed", error=repr(exc))
            else:
                self._startup_error = exc  # start() raises it
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self._server = await asyncio.start_server(
            self._serve_client, self.host, self._requested_port, backlog=1024,
            limit=http1.HEAD_LIMIT, reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]
        self._port_bytes = str(self._port).encode()
        self._ready.set()
        await self._stop_event.wait()
        await self._shutdown()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._background):
            task.cancel()
        for links in self._links.values():
            links.cut()
        for writer in list(self._clients):
            writer.transport.abort()
        await asyncio.gather(*self._background, return_exceptions=True)
        # Cut connections end their handlers; one stuck elsewhere is cancelled.
        if self._handlers:
            _, stuck = await asyncio.wait(list(self._handlers), timeout=1.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        await self._server.wait_closed()

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- health checks ----------------------------------------------------------------------
    def _start_checks(self, target: RegisteredTarget) -> None:
        if not target.removed and target.state is not TargetHealthState.DRAINING:
            self._links_of(target).checker = self._spawn(self._check_loop(target))

    def _links_of(self, target: RegisteredTarget) -> _Links:
        links = self._links.get(target)
        if links is None:
            links = self._links[target] = _Links()
        return links

    async def _check_loop(self, target: RegisteredTarget) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()  # the first check goes out at once
        while not target.removed and target.state is not TargetHealthState.DRAINING:
            settings = self.group.settings
            passed, reason, description = await self._check(target, settings)
            self.group.record_check(target, passed, reason, description)
            due += settings.health_check_interval_s
            now = loop.time()
            if due < now:
                due = now  # a stalled loop resumes checking, it does not fire a burst
            await asyncio.sleep(due - now)

    async def _check(self, target: RegisteredTarget,
                     settings: TargetGroupSettings) -> tuple[bool, str, str]:
        port = (target.port if settings.health_check_port == TRAFFIC_PORT
                else int(settings.health_check_port))
        request = (f"GET {settings.health_check_path} HTTP/1.1\r\n"
                   f"Host: {target.host}:{port}\r\nUser-Agent: ELB-HealthChecker/2.0\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n").encode()
        writer = None
        try:
            async with asyncio.timeout(settings.health_check_timeout_s):
                reader, writer = await asyncio.open_connection(target.host, port)
                writer.write(request)
                line = await reader.readuntil(b"\r\n")
        except TimeoutError:
            return False, CHECK_TIMEOUT, "Request timed out"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            return False, FAILED_HEALTH_CHECKS, _describe_failure(exc)
        finally:
            if writer is not None:
                writer.transport.abort()  # the ALB closes each check's connection after it
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return False, FAILED_HEALTH_CHECKS, "Target response was malformed"
        status = int(parts[1])
        if settings.matches(status):
            return True, "", ""
        return (False, RESPONSE_CODE_MISMATCH,
                f"Health checks failed with these codes: [{status}]")

    # -- draining ---------------------------------------------------------------------------
    def _start_draining(self, target: RegisteredTarget) -> None:
        links = self._links_of(target)
        if links.checker is not None:
            links.checker.cancel()
        for upstream in links.idle:
            upstream.abort()
        links.idle.clear()
        self._spawn(self._drain(target))

    async def _drain(self, target: RegisteredTarget) -> None:
        # When the drain is over is the target group's rule; this only waits it out.
        early = self.group.settings.drain_early_when_idle
        while (left := self.group.drain_left(target)) > 0:
            await asyncio.sleep(min(0.05, left) if early else left)
        # The delay is over: what is still in flight is cut, as the ALB does.
        self.group.forget(target)
        links = self._links.pop(target, None)
        if links is not None:
            links.cut()

    # -- the proxy --------------------------------------------------------------------------
    async def _serve_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)  # type: ignore[arg-type]
        self._clients.add(writer)
        peer = writer.get_extra_info("peername")
        client_ip = (peer[0] if peer else "127.0.0.1").encode()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout_s):
                        head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    await self._reply_error(writer, 400, None)
                    return
                except (asyncio.IncompleteReadError, TimeoutError, OSError):
                    return  # the client left, or stayed idle past the idle timeout
                try:
                    request = http1.Request(head, client_ip, self._port_bytes)
                except http1.BadMessage:
                    await self._reply_error(writer, 400, None)
                    return
                if request.expect:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if not await self._exchange(request, reader, writer):
                    return
        except asyncio.CancelledError:
            return  # shutting down; the streams callback must not see a cancelled handler
        finally:
            self._clients.discard(writer)
            self._handlers.discard(task)
            writer.close()

    async def _reply_error(self, writer: asyncio.StreamWriter, status: int,
                           request: http1.Request | None) -> bool:
        # The connection is kept only if no request body is left unread on it.
        keep = request is not None and request.keep_alive and request.body == http1.NONE
        writer.write(http1.ERROR_PAGES[status, keep])
        try:
            await writer.drain()
        except OSError:
            return False
        return keep

    async def _exchange(self, request: http1.Request, creader: asyncio.StreamReader,
                        cwriter: asyncio.StreamWriter) -> bool:
        """Forward one request; True if the client connection can carry another."""
        target = self.group.pick()
        if target is None:
            return await self._reply_error(cwriter, 503, request)
        # Looked up before any await: a drain that ends meanwhile cannot have dropped it yet.
        links = self._links_of(target)
        upstream: _Upstream | None = None
        reusable = False
        try:
            try:
                upstream = await self._connect(target, links, fresh=request.upgrade)
            except TimeoutError:
                return await self._reply_error(cwriter, 504, request)
            except OSError:
                return await self._reply_error(cwriter, 502, request)
            if target.removed:  # the delay ran out while connecting
                return await self._reply_error(cwriter, 502, request)
            links.exchanges.add(upstream)
            idle = self.idle_timeout_s
            upstream.writer.write(request.head)
            if request.body != http1.NONE:
                try:
                    await http1.copy_body(creader, upstream.writer, request.body,
                                          request.length, idle)
                except http1.Broken as broken:
                    if broken.reading:
                        return False  # the client broke off (or stalled) its own request
                    return await self._reply_error(cwriter, 502, request)
            try:
                response = await http1.read_response_head(upstream.reader, request, idle)
                body = b""
                if response.body == http1.LENGTH and response.length <= http1.CHUNK:
                    body = await http1.read_exactly(upstream.reader, response.length, idle)
            except http1.Broken as broken:
                return await self._reply_error(cwriter, 504 if broken.timeout else 502, request)
            cwriter.write(response.head + body if body else response.head)
            try:
                if response.status == 101:
                    await http1.tunnel(creader, cwriter, upstream.reader, upstream.writer,
                                       idle)
                    return False
                if response.body != http1.NONE and not body:
                    await http1.copy_body(upstream.reader, cwriter, response.body,
                                          response.length, idle)
                await cwriter.drain()
            except (http1.Broken, OSError):
                # The response has started: all the client can get now is a cut connection.
                cwriter.transport.abort()
                return False
            # After an upgrade offer the target refused, the connection is not worth keeping.
            reusable = response.reusable and not request.upgrade
            return response.keep_client
        finally:
            if upstream is not None:
                links.exchanges.discard(upstream)
                self._release(target, links, upstream, reusable)
            self.group.release(target)

    async def _connect(self, target: RegisteredTarget, links: _Links,
                       fresh: bool) -> _Upstream:
        if not fresh:
            now = asyncio.get_running_loop().time()
            idle = links.idle
            while idle:
                upstream = idle.pop()
                if (upstream.writer.is_closing() or upstream.reader.at_eof()
                        or now - upstream.idle_since > self.target_keepalive_s):
                    upstream.abort()
                    continue
                return upstream
        async with asyncio.timeout(self.connect_timeout_s):
            reader, writer = await asyncio.open_connection(target.host, target.port,
                                                           limit=http1.HEAD_LIMIT)
        return _Upstream(reader, writer)

    def _release(self, target: RegisteredTarget, links: _Links, upstream: _Upstream,
                 reusable: bool) -> None:
        if (reusable and self.target_keepalive_s > 0 and not target.removed
                and target.state is not TargetHealthState.DRAINING and len(links.idle) < 256
                and not upstream.writer.is_closing()):
            upstream.idle_since = asyncio.get_running_loop().time()
            links.idle.append(upstream)
        else:
            upstream.abort()


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "Connection closed before a response"
    if isinstance(exc, ConnectionResetError):
        return "Connection reset"
    return f"Health check failed: {exc.__class__.__name__}"

"""The local ALB against real backends on loopback: health, routing, errors, draining."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
from structlog.testing import capture_logs

from deployer.base.errors import CloudError, ConfigError, NotFound, StateError
from deployer.localcloud.elb.loadbalancer import (
    LoadBalancer,
    TargetGroupSettings,
    TargetHealthState,
)
from deployer.measure.poller import HealthPoller
from tests.localcloud.backend import RELEASE, SERVER_HEADER, Backend
from tests.support.scripted_server import ScriptedServer

H = TargetHealthState


def fast(**overrides) -> TargetGroupSettings:
    """Second-scale checks; the thresholds stay AWS's own range."""
    values = dict(allow_fast_checks=True, health_check_path="/health",
                  health_check_interval_s=0.2, health_check_timeout_s=0.15,
                  healthy_threshold=3, unhealthy_threshold=2, deregistration_delay_s=1)
    values.update(overrides)
    return TargetGroupSettings(**values)


@pytest.fixture
def backend_factory():
    made: list = []

    def make(name: str) -> Backend:
        made.append(Backend(name))
        return made[-1]

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def lb_factory():
    made: list[LoadBalancer] = []

    def make(settings: TargetGroupSettings | None = None, **kwargs) -> LoadBalancer:
        made.append(LoadBalancer("web", settings or fast(), **kwargs).start())
        return made[-1]

    yield make
    for lb in made:
        lb.stop()


def get(lb: LoadBalancer, path: str = "/", *, method: str = "GET", body=None,
        headers: dict | None = None, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def served_by(lb: LoadBalancer, count: int) -> list[str]:
    names = []
    for _ in range(count):
        status, headers, _ = get(lb)
        assert status == 200
        names.append(headers["x-backend"])
    return names


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def state(lb: LoadBalancer, target_id: str) -> H:
    return lb.target_health(target_id).state


# -- health -----------------------------------------------------------------------------------

def test_a_new_target_is_healthy_after_one_passing_check(backend_factory, lb_factory):
    backend = backend_factory("a")
    # Healthy threshold 5 with a 2 s interval: only the one-check rule can make it in time.
    lb = lb_factory(fast(health_check_interval_s=2, health_check_timeout_s=1,
                         healthy_threshold=5))
    lb.register("i-a", backend.port)
    assert lb.wait_healthy("i-a", timeout=1.5)
    assert len(backend.checks()) == 1
    assert [(t.from_state, t.to_state) for t in lb.history()] == [
        (H.UNUSED, H.INITIAL), (H.INITIAL, H.HEALTHY)]
    registered = lb.history()[0]
    assert registered.reason == "Elb.RegistrationInProgress" and registered.target_id == "i-a"
    status, headers, body = get(lb)
    assert (status, headers["x-backend"], body) == (200, "a", b"hello from a")


def test_unhealthy_after_threshold_failures_then_healthy_after_threshold_passes(
        backend_factory, lb_factory):
    backend = backend_factory("a")
    checks_at_transition: dict[H, int] = {}
    lb = lb_factory(fast(healthy_threshold=3, unhealthy_threshold=2),
                    on_transition=lambda t: checks_at_transition.setdefault(
                        t.to_state, len(backend.checks())))
    lb.register("i-a", backend.port)
    assert lb.wait_healthy("i-a", timeout=3)
    healthy_checks = len(backend.checks())

    backend.health_status = 500
    assert wait_until(lambda: state(lb, "i-a") is H.UNHEALTHY)
    failing = [status for _, status in backend.checks()[healthy_checks:]]
    # The transition happened right after the second failing check, not before, not later.
    assert checks_at_transition[H.UNHEALTHY] - healthy_checks == 2 == failing[:2].count(500)
    target = lb.target_health("i-a")
    assert target.reason == "Target.ResponseCodeMismatch"
    assert "[500]" in target.description

    unhealthy_checks = checks_at_transition[H.UNHEALTHY]
    del checks_at_transition[H.HEALTHY]
    backend.health_status = 200
    assert lb.wait_healthy("i-a", timeout=3)
    assert checks_at_transition[H.HEALTHY] - unhealthy_checks >= 3
    passing_run = [s for _, s in backend.checks()[unhealthy_checks:checks_at_transition[H.HEALTHY]]]
    assert passing_run[-3:] == [200, 200, 200]
    assert [(t.from_state, t.to_state) for t in lb.history()][-2:] == [
        (H.HEALTHY, H.UNHEALTHY), (H.UNHEALTHY, H.HEALTHY)]


def test_timeouts_and_refusals_are_failed_checks_with_their_reasons(lb_factory):
    server = ScriptedServer()
    server.hang_seconds = 0.5
    try:
        lb = lb_factory(fast(health_check_path="/"))
        lb.register("i-s", server.port)
        assert lb.wait_healthy("i-s", timeout=3)
        server.set_hang()
        assert wait_until(lambda: state(lb, "i-s") is H.UNHEALTHY)
        assert lb.target_health("i-s").reason == "Target.Timeout"
        server.set_refuse()
        assert wait_until(lambda: "refused" in lb.target_health("i-s").description)
        assert lb.target_health("i-s").reason == "Target.FailedHealthChecks"
        assert lb.target_health("i-s").state is H.UNHEALTHY
    finally:
        server.close()


def test_health_checks_use_the_path_port_and_matcher(backend_factory, lb_factory):
    checked, traffic = backend_factory("checked"), backend_factory("traffic")
    checked.health_status = 302
    lb = lb_factory(fast(health_check_port=checked.port))
    lb.register("i-a", traffic.port)
    assert wait_until(lambda: len(checked.checks()) >= 1)
    assert state(lb, "i-a") is H.INITIAL  # 302 is not in the default matcher
    lb.update_settings(fast(health_check_port=checked.port, matcher="200,302"))
    assert lb.wait_healthy("i-a", timeout=3)
    assert traffic.checks() == []
    status, headers, _ = get(lb)
    assert (status, headers["x-backend"]) == (200, "traffic")


def test_transitions_are_logged(backend_factory, lb_factory):
    backend = backend_factory("a")
    lb = lb_factory()
    with capture_logs() as logs:
        lb.register("i-a", backend.port)
        assert lb.wait_healthy("i-a", timeout=3)
    changes = [e for e in logs if e["event"] == "target health changed"]
    assert [(e["from_state"], e["to_state"]) for e in changes] == [
        ("unused", "initial"), ("initial", "healthy")]
    assert changes[0]["target_id"] == "i-a"


# -- routing ----------------------------------------------------------------------------------

def test_round_robin_over_healthy_targets(backend_factory, lb_factory):
    lb = lb_factory()
    for name in "abc":
        lb.register(f"i-{name}", backend_factory(name).port)
    for name in "abc":
        assert lb.wait_healthy(f"i-{name}", timeout=3)
    names = served_by(lb, 9)
    assert sorted(names) == sorted("abc" * 3)
    assert names[:3] == names[3:6] == names[6:]


def test_no_registered_targets_is_503_from_the_load_balancer(lb_factory):
    lb = lb_factory()
    status, headers, body = get(lb)
    assert status == 503
    assert headers["server"] == "awselb/2.0"
    assert b"503 Service Temporarily Unavailable" in body


def test_fail_open_only_when_every_registered_target_is_unhealthy(backend_factory, lb_factory):
    a, b = backend_factory("a"), backend_factory("b")
    a.health_status = b.health_status = 500  # their pages still answer 200
    lb = lb_factory(fast(health_check_interval_s=0.6, health_check_timeout_s=0.3))

    lb.register("i-a", a.port)
    assert wait_until(lambda: lb.target_health("i-a").reason == "Elb.InitialHealthChecking")
    assert get(lb)[0] == 503  # an initial target gets no traffic

    assert wait_until(lambda: state(lb, "i-a") is H.UNHEALTHY)
    assert served_by(lb, 2) == ["a", "a"]  # failed open

    lb.register("i-b", b.port)
    assert wait_until(lambda: lb.target_health("i-b").reason == "Elb.InitialHealthChecking")
    assert state(lb, "i-a") is H.UNHEALTHY
    assert get(lb)[0] == 503  # unhealthy + initial: not "only unhealthy", so no fail-open

    assert wait_until(lambda: state(lb, "i-b") is H.UNHEALTHY)
    assert sorted(served_by(lb, 4)) == ["a", "a", "b", "b"]


def test_502_when_the_target_refuses_or_resets_and_no_retry_elsewhere(backend_factory,
                                                                        lb_factory):
    server, good = ScriptedServer(), backend_factory("good")
    try:
        # One check each, then none for a minute: only the proxy sees the failures.
        lb = lb_factory(fast(health_check_path="/", health_check_interval_s=60,
                             health_check_timeout_s=1))
        lb.register("i-scripted", server.port)
        lb.register("i-good", good.port)
        assert lb.wait_healthy("i-scripted", 3) and lb.wait_healthy("i-good", 3)
        for breakage in (server.set_refuse, server.set_reset):
            breakage()
            answers = [get(lb) for _ in range(6)]
            statuses = sorted(status for status, _, _ in answers)
            assert statuses == [200, 200, 200, 502, 502, 502]
            assert all(h["server"] == "awselb/2.0" for s, h, _ in answers if s == 502)
    finally:
        server.close()


def test_504_when_the_target_does_not_answer_within_the_idle_timeout(lb_factory):
    server = ScriptedServer()
    server.hang_seconds = 2.0
    try:
        lb = lb_factory(fast(health_check_path="/", health_check_interval_s=60,
                             health_check_timeout_s=1), idle_timeout_s=0.3)
        lb.register("i-s", server.port)
        assert lb.wait_healthy("i-s", 3)
        server.set_hang()
        started = time.monotonic()
        status, headers, _ = get(lb)
        assert (status, headers["server"]) == (504, "awselb/2.0")
        assert 0.25 < time.monotonic() - started < 1.8
    finally:
        server.close()


def test_504_when_the_target_does_not_accept_within_the_connect_timeout(backend_factory,
                                                                          lb_factory):
    checked = backend_factory("checked")
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname())  # the accept queue is now full
    try:
        lb = lb_factory(fast(health_check_port=checked.port), connect_timeout_s=0.3)
        lb.register("i-full", full.getsockname()[1])
        assert lb.wait_healthy("i-full", 3)
        started = time.monotonic()
        assert get(lb)[0] == 504
        assert 0.25 < time.monotonic() - started < 1.8
    finally:
        filler.close()
        full.close()


# -- draining ---------------------------------------------------------------------------------

def test_draining_finishes_in_flight_requests_and_removes_after_the_delay(backend_factory,
                                                                           lb_factory):
    a, b = backend_factory("a"), backend_factory("b")
    lb = lb_factory(fast(deregistration_delay_s=1.5))
    lb.register("i-a", a.port)
    assert lb.wait_healthy("i-a", 3)
    slow: list = []
    request = threading.Thread(target=lambda: slow.append(get(lb, "/slow?s=0.8")))
    request.start()
    assert wait_until(lambda: lb.in_flight("i-a") == 1)
    lb.register("i-b", b.port)
    assert lb.wait_healthy("i-b", 3)

    deregistered = time.monotonic()
    lb.deregister("i-a")
    assert state(lb, "i-a") is H.DRAINING
    assert lb.target_health("i-a").reason == "Target.DeregistrationInProgress"
    assert served_by(lb, 4) == ["b"] * 4  # no new requests for the draining target
    assert lb.in_flight("i-a") == 1

    request.join(5)
    status, headers, body = slow[0]
    assert (status, headers["x-backend"], body) == (200, "a", b"slow")
    # Nothing in flight any more, but AWS keeps it draining for the whole delay.
    assert state(lb, "i-a") is H.DRAINING
    assert lb.wait_drained("i-a", timeout=3)
    assert time.monotonic() - deregistered >= 1.4
    assert "i-a" not in lb.states()
    assert lb.target_health("i-a").reason == "Target.NotRegistered"
    assert [(t.from_state, t.to_state) for t in lb.history() if t.target_id == "i-a"][-2:] == [
        (H.HEALTHY, H.DRAINING), (H.DRAINING, H.UNUSED)]


def test_the_deregistration_delay_cuts_what_is_still_in_flight(backend_factory, lb_factory):
    a = backend_factory("a")
    lb = lb_factory(fast(deregistration_delay_s=0.4))
    lb.register("i-a", a.port)
    assert lb.wait_healthy("i-a", 3)
    slow: list = []
    request = threading.Thread(target=lambda: slow.append(get(lb, "/slow?s=3")))
    started = time.monotonic()
    request.start()
    assert wait_until(lambda: lb.in_flight("i-a") == 1)
    lb.deregister("i-a")
    request.join(5)
    assert slow[0][0] == 502
    assert time.monotonic() - started < 2.5
    assert lb.wait_drained("i-a", 1)


def test_drain_early_when_idle_is_opt_in(backend_factory, lb_factory):
    a = backend_factory("a")
    lb = lb_factory(fast(deregistration_delay_s=60, drain_early_when_idle=True))
    lb.register("i-a", a.port)
    assert lb.wait_healthy("i-a", 3)
    lb.deregister("i-a")
    assert lb.wait_drained("i-a", timeout=2)


# -- HTTP -------------------------------------------------------------------------------------

def test_headers_pass_through_and_forwarded_headers_are_added(backend_factory, lb_factory):
    backend = backend_factory("a")
    lb = lb_factory()
    lb.register("i-a", backend.port)
    assert lb.wait_healthy("i-a", 3)
    status, headers, _ = get(lb)
    assert headers["server"] == SERVER_HEADER
    assert headers["x-etherpad-release"] == RELEASE
    status, _, body = get(lb, "/headers", headers={"X-Forwarded-For": "203.0.113.7",
                                                   "X-Custom": "kept"})
    seen = {k.lower(): v for k, v in json.loads(body).items()}
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-port"] == str(lb.port)
    assert seen["x-custom"] == "kept"
    assert seen["host"] == f"127.0.0.1:{lb.port}"
    status, headers, _ = get(lb, headers={"Connection": "close"})
    assert (status, headers["connection"], headers["server"]) == (200, "close", SERVER_HEADER)


def test_the_health_poller_reads_the_release_through_the_load_balancer(backend_factory,
                                                                        lb_factory):
    backend = backend_factory("a")
    lb = lb_factory()
    lb.register("i-a", backend.port)
    assert lb.wait_healthy("i-a", 3)
    probes = HealthPoller(lb.url, hz=20, timeout=1).run_for(0.5)
    assert probes and all(p.ok and p.version == RELEASE for p in probes)


def test_bodies_in_every_framing_over_one_kept_alive_connection(backend_factory, lb_factory):
    backend = backend_factory("a")
    lb = lb_factory()
    lb.register("i-a", backend.port)
    assert lb.wait_healthy("i-a", 3)
    conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=5)
    try:
        big = bytes(range(256)) * 800  # 200 KiB: streamed, not one read
        conn.request("POST", "/echo", body=big)
        response = conn.getresponse()
        assert response.read() == big
        sock = conn.sock

        conn.request("POST", "/echo", body=iter([b"abc", b"", b"defg"]), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        assert (response.read(), response.getheader("X-Body-Length")) == (b"abcdefg", "7")

        conn.request("GET", "/chunked")
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.read() == b"one,two,three"

        conn.request("HEAD", "/")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"")
        assert conn.sock is sock  # the same client connection carried all four
    finally:
        conn.close()


def test_target_connections_are_reused_and_stale_ones_are_not(backend_factory, lb_factory):
    checked, traffic = backend_factory("checked"), backend_factory("traffic")
    lb = lb_factory(fast(health_check_port=checked.port))
    lb.register("i-a", traffic.port)
    assert lb.wait_healthy("i-a", 3)
    assert served_by(lb, 5) == ["traffic"] * 5
    assert traffic.connections == 1

    # A target that closes each kept-alive connection soon after answering (as Node does
    # after its keepAliveTimeout): the next request must get a fresh connection, not a 502.
    closer = socket.socket()
    closer.bind(("127.0.0.1", 0))
    closer.listen(8)
    accepted: list[int] = []

    def answer_once_then_close() -> None:
        while True:
            try:
                conn, _ = closer.accept()
            except OSError:
                return
            accepted.append(1)
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: closer\r\nContent-Length: 2\r\n\r\nok")
                time.sleep(0.05)

    threading.Thread(target=answer_once_then_close, daemon=True).start()
    try:
        lb.deregister("i-a")
        lb.register("i-closer", closer.getsockname()[1])
        lb.update_settings(fast())  # checks on the traffic port again
        assert lb.wait_healthy("i-closer", 3)
        for _ in range(3):
            time.sleep(0.2)
            assert get(lb)[0] == 200
    finally:
        closer.close()


def test_idle_target_connections_are_kept_for_the_idle_timeout(backend_factory, lb_factory):
    """Like an ALB: a connection to a target is reused until the listener's idle timeout,
    not closed after a few seconds of quiet, so a target must keep it open at least as long."""
    checked = backend_factory("checked")
    for idle_timeout_s, connections in ((5.0, 1), (0.5, 2)):
        traffic = backend_factory(f"traffic-{idle_timeout_s}")
        lb = lb_factory(fast(health_check_port=checked.port), idle_timeout_s=idle_timeout_s)
        lb.register("i-a", traffic.port)
        assert lb.wait_healthy("i-a", 3)
        assert served_by(lb, 1) == [traffic.name]
        time.sleep(1.0)
        assert served_by(lb, 1) == [traffic.name]
        assert traffic.connections == connections, idle_timeout_s


def test_malformed_requests_get_400(lb_factory):
    lb = lb_factory()
    with socket.create_connection(("127.0.0.1", lb.port), timeout=3) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 Bad Request")


def test_websocket_upgrade_is_tunnelled(backend_factory, lb_factory):
    backend = backend_factory("a")
    lb = lb_factory()
    lb.register("i-a", backend.port)
    assert lb.wait_healthy("i-a", 3)
    with socket.create_connection(("127.0.0.1", lb.port), timeout=3) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        assert lb.in_flight("i-a") == 1
        for message in (b"ping", b"\x81\x05hello"):
            sock.sendall(message)
            assert sock.recv(4096) == message
    assert wait_until(lambda: lb.in_flight("i-a") == 0)


# -- lifecycle and API ------------------------------------------------------------------------

def test_stop_closes_connections_and_leaves_no_thread(backend_factory):
    backend = backend_factory("a")
    lb = LoadBalancer("web", fast()).start()
    lb.register("i-a", backend.port)
    assert lb.wait_healthy("i-a", 3)
    client = socket.create_connection(("127.0.0.1", lb.port), timeout=3)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"hello from a"):
        answer += client.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200")
    lb.stop()
    try:
        assert client.recv(4096) == b""  # the kept-alive connection was closed
    except ConnectionResetError:
        pass
    client.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("lb-")]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", lb.port), timeout=1)
    with pytest.raises(StateError, match="create a new one"):
        lb.start()


def test_api_misuse_raises_the_projects_errors(backend_factory, lb_factory):
    backend = backend_factory("a")
    idle = LoadBalancer("idle", fast())
    with pytest.raises(StateError, match="not running"):
        idle.register("i-a", backend.port)
    lb = lb_factory()
    lb.register("i-a", backend.port)
    lb.register("i-a", backend.port)  # twice is a no-op, as on AWS
    assert [t.to_state for t in lb.history()].count(H.INITIAL) == 1
    with pytest.raises(StateError, match="already registered"):
        lb.register("i-a", backend.port + 1)
    with pytest.raises(NotFound, match="i-x"):
        lb.deregister("i-x")
    with pytest.raises(ConfigError, match="1-65535"):
        lb.register("i-b", 0)
    lb.deregister("i-a")
    with pytest.raises(StateError, match="draining"):
        lb.register("i-a", backend.port)
    unknown = lb.target_health("i-x")
    assert (unknown.state, unknown.reason) == (H.UNUSED, "Target.NotRegistered")


def test_a_port_in_use_is_a_cloud_error(lb_factory):
    first = lb_factory()
    with pytest.raises(CloudError, match="cannot listen"):
        LoadBalancer("second", fast(), port=first.port).start()

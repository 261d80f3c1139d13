"""A tiny keep-alive HTTP/1.1 backend on loopback for load balancer tests.

Every answer names the backend in ``X-Backend`` and carries Etherpad-like version headers.
Paths: ``/`` (200), ``/health`` (status from ``health_status``, each check recorded),
``/slow?s=SECONDS``, ``/chunked`` (a chunked answer), ``/echo`` (POST: the body back, whether
it came with Content-Length or chunked), ``/headers`` (the request headers as the body),
``/ws`` (101 on ``Upgrade: websocket``, then every byte echoed).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SERVER_HEADER = "Etherpad c85ab49 (https://etherpad.org)"
RELEASE = "1.8.17"


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.health_status = 200
        self.health_checks: list[tuple[float, int]] = []  # (monotonic time, status answered)
        self.last_headers: dict[str, str] = {}
        self.connections = 0  # accepted TCP connections, health checks included
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"backend": self})
        self.server = _Server(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def record_check(self, status: int) -> None:
        with self._lock:
            self.health_checks.append((time.monotonic(), status))

    def checks(self) -> list[tuple[float, int]]:
        with self._lock:
            return list(self.health_checks)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A connection the load balancer cut (draining ended, stop) is expected in these tests.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    backend: Backend

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.backend._lock:
            self.backend.connections += 1

    def _answer(self, status: int, body: bytes = b"", extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("X-Backend", self.backend.name)
        self.send_header("X-Etherpad-Release", RELEASE)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def version_string(self) -> str:
        return SERVER_HEADER

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.backend.last_headers = dict(self.headers.items())
        if url.path == "/health":
            status = self.backend.health_status
            self.backend.record_check(status)
            self._answer(status, b"health")
        elif url.path == "/slow":
            time.sleep(float(parse_qs(url.query)["s"][0]))
            self._answer(200, b"slow")
        elif url.path == "/chunked":
            self.send_response(200)
            self.send_header("X-Backend", self.backend.name)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one,", b"two,", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/headers":
            self._answer(200, json.dumps(dict(self.headers.items())).encode(),
                         {"Content-Type": "application/json"})
        elif url.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while data := self.connection.recv(4096):
                self.connection.sendall(data)
            self.close_connection = True
        else:
            self._answer(200, f"hello from {self.backend.name}".encode())

    def do_HEAD(self) -> None:
        body = f"hello from {self.backend.name}".encode()
        self.send_response(200)
        self.send_header("X-Backend", self.backend.name)
        self.send_header("Content-Length", str(len(body)))  # of the GET, with no body sent
        self.end_headers()

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(200, body, {"X-Body-Length": str(len(body))})

"""An HTTP server on loopback whose behaviour a test scripts over time.

Modes: ``ok`` (200 with a Server header naming a commit), ``status`` (answer with a given
status), ``hang`` (accept, never answer), ``refuse`` (listening socket closed: connections
are refused), ``reset`` (accept, then close with RST).
"""

from __future__ import annotations

import socket
import struct
import threading
import time


class ScriptedServer:
    def __init__(self, commit: str = "c85ab49", host: str = "127.0.0.1") -> None:
        self.host = host
        self.commit = commit
        self.mode = "ok"
        self.status = 503
        self.hang_seconds = 5.0
        self.requests = 0
        self._lock = threading.Lock()
        self._closing = False
        self._listener: socket.socket | None = None
        self._open_listener(0)
        self.port = self._listener.getsockname()[1]  # type: ignore[union-attr]
        self._accept_thread: threading.Thread | None = None
        self._start_accepting()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    # -- control ----------------------------------------------------------------------------
    def set_ok(self, commit: str | None = None) -> None:
        with self._lock:
            if commit:
                self.commit = commit
            self._resume_listening()
            self.mode = "ok"

    def set_status(self, status: int) -> None:
        with self._lock:
            self._resume_listening()
            self.status, self.mode = status, "status"

    def set_hang(self) -> None:
        with self._lock:
            self._resume_listening()
            self.mode = "hang"

    def set_reset(self) -> None:
        with self._lock:
            self._resume_listening()
            self.mode = "reset"

    def set_refuse(self) -> None:
        with self._lock:
            self.mode = "refuse"
            listener, self._listener = self._listener, None
            if listener:
                listener.close()

    def close(self) -> None:
        self._closing = True
        with self._lock:
            if self._listener:
                self._listener.close()
                self._listener = None

    # -- internals --------------------------------------------------------------------------
    def _open_listener(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.listen(256)
        sock.settimeout(0.05)
        self._listener = sock

    def _resume_listening(self) -> None:
        if self._listener is None and not self._closing:
            self._open_listener(self.port)
            self._start_accepting()

    def _start_accepting(self) -> None:
        listener = self._listener
        thread = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        thread.start()
        self._accept_thread = thread

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._closing and listener is self._listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with self._lock:
            mode, status, commit = self.mode, self.status, self.commit
            self.requests += 1
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            if mode == "hang":
                time.sleep(self.hang_seconds)
                return
            if mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            code, reason = (200, "OK") if mode == "ok" else (status, "Service Unavailable")
            body = b"<html>pad</html>"
            conn.sendall(
                f"HTTP/1.1 {code} {reason}\r\nServer: Etherpad {commit} (https://etherpad.org)"
                f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
        except OSError:
            pass
        finally:
            conn.close()

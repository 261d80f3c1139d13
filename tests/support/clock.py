"""A clock for unit tests: time passes only when the code under test sleeps."""

from __future__ import annotations

import threading

from deployer.base.clock import Clock, Waitable


class FakeClock(Clock):
    """Time that passes only when the code under test sleeps (or waits with a timeout)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []
        self._lock = threading.Lock()
        super().__init__(now=lambda: self.t, monotonic=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """A set event returns at once; otherwise the whole timeout passes, in no real time.

        Without a timeout the wait is real: the code waits for another thread's work.
        """
        if isinstance(waitable, threading.Event) and waitable.is_set():
            return True
        if timeout is None:
            return bool(waitable.wait(None))
        # Let other threads run for a moment (a condition's lock is released meanwhile).
        woken = bool(waitable.wait(0.001))
        if woken:
            return True
        self._sleep(timeout)
        return isinstance(waitable, threading.Event) and waitable.is_set()

"""A clock for unit tests: time passes only when the code under test sleeps."""

from __future__ import annotations

from deployer.base.clock import Clock


class FakeClock(Clock):
    """Time that passes only when the code under test sleeps."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []
        super().__init__(now=lambda: self.t, monotonic=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds

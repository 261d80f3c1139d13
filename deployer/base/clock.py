"""Time as deployer sees it: wall time for events, a monotonic clock for deadlines.

Injected everywhere deployer waits, so tests and benchmarks run scripted timelines in
no real time. Waits are data (what to poll, how often, until when) run by one loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from deployer.base.errors import CloudError

T = TypeVar("T")

# How often a follower asks AWS: a completion is noticed within about this long, where
# botocore's waiters ask every 15 s (CodeDeploy) or 30 s (CloudFormation).
POLL_S = 1.0


class Waitable(Protocol):
    """A threading.Event, or a threading.Condition whose lock the caller holds."""

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class Clock:
    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """Wait for an event (or a condition's notification) at most ``timeout`` seconds.

        A thread that sleeps but must wake early when told waits here rather than on the
        event itself, so a fake clock can run it in no real time.
        """
        return bool(waitable.wait(timeout))


def poll_until(step: Callable[[], T | None], *, clock: Clock, timeout_s: float, what: str,
               interval_s: float = POLL_S, hint: str | None = None) -> T:
    """Call ``step`` about every ``interval_s`` until it returns something other than None.

    The time a step takes counts towards the interval, so the gap between two looks at AWS
    stays ``interval_s`` however slow the calls are.
    """
    deadline = clock.monotonic() + timeout_s
    while True:
        started = clock.monotonic()
        result = step()
        if result is not None:
            return result
        if clock.monotonic() >= deadline:
            raise CloudError(f"{what}: not finished after {timeout_s / 60:.0f} min",
                             hint=hint or "it may still be running in AWS; check the console")
        clock.sleep(max(0.0, interval_s - (clock.monotonic() - started)))

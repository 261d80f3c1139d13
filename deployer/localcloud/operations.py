"""Long activities of the local cloud: creating, updating, deleting a stack, a deployment, a bake.

Each runs in a thread of its own as an :class:`Operation` that clients follow by id, as one
follows CloudFormation stack events. One operation at a time per stack.
"""

from __future__ import annotations

import threading
import traceback
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from deployer.base import errors, logs
from deployer.base.clock import Clock
from deployer.cloud.port import Event

log = logs.get_logger(component="operations")


class OperationStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Operation:
    def __init__(self, kind: str, stack: str | None, *, started_at: float) -> None:
        self.id = f"op-{uuid.uuid4().hex[:10]}"
        self.kind = kind
        self.stack = stack
        self.status = OperationStatus.RUNNING
        self.result: Any = None
        self.error: dict | None = None
        self.started_at = started_at
        self.events: list[Event] = []  # what a bake reports as it goes; stacks log their own

    def view(self, events_after: int = 0) -> dict:
        return {"id": self.id, "kind": self.kind, "stack": self.stack,
                "status": self.status.value, "result": self.result, "error": self.error,
                "started_at": self.started_at,
                "events": [e.model_dump() for e in self.events[events_after:]],
                "events_total": len(self.events)}


def error_payload(exc: BaseException) -> dict:
    """An error as the API reports it: its type and its one line, never a traceback (that
    stays in the supervisor's log)."""
    if not isinstance(exc, errors.DeployerError):
        return internal_error(exc)
    return {"type": type(exc).__name__, "message": str(exc)}


def internal_error(exc: BaseException) -> dict:
    """A bug, as a client sees it: what kind, on one line; the log has the traceback."""
    first = (str(exc).splitlines() or [""])[0][:200]
    return {"type": "InternalError",
            "message": f"internal error in the supervisor ({type(exc).__name__}"
                       f"{': ' + first if first else ''}; its log has the traceback)"}


class Operations:
    """The operations of one supervisor, and the per-stack locks that keep them one at a time."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.by_id: dict[str, Operation] = {}
        self.stack_locks: dict[str, threading.Lock] = {}

    def get(self, op_id: str) -> Operation | None:
        return self.by_id.get(op_id)

    def running(self) -> bool:
        return any(op.status is OperationStatus.RUNNING for op in self.by_id.values())

    def busy(self, stack: str) -> bool:
        lock = self.stack_locks.get(stack)
        return bool(lock and lock.locked())

    def views(self) -> list[dict]:
        return [op.view() for op in self.by_id.values()]

    def start(self, kind: str, stack: str | None, fn: Callable[[], Any]) -> Operation:
        op = Operation(kind, stack, started_at=self.clock.now())
        lock = None
        if stack is not None:
            lock = self.stack_locks.setdefault(stack, threading.Lock())
            if not lock.acquire(blocking=False):
                running = next((o for o in self.by_id.values() if o.stack == stack
                                and o.status is OperationStatus.RUNNING), None)
                age = f"{self.clock.now() - running.started_at:.0f}s" if running else "?"
                raise errors.LockedError(
                    f"stack {stack} is busy with {running.kind if running else 'an operation'}"
                    f" ({running.id if running else '?'}, running for {age})",
                    hint="wait for it to finish, or follow it with 'deployer status'")
        self.by_id[op.id] = op

        def run() -> None:
            try:
                op.result = fn()
                op.status = OperationStatus.SUCCEEDED
            except BaseException as exc:  # reported to the client, never lost
                op.status = OperationStatus.FAILED
                op.error = error_payload(exc)
                log.error("operation.failed", op=op.id, kind=kind, reason=str(exc),
                          traceback=None if isinstance(exc, errors.DeployerError)
                          else traceback.format_exc())
            finally:
                if lock:
                    lock.release()

        threading.Thread(target=run, name=f"{kind}-{op.id}", daemon=True).start()
        return op

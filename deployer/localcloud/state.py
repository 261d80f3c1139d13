"""The local cloud's state: plain objects with explicit lifecycle states, persisted on disk.

Like moto's backends, state is separate from the code that advances it. One JSON file holds
everything; writes are atomic (write, fsync, rename) so a SIGKILL at any moment leaves
either the old or the new state, never half of one. The supervisor is the only writer; any
CLI process may read.
"""

from __future__ import annotations

import json
import os
import threading
import time
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from deployer.base.clock import Clock
from deployer.base.errors import StateError
from deployer.cloud.port import StackStatus

STATE_FILE_MODE = 0o600


class InstanceState(StrEnum):
    """EC2 instance states (the subset a local process can be in)."""

    PENDING = "pending"
    RUNNING = "running"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"


class LifecycleState(StrEnum):
    """Auto Scaling lifecycle states of an instance in a group."""

    PENDING = "Pending"
    IN_SERVICE = "InService"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"


class HealthStatus(StrEnum):
    """An instance's Auto Scaling health status."""

    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"


class SignalStatus(StrEnum):
    """What cfn-signal said for an instance (``-e 0`` is SUCCESS)."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


class ImageState(StrEnum):
    """EC2 image states (the subset the local cloud's images go through)."""

    PENDING = "pending"
    AVAILABLE = "available"
    DEREGISTERED = "deregistered"


class InstanceRecord(BaseModel):
    instance_id: str
    stack: str
    group: str  # logical id of the Auto Scaling group
    root: str
    port: int
    pid: int | None = None
    state: InstanceState = InstanceState.PENDING
    lifecycle: LifecycleState = LifecycleState.PENDING
    health: HealthStatus = HealthStatus.HEALTHY
    image_id: str | None = None
    launch_template_version: str = ""
    release: str | None = None
    launched_at: float = Field(default_factory=time.time)
    in_service_at: float | None = None
    terminated_at: float | None = None
    signal: SignalStatus | None = None  # once cfn-signal was received for this instance
    signal_reason: str = ""


class ImageRecord(BaseModel):
    image_id: str
    name: str
    root: str
    state: ImageState = ImageState.AVAILABLE
    size_bytes: int = 0
    files: int = 0
    created_at: float = Field(default_factory=time.time)
    tags: dict[str, str] = Field(default_factory=dict)


class StackEvent(BaseModel):
    seq: int
    at: float
    resource: str
    resource_type: str
    status: str
    reason: str = ""


class StackRecord(BaseModel):
    name: str
    strategy: str
    template: str
    status: StackStatus
    status_reason: str = ""
    parameters: dict[str, str] = Field(default_factory=dict)
    previous_parameters: dict[str, str] = Field(default_factory=dict)
    noecho: list[str] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)
    load_balancer_port: int | None = None
    database: dict[str, str | int] = Field(default_factory=dict)
    # Generated secrets (Secrets Manager, database passwords): never shown by status.
    secrets: dict[str, str] = Field(default_factory=dict)
    launch_template_version: str = ""
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    events: list[StackEvent] = Field(default_factory=list)


class CloudState(BaseModel):
    stacks: dict[str, StackRecord] = Field(default_factory=dict)
    instances: dict[str, InstanceRecord] = Field(default_factory=dict)
    images: dict[str, ImageRecord] = Field(default_factory=dict)
    ssm: dict[str, str] = Field(default_factory=dict)

    def stack_for(self, strategy: str) -> StackRecord | None:
        return next((s for s in self.stacks.values() if s.strategy == strategy), None)

    def live_instances(self, stack: str) -> list[InstanceRecord]:
        return [i for i in self.instances.values()
                if i.stack == stack and i.state is not InstanceState.TERMINATED]


class Store:
    """The one place state is loaded and saved. Thread-safe inside the supervisor."""

    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        self.path = path
        self.clock = clock or Clock()
        self.lock = threading.RLock()
        self.state = self._load()

    def _load(self) -> CloudState:
        return self.read(self.path)

    @classmethod
    def read(cls, path: Path) -> CloudState:
        """A read-only snapshot, for processes other than the supervisor.

        A file that is not a state file (truncated, edited by hand, another program's) is a
        :class:`StateError` naming the file and the first thing wrong in it.
        """
        try:
            text = path.read_text()
        except FileNotFoundError:
            return CloudState()
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"cannot read the local cloud's state {path}: {exc}") from None
        try:
            return CloudState.model_validate_json(text)
        except ValidationError as exc:
            found = exc.errors()
            where = ".".join(str(p) for p in found[0]["loc"]) if found else ""
            what = (str(found[0]["msg"]).splitlines() or ["invalid"])[0][:160] if found \
                else "invalid"
            raise StateError(f"the local cloud's state {path} is corrupt: "
                             f"{where + ': ' if where else ''}{what}",
                             hint="restore it, or move it away to start with no "
                                  "environments; their processes are then not stopped"
                             ) from None

    def save(self) -> None:
        with self.lock:
            data = self.state.model_dump_json(indent=1)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            # The cloud's own storage holds its secrets (generated database passwords, API
            # keys), as AWS's does: readable by the owner only, from the first byte written.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, STATE_FILE_MODE)
            try:
                os.fchmod(fd, STATE_FILE_MODE)
                with open(fd, "w") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                tmp.replace(self.path)
            except BaseException:
                # A full disk: the old state stays whole, and no half-written copy is left.
                tmp.unlink(missing_ok=True)
                raise

    def add_event(self, stack: StackRecord, resource: str, resource_type: str, status: str,
                  reason: str = "") -> StackEvent:
        with self.lock:
            event = StackEvent(seq=len(stack.events) + 1, at=self.clock.now(), resource=resource,
                               resource_type=resource_type, status=status, reason=reason)
            stack.events.append(event)
            self.save()
            return event


def dump_json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), indent=2)

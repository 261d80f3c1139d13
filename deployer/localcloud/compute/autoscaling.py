"""The Auto Scaling group: desired capacity, health replacement, rolling updates.

Reproduces CloudFormation's AutoScalingRollingUpdate (AWS's UpdatePolicy reference): batches of
MaxBatchSize, never fewer than MinInstancesInService in service (the group grows up to
MaxSize to launch replacements first when it must), WaitOnResourceSignals with PauseTime as
the per-batch signal timeout, MinSuccessfulInstancesPercent, and a failed batch failing the
update so the stack rolls back to the previous launch template.

Terminating an instance that is registered with the target group deregisters it first and
waits out the deregistration delay, as the group does with ELB connection draining.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from deployer.base import logs
from deployer.base.clock import Clock
from deployer.base.errors import CloudError
from deployer.localcloud.compute.instances import (
    ImageStore,
    InstanceLauncher,
    free_port,
    is_instance_alive,
    new_id,
)
from deployer.localcloud.elb.targetgroup import TargetHealthState
from deployer.localcloud.state import (
    HealthStatus,
    InstanceRecord,
    InstanceState,
    LifecycleState,
    SignalStatus,
    StackRecord,
    Store,
)

log = logs.get_logger(component="autoscaling")


@dataclass(frozen=True)
class LaunchTemplate:
    """What a new instance is made from. ``version`` changes whenever the content does."""

    image_id: str | None
    user_data: str | None

    @property
    def version(self) -> str:
        digest = hashlib.sha256(f"{self.image_id}\0{self.user_data}".encode()).hexdigest()
        return digest[:12]


class HealthCheckType(StrEnum):
    """Whose health checks can make the group replace an instance."""

    EC2 = "EC2"
    ELB = "ELB"


@dataclass(frozen=True)
class GroupSettings:
    min_size: int
    max_size: int
    desired_capacity: int
    health_check_type: HealthCheckType = HealthCheckType.EC2
    health_check_grace_period_s: float = 0.0


@dataclass(frozen=True)
class RollingUpdatePolicy:
    max_batch_size: int = 1
    min_instances_in_service: int = 0
    min_successful_instances_percent: int = 100
    pause_time_s: float = 0.0
    wait_on_resource_signals: bool = False
    suspend_processes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreationPolicy:
    count: int = 1
    timeout_s: float = 300.0
    min_successful_instances_percent: int = 100


def _failures(records: list[InstanceRecord]) -> str:
    """Why the instances that signalled FAILURE failed, from their console output."""
    said = [f"{r.instance_id}: {r.signal_reason}" for r in records
            if r.signal is SignalStatus.FAILURE and r.signal_reason]
    return f" [{'; '.join(said)}]" if said else ""


def _victims(old: list[InstanceRecord], count: int,
             is_alive: Callable[[InstanceRecord], bool]) -> list[InstanceRecord]:
    """Which old instances a batch retires: dead ones (crashed, killed) first, then unhealthy
    ones, oldest first. A dead instance still registered is what users hit as 502s."""
    return sorted(old, key=lambda i: (is_alive(i), i.health is HealthStatus.HEALTHY,
                                      i.launched_at))[:count]


class UpdateFailed(CloudError):
    """A batch did not succeed: the stack update must roll back."""


class TrafficPort(Protocol):
    """How the group talks to its target group (the local load balancer)."""

    def register(self, instance_id: str, port: int) -> None: ...
    def deregister(self, instance_id: str) -> None: ...
    def wait_drained(self, instance_id: str, timeout: float) -> bool: ...
    def state_of(self, instance_id: str) -> TargetHealthState | None: ...


class AutoScalingGroup:
    def __init__(self, *, stack: StackRecord, logical_id: str, settings: GroupSettings,
                 store: Store, launcher: InstanceLauncher, images: ImageStore,
                 traffic: TrafficPort | None, instance_env: Callable[[InstanceRecord], dict],
                 before_in_service: Callable[[InstanceRecord], None] | None = None,
                 clock: Clock | None = None,
                 is_alive: Callable[[InstanceRecord], bool] = is_instance_alive) -> None:
        self.stack = stack
        self.logical_id = logical_id
        self.settings = settings
        self.store = store
        self.launcher = launcher
        self.images = images
        self.traffic = traffic
        self.instance_env = instance_env
        self.before_in_service = before_in_service
        self.clock = clock or Clock()
        # Whether an instance's processes still run (a fake in unit tests: no processes).
        self.is_alive = is_alive
        self.suspended: set[str] = set()
        self.busy = threading.Lock()  # one activity (create, update, replacement) at a time
        self.launch_template: LaunchTemplate | None = None

    # -- views ------------------------------------------------------------------------------
    def instances(self) -> list[InstanceRecord]:
        with self.store.lock:
            return [i for i in self.store.state.instances.values()
                    if i.stack == self.stack.name and i.group == self.logical_id
                    and i.state is not InstanceState.TERMINATED
                    and i.lifecycle is not LifecycleState.TERMINATING]

    def _event(self, status: str, reason: str = "", resource: str | None = None) -> None:
        self.store.add_event(self.stack, resource or self.logical_id,
                             "AWS::AutoScaling::AutoScalingGroup", status, reason)

    # -- instance lifecycle -----------------------------------------------------------------
    def launch(self, template: LaunchTemplate, release: str | None) -> InstanceRecord:
        image = None
        if template.image_id:
            image = self.images.require(self.store.state.images, template.image_id)
        record = InstanceRecord(
            instance_id=new_id("i"), stack=self.stack.name, group=self.logical_id,
            root="", port=free_port(), image_id=template.image_id,
            launch_template_version=template.version, release=release,
            launched_at=self.clock.now(),
        )
        record.root = str(self.launcher.root_of(record.instance_id))
        with self.store.lock:
            self.store.state.instances[record.instance_id] = record
            self.store.save()
        self._event("LAUNCHING", f"Launching a new EC2 instance: {record.instance_id}")
        self.launcher.prepare_root(record, image)
        record.pid = self.launcher.start(record, template.user_data, self.instance_env(record))
        record.state = InstanceState.RUNNING
        self.store.save()
        if self.before_in_service:
            self.before_in_service(record)
        record.lifecycle = LifecycleState.IN_SERVICE
        record.in_service_at = self.clock.now()
        self.store.save()
        if self.traffic:
            self.traffic.register(record.instance_id, record.port)
        return record

    def terminate(self, record: InstanceRecord, reason: str) -> None:
        record.lifecycle = LifecycleState.TERMINATING
        self.store.save()
        self._event("TERMINATING", f"Terminating EC2 instance {record.instance_id}: {reason}")
        if self.traffic and self.traffic.state_of(record.instance_id) is not None:
            self.traffic.deregister(record.instance_id)
            # Connection draining: the group waits for the target group's deregistration delay.
            self.traffic.wait_drained(record.instance_id, timeout=3700)
        self.launcher.terminate(record)
        self.launcher.delete_root(record)  # the root volume goes with the instance
        record.lifecycle = LifecycleState.TERMINATED
        self.store.save()

    # -- create (CreationPolicy) ------------------------------------------------------------
    def create(self, template: LaunchTemplate, release: str | None,
               policy: CreationPolicy | None) -> None:
        with self.busy:
            self._create(template, release, policy)

    def _create(self, template: LaunchTemplate, release: str | None,
                policy: CreationPolicy | None) -> None:
        self.launch_template = template
        launched = [self.launch(template, release) for _ in range(self.settings.desired_capacity)]
        if policy is None:
            return
        needed = policy.count
        ok, failed = self._wait_signals(launched, needed, policy.timeout_s)
        if ok < needed:
            raise UpdateFailed(
                f"Received {ok} SUCCESS signal(s) out of {needed}"
                + (f" and {failed} FAILURE signal(s)" if failed else "")
                + f" within {policy.timeout_s:g}s (CreationPolicy)" + _failures(launched))

    def _wait_signals(self, records: list[InstanceRecord], needed: int,
                      timeout_s: float) -> tuple[int, int]:
        """Wait until ``needed`` SUCCESS signals, a failure makes it impossible, or timeout."""
        deadline = self.clock.monotonic() + timeout_s
        while True:
            with self.store.lock:
                ok = sum(1 for r in records if r.signal is SignalStatus.SUCCESS)
                failed = sum(1 for r in records if r.signal is SignalStatus.FAILURE)
            if ok >= needed or len(records) - failed < needed or \
                    self.clock.monotonic() >= deadline:
                return ok, failed
            self.clock.sleep(0.1)

    # -- rolling update ---------------------------------------------------------------------
    def rolling_update(self, new: LaunchTemplate, release: str | None,
                       policy: RollingUpdatePolicy) -> None:
        """Replace every instance not on ``new``; raise UpdateFailed if a batch fails."""
        with self.busy:
            self.launch_template = new
            self.suspended = set(policy.suspend_processes)
            try:
                self._roll(new, release, policy)
            finally:
                self.suspended = set()

    def _roll(self, new: LaunchTemplate, release: str | None, policy: RollingUpdatePolicy) -> None:
        desired = self.settings.desired_capacity
        batch_no = 0
        while True:
            current = self.instances()
            old = [i for i in current if i.launch_template_version != new.version]
            if not old:
                break
            batch_no += 1
            batch = min(policy.max_batch_size, len(old))
            in_service = len(current)
            # Launch first when terminating a batch would leave too few in service.
            launch_first = in_service - batch < policy.min_instances_in_service
            if launch_first:
                room = self.settings.max_size - in_service
                if room <= 0:
                    raise UpdateFailed(
                        f"cannot keep MinInstancesInService={policy.min_instances_in_service}"
                        f" with MaxSize={self.settings.max_size}: no room to launch first")
                batch = min(batch, room)
            how = "launch then terminate" if launch_first else "terminate then launch"
            self._event("UPDATE_IN_PROGRESS",
                        f"Rolling update batch {batch_no}: replacing {batch} instance(s)"
                        f" ({how})")
            count = batch
            if not launch_first:
                for victim in _victims(old, batch, self.is_alive):
                    self.terminate(victim, "rolling update")
                # Replace only up to the desired capacity: a rollback that retires instances
                # of a failed batch needs no replacements for them.
                count = min(batch, max(0, desired - len(self.instances())))
            fresh = [self.launch(new, release) for _ in range(count)]
            self._await_batch(fresh, policy, batch_no)
            if launch_first:
                # Chosen now, not before the launch: one that died meanwhile goes first.
                still_old = [i for i in self.instances()
                             if i.launch_template_version != new.version]
                for victim in _victims(still_old, batch, self.is_alive):
                    self.terminate(victim, "rolling update")
        # Back to the desired capacity (launch-first may have left the group above it).
        surplus = len(self.instances()) - desired
        order = sorted(self.instances(), key=lambda i: (
            i.launch_template_version == new.version, i.health is HealthStatus.HEALTHY,
            i.launched_at))
        for extra in order[:max(0, surplus)]:
            self.terminate(extra, "scale in to desired capacity")

    def _await_batch(self, fresh: list[InstanceRecord], policy: RollingUpdatePolicy,
                     batch_no: int) -> None:
        if not fresh:
            return
        if not policy.wait_on_resource_signals:
            self.clock.sleep(policy.pause_time_s)
            return
        needed = math.ceil(len(fresh) * policy.min_successful_instances_percent / 100)
        ok, failed = self._wait_signals(fresh, needed, policy.pause_time_s)
        if ok < needed:
            reason = (f"Received {ok} SUCCESS signal(s) out of {len(fresh)}"
                      + (f" and {failed} FAILURE signal(s)" if failed else "")
                      + f"; unable to satisfy {policy.min_successful_instances_percent}%"
                      f" MinSuccessfulInstancesPercent requirement within PauseTime"
                      f" {policy.pause_time_s:g}s (batch {batch_no})")
            raise UpdateFailed(reason + _failures(fresh))

    # -- health (runs every second from the supervisor) -------------------------------------
    def check_health(self) -> None:
        if not self.busy.acquire(blocking=False):
            return  # an update or create is replacing instances itself
        try:
            for record in self.instances():
                if record.lifecycle is not LifecycleState.IN_SERVICE:
                    continue
                reason = self._unhealthy_reason(record)
                if reason is None:
                    continue
                record.health = HealthStatus.UNHEALTHY
                self.store.save()
                if "ReplaceUnhealthy" in self.suspended or "HealthCheck" in self.suspended:
                    continue
                self._event("UNHEALTHY", f"{record.instance_id}: {reason}")
                self.terminate(record, reason)
                if self.launch_template and len(self.instances()) < self.settings.desired_capacity:
                    self.launch(self.launch_template, record.release)
        finally:
            self.busy.release()

    def _unhealthy_reason(self, record: InstanceRecord) -> str | None:
        if not self.is_alive(record):
            return "instance stopped (EC2 status check failed)"
        if self.settings.health_check_type is not HealthCheckType.ELB or not self.traffic:
            return None
        since = self.clock.now() - (record.in_service_at or record.launched_at)
        if since < self.settings.health_check_grace_period_s:
            return None
        if self.traffic.state_of(record.instance_id) is TargetHealthState.UNHEALTHY:
            return "failed ELB health checks"
        return None


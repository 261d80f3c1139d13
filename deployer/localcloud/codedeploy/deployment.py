"""One CodeDeploy deployment across its instances, batch by batch, and its verdict.

The service (:mod:`.service`) keeps applications, groups and the deployments' records; this
module runs one of them: the deployment order, batches as large as the deployment config
allows, the agent on each instance of a batch at once, and the minimum healthy hosts rule
that decides success. It reaches the service only through :class:`DeploymentBook`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from deployer.base import logs
from deployer.base.clock import Clock
from deployer.base.errors import CloudError
from deployer.cloud.port import OnEvent
from deployer.localcloud.codedeploy.agent import (
    DeploymentSpec,
    InstanceHandle,
    LifecycleEventRecord,
    LifecycleEventStatus,
    Report,
    TrafficControl,
    lifecycle_events,
)
from deployer.localcloud.codedeploy.model import (
    BatchPlan,
    Deployment,
    DeploymentConfig,
    DeploymentCreator,
    DeploymentErrorCode,
    DeploymentGroup,
    DeploymentStatus,
    ErrorInformation,
    Fleet,
    InstanceHealth,
    InstanceStatus,
    InstanceTarget,
    RevisionRecord,
    deployment_order,
)

log = logs.get_logger(component="codedeploy")


class InstanceAgent(Protocol):
    """The CodeDeploy agent on one instance: runs a deployment's lifecycle events there."""

    def run(self, spec: DeploymentSpec, *, traffic: TrafficControl | None, report: Report,
            stop_requested: Callable[[], bool]) -> bool: ...


AgentFactory = Callable[[InstanceHandle], InstanceAgent]


class DeploymentBook(Protocol):
    """What a deployment run needs of the service that keeps the records."""

    _lock: threading.RLock
    _deployments: dict[str, Deployment]
    fleet: Fleet
    clock: Clock
    agent: AgentFactory

    def _group(self, application_name: str, name: str) -> DeploymentGroup: ...
    def deployment_config(self, name: str) -> DeploymentConfig: ...
    def _save(self, deployment: Deployment) -> None: ...
    def _save_state(self) -> None: ...
    def _emit(self, on_event: OnEvent | None, resource: str, status: str,
              reason: str = "") -> None: ...
    def _instance_lock(self, instance_id: str) -> threading.Lock: ...


class DeploymentRun:
    """One deployment across its instances, batch by batch."""

    def __init__(self, service: DeploymentBook, deployment_id: str,
                 instances: Sequence[InstanceHandle] | None, on_event: OnEvent | None) -> None:
        self.service = service
        self.lock = service._lock
        self.deployment = service._deployments[deployment_id]
        self.on_event = on_event
        self.instances = instances
        self.failures: list[str] = []  # "<instance>: <event>: <why>", in the order they failed
        self.log = log.bind(deployment=deployment_id)

    def emit(self, resource: str, status: str, reason: str = "") -> None:
        self.service._emit(self.on_event, resource, status, reason)

    def save(self) -> None:
        self.service._save(self.deployment)

    def execute(self) -> None:
        d = self.deployment
        with self.lock:
            group = self.service._group(d.application_name, d.deployment_group_name)
            group_snapshot = group.model_copy(deep=True)
            config = self.service.deployment_config(d.deployment_config_name)
            d.status = DeploymentStatus.IN_PROGRESS
            d.started_at = self.service.clock.now()
            self.save()
        self.emit(d.deployment_id, d.status.value, f"{d.revision.describe()} to "
                                                   f"{d.deployment_group_name}")
        instances = list(self.instances if self.instances is not None
                         else self.service.fleet.instances(group_snapshot))
        traffic = None
        if group_snapshot.target_group is not None:
            traffic = self.service.fleet.traffic_control(group_snapshot)
            if traffic is None:
                raise CloudError(f"deployment group {d.deployment_group_name} names target group "
                                 f"{group_snapshot.target_group}, but the fleet has no load "
                                 "balancer for it")
        instances = deployment_order(instances, group_snapshot)
        events = lifecycle_events(traffic is not None)
        with self.lock:
            d.load_balancer = traffic is not None
            d.instances = {i.instance_id: InstanceTarget(
                instance_id=i.instance_id,
                lifecycle_events=[LifecycleEventRecord(event=e) for e in events])
                for i in instances}
            self.save()
        plan = BatchPlan(config, len(instances))
        if not instances:
            return self.finish(DeploymentStatus.FAILED, DeploymentErrorCode.NO_INSTANCES,
                               "the deployment group has no instances to deploy to")
        if not plan.satisfiable:
            return self.finish(DeploymentStatus.FAILED,
                               DeploymentErrorCode.HEALTH_CONSTRAINTS_INVALID,
                               f"{config.name} needs {plan.minimum} healthy instances of "
                               f"{len(instances)}, so no instance can be taken offline")
        pending = list(instances)
        failed = succeeded = 0
        while pending:
            if d.stop_requested:
                return self.finish_stopped()
            size = plan.batch_size(failed)
            if size == 0:
                return self.finish(DeploymentStatus.FAILED, DeploymentErrorCode.HEALTH_CONSTRAINTS,
                                   f"{failed} instance(s) failed; deploying to more would leave "
                                   f"fewer than the {plan.minimum} healthy instances "
                                   f"{config.name} requires")
            batch, pending = pending[:size], pending[size:]
            results = self.run_batch(batch, traffic)
            succeeded += sum(results)
            failed += len(results) - sum(results)
        if d.stop_requested:
            return self.finish_stopped()
        if plan.succeeded(succeeded):
            return self.finish(DeploymentStatus.SUCCEEDED, None, "")
        return self.finish(DeploymentStatus.FAILED, DeploymentErrorCode.HEALTH_CONSTRAINTS,
                           f"{succeeded} of {len(instances)} instances succeeded; {config.name} "
                           f"needs at least {max(plan.minimum, 1)}")

    def run_batch(self, batch: list[InstanceHandle], traffic: TrafficControl | None) -> list[bool]:
        results: dict[str, bool] = {}
        threads = [threading.Thread(target=self.run_instance, args=(i, traffic, results),
                                    name=f"codedeploy-{i.instance_id}", daemon=True)
                   for i in batch]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [results.get(i.instance_id, False) for i in batch]

    def run_instance(self, instance: InstanceHandle, traffic: TrafficControl | None,
                     results: dict[str, bool]) -> None:
        d = self.deployment
        target_id = instance.instance_id
        with self.lock:
            target = d.instances[target_id]
            target.status = InstanceStatus.IN_PROGRESS
            target.started_at = self.service.clock.now()
            self.save()
        self.emit(f"{d.deployment_id}/{target_id}", InstanceStatus.IN_PROGRESS.value)
        spec = DeploymentSpec(deployment_id=d.deployment_id,
                              application_name=d.application_name,
                              deployment_group_name=d.deployment_group_name,
                              deployment_group_id=d.deployment_group_id, revision=d.revision,
                              ignore_application_stop_failures=d.ignore_application_stop_failures)

        def report(record: LifecycleEventRecord) -> None:
            with self.lock:
                events = target.lifecycle_events
                index = next(i for i, r in enumerate(events) if r.event is record.event)
                events[index] = record
                self.save()
            if record.status is not LifecycleEventStatus.PENDING:
                reasons = [record.diagnostics.message if record.diagnostics else "", record.note]
                reason = " - ".join(r for r in reasons if r)
                self.emit(f"{d.deployment_id}/{target_id}/{record.event.value}",
                          record.status.value, reason)

        agent = self.service.agent(instance)
        try:
            with self.service._instance_lock(target_id):
                ok = agent.run(spec, traffic=traffic, report=report,
                               stop_requested=lambda: d.stop_requested)
        except Exception as exc:
            self.log.exception("agent crashed", instance=target_id)
            ok = False
            reason = str(exc)
        else:
            reason = self.failure_reason(target) if not ok else ""
        results[target_id] = ok
        with self.lock:
            if not ok:
                self.failures.append(f"{target_id}: {reason}")
            target.status = InstanceStatus.SUCCEEDED if ok else InstanceStatus.FAILED
            target.ended_at = self.service.clock.now()
            group = self.service._group(d.application_name, d.deployment_group_name)
            health = group.instance_health.setdefault(target_id, InstanceHealth())
            health.healthy = ok
            health.revision = d.revision.identity if ok else None
            self.service._save_state()
            self.save()
        self.emit(f"{d.deployment_id}/{target_id}", target.status.value, reason)

    @staticmethod
    def failure_reason(target: InstanceTarget) -> str:
        for record in target.lifecycle_events:
            if record.status is LifecycleEventStatus.FAILED and record.diagnostics and \
                    not record.note:
                return f"{record.event.value}: {record.diagnostics.message}"
        return "stopped" if any(r.status is LifecycleEventStatus.SKIPPED
                                for r in target.lifecycle_events) else ""

    def finish_stopped(self) -> None:
        self.finish(DeploymentStatus.STOPPED, DeploymentErrorCode.MANUAL_STOP,
                    "the deployment was stopped on request")

    def finish(self, status: DeploymentStatus, code: DeploymentErrorCode | None,
               message: str) -> None:
        d = self.deployment
        if code is DeploymentErrorCode.HEALTH_CONSTRAINTS and self.failures:
            message += f" (first failure: {self.failures[0]})"
        skipped = []
        with self.lock:
            for target in d.instances.values():
                if target.status is InstanceStatus.PENDING:
                    skipped.append(target.instance_id)
                    target.status = InstanceStatus.SKIPPED
                    for record in target.lifecycle_events:
                        record.status = LifecycleEventStatus.SKIPPED
                        record.note = "the deployment ended before this instance's turn"
            d.status = status
            d.error = ErrorInformation(code=code, message=message) if code else None
            d.ended_at = self.service.clock.now()
            group = self.service._group(d.application_name, d.deployment_group_name)
            self.record_revision(group, status)
            if status is DeploymentStatus.SUCCEEDED and d.creator is not \
                    DeploymentCreator.AUTOSCALING:
                group.last_successful_revision = d.revision
                group.last_successful_deployment_id = d.deployment_id
            self.service._save_state()
            self.save()
        for instance_id in skipped:
            self.emit(f"{d.deployment_id}/{instance_id}", InstanceStatus.SKIPPED.value,
                      "the deployment ended before this instance's turn")
        self.log.info("deployment finished", status=status.value, reason=message)
        self.emit(d.deployment_id, status.value, message)

    def record_revision(self, group: DeploymentGroup, status: DeploymentStatus) -> None:
        d = self.deployment
        now = self.service.clock.now()
        for record in group.revisions:
            if record.revision.identity == d.revision.identity:
                record.last_used_at = now
                record.last_status = status
                return
        group.revisions.append(RevisionRecord(revision=d.revision, first_used_at=now,
                                              last_used_at=now, last_status=status))

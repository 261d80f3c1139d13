"""CodeDeploy inside the local cloud: the service's fleet is the stacks' Auto Scaling groups.

The deployment groups a template declares are created with the stack; their instances are
the in-service instances of the groups they target, their traffic control is the stack's
target group, and an instance the group launches later gets the last successful revision
before it goes in service, as with CodeDeploy's Auto Scaling lifecycle hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deployer.base import errors
from deployer.cloud.port import Artifact, DeploymentResult, Event
from deployer.localcloud.codedeploy.model import AutoRollbackEvent, DeploymentStatus
from deployer.localcloud.codedeploy.service import (
    AutoRollbackConfiguration,
    CodeDeployService,
    DeploymentGroup,
    MinimumHealthyHosts,
    MinimumHealthyHostsType,
    Revision,
)
from deployer.localcloud.context import CloudContext
from deployer.localcloud.operations import Operation
from deployer.localcloud.stack import StackRuntime
from deployer.localcloud.state import InstanceRecord, InstanceState, LifecycleState

HEALTHY_TIMEOUT_S = 600.0


@dataclass
class Handle:
    instance_id: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)


class TargetGroupTraffic:
    """BlockTraffic and AllowTraffic against the stack's load balancer."""

    def __init__(self, runtime: StackRuntime) -> None:
        self.runtime = runtime

    def _record(self, instance_id: str) -> InstanceRecord:
        record = self.runtime.store.state.instances.get(instance_id)
        if record is None:
            raise errors.NotFound(f"instance {instance_id} is not in the stack")
        return record

    def block(self, instance_id: str) -> None:
        lb = self.runtime.lb
        if lb and instance_id in lb.states():
            lb.deregister(instance_id)
            lb.wait_drained(instance_id, timeout=3700)

    def allow(self, instance_id: str) -> None:
        lb = self.runtime.lb
        if lb is None:
            return
        if instance_id not in lb.states():
            lb.register(instance_id, self._record(instance_id).port)
        if not lb.wait_healthy(instance_id, timeout=HEALTHY_TIMEOUT_S):
            raise errors.CloudError(f"instance {instance_id} did not become healthy in the "
                                    f"target group within {HEALTHY_TIMEOUT_S:g}s")


class LocalCodeDeploy:
    """CodeDeploy on the cloud's shared parts; ``stack`` finds a running stack by name."""

    def __init__(self, ctx: CloudContext,
                 stack: Callable[[str], StackRuntime | None]) -> None:
        self.ctx = ctx
        self.stack = stack
        self.service = CodeDeployService(ctx.dir, self, clock=ctx.clock)

    # -- Fleet ------------------------------------------------------------------------------
    def _runtime_of(self, group: DeploymentGroup) -> StackRuntime:
        stack = group.auto_scaling_groups[0].split("/", 1)[0] if group.auto_scaling_groups \
            else ""
        runtime = self.stack(stack)
        if runtime is None:
            raise errors.NotFound(f"deployment group {group.name} targets no running stack")
        return runtime

    def instances(self, group: DeploymentGroup) -> list[Handle]:
        runtime = self._runtime_of(group)
        wanted = {key.split("/", 1)[1] for key in group.auto_scaling_groups}
        return [self.handle(runtime, r) for r in self.ctx.store.state.live_instances(
                    runtime.record.name)
                if r.group in wanted and r.state is InstanceState.RUNNING
                and r.lifecycle is LifecycleState.IN_SERVICE]

    def traffic_control(self, group: DeploymentGroup) -> TargetGroupTraffic | None:
        return TargetGroupTraffic(self._runtime_of(group)) if group.target_group else None

    def handle(self, runtime: StackRuntime, record: InstanceRecord) -> Handle:
        return Handle(record.instance_id, Path(record.root), runtime.instance_env(record))

    # -- stack lifecycle --------------------------------------------------------------------
    def register(self, runtime: StackRuntime, model) -> None:
        stack = runtime.record.name
        for spec in model.deployment_configs.values():
            try:
                self.service.deployment_config(spec.name)
            except errors.NotFound:
                self.service.create_deployment_config(spec.name, MinimumHealthyHosts(
                    type=MinimumHealthyHostsType(spec.minimum_healthy_hosts_type.value),
                    value=spec.minimum_healthy_hosts_value))
        for app in model.codedeploy_applications.values():
            self.service.delete_application(app.name)  # a re-created stack starts afresh
            self.service.create_application(app.name)
        for spec in model.deployment_groups.values():
            with_traffic = spec.deployment_option == "WITH_TRAFFIC_CONTROL"
            rollback = AutoRollbackConfiguration(
                enabled=spec.auto_rollback.enabled,
                events=tuple(AutoRollbackEvent(e) for e in spec.auto_rollback.events) or
                (AutoRollbackEvent.DEPLOYMENT_FAILURE,))
            self.service.create_deployment_group(
                spec.application_name, spec.name,
                auto_scaling_groups=[f"{stack}/{g}" for g in spec.auto_scaling_groups],
                target_group=(f"{stack}/{spec.target_groups[0]}" if with_traffic and
                              spec.target_groups else None),
                deployment_config_name=spec.deployment_config_name, auto_rollback=rollback)

    def unregister(self, runtime: StackRuntime) -> None:
        if runtime.model is None:
            return
        for app in runtime.model.codedeploy_applications.values():
            self.service.delete_application(app.name)

    def _group_of(self, runtime: StackRuntime):
        if runtime.model is None or not runtime.model.deployment_groups:
            raise errors.ConfigError(f"stack {runtime.record.name} has no CodeDeploy deployment "
                                     "group", location=runtime.record.template)
        return next(iter(runtime.model.deployment_groups.values()))

    def before_in_service(self, runtime: StackRuntime, record: InstanceRecord) -> None:
        """An instance the group launched gets the last successful revision first."""
        if runtime.model is None:
            return
        for spec in runtime.model.deployment_groups.values():
            if record.group not in spec.auto_scaling_groups:
                continue
            result = self.service.deploy_to_new_instance(
                spec.application_name, spec.name, self.handle(runtime, record),
                on_event=self._to_stack(runtime))
            if result is not None and result.status != DeploymentStatus.SUCCEEDED:
                raise errors.CloudError(f"deployment to new instance {record.instance_id} "
                                        f"failed: {result.reason}")

    # -- deployments ------------------------------------------------------------------------
    def _to_stack(self, runtime: StackRuntime):
        def emit(event: Event) -> None:
            runtime.store.add_event(runtime.record, event.resource,
                                    "AWS::CodeDeploy::DeploymentGroup", event.status, event.reason)
        return emit

    def start_deployment(self, body: dict) -> Operation:
        runtime = self.stack(body["stack"])
        if runtime is None:
            raise errors.NotFound(f"stack {body['stack']} does not exist",
                                  hint="create it with 'deployer up --strategy ...'")
        spec = self._group_of(runtime)
        artifact = Artifact(**body["revision"])
        revision = Revision(bundle=self.ctx.artifacts.path_of(artifact), artifact=artifact)

        def deploy() -> dict:
            result: DeploymentResult = self.service.deploy(
                spec.application_name, spec.name, revision,
                ignore_application_stop_failures=bool(body.get("ignore_application_stop_failures")),
                on_event=self._to_stack(runtime))
            release = body.get("release")
            if release and result.status == DeploymentStatus.SUCCEEDED:
                for record in runtime.store.state.live_instances(runtime.record.name):
                    record.release = release
                runtime.record.parameters["EtherpadVersion"] = release
                runtime.store.save()
            return result.model_dump()

        return self.ctx.operations.start("deploy", runtime.record.name, deploy)

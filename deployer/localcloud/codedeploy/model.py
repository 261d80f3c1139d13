"""CodeDeploy's data: deployment configs and their minimum healthy hosts rule, deployment
groups, deployments and their instance targets. Plain pydantic models; the service in
:mod:`deployer.localcloud.codedeploy.service` is the one place that changes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Protocol

from pydantic import BaseModel, Field

from deployer.localcloud.codedeploy.agent import (
    InstanceHandle,
    LifecycleEventRecord,
    Revision,
    TrafficControl,
)


class MinimumHealthyHostsType(str, Enum):
    HOST_COUNT = "HOST_COUNT"
    FLEET_PERCENT = "FLEET_PERCENT"
    # Only CodeDeployDefault.OneAtATime has it (GetDeploymentConfig reports it with value 1);
    # a custom config cannot use it.
    MOST_CONCURRENCY = "MOST_CONCURRENCY"


class MinimumHealthyHosts(BaseModel):
    type: MinimumHealthyHostsType
    value: int


class DeploymentConfig(BaseModel):
    """How many instances must stay healthy, which sets batch sizes and the success rule.

    From the CodeDeploy API reference (MinimumHealthyHosts) and user guide (instance health):
    a percentage is converted to hosts at the start, rounding up; a deployment never takes
    the healthy count below the minimum, deploying to as many instances at once as it can
    without that risk; it succeeds if at least the minimum, and at least one instance,
    succeed. "With CodeDeployDefault.OneAtATime, CodeDeploy attempts to ensure that all
    instances but one are kept in a healthy state during the deployment ... it also means
    that if the deployment to the last instance fails, the overall deployment is still
    successful" (API_MinimumHealthyHosts), while "for deployment groups that contain only one
    instance, the overall deployment is successful only if deployment to the single instance
    is successful" (deployment-configurations). HalfAtATime is 50 % (batches of half rounded
    down, success if half rounded up succeed); AllAtOnce is 0 (all at once, one success).
    """

    name: str
    minimum_healthy_hosts: MinimumHealthyHosts

    def minimum_healthy(self, instances: int) -> int:
        mhh = self.minimum_healthy_hosts
        if mhh.type is MinimumHealthyHostsType.MOST_CONCURRENCY:
            return max(0, instances - mhh.value)
        if mhh.type is MinimumHealthyHostsType.FLEET_PERCENT:
            return math.ceil(instances * mhh.value / 100)
        return mhh.value

    def max_concurrency(self, instances: int) -> int:
        mhh = self.minimum_healthy_hosts
        if mhh.type is MinimumHealthyHostsType.MOST_CONCURRENCY:
            return mhh.value
        return instances


ONE_AT_A_TIME = DeploymentConfig(
    name="CodeDeployDefault.OneAtATime",
    minimum_healthy_hosts=MinimumHealthyHosts(type=MinimumHealthyHostsType.MOST_CONCURRENCY,
                                              value=1))
HALF_AT_A_TIME = DeploymentConfig(
    name="CodeDeployDefault.HalfAtATime",
    minimum_healthy_hosts=MinimumHealthyHosts(type=MinimumHealthyHostsType.FLEET_PERCENT,
                                              value=50))
ALL_AT_ONCE = DeploymentConfig(
    name="CodeDeployDefault.AllAtOnce",
    minimum_healthy_hosts=MinimumHealthyHosts(type=MinimumHealthyHostsType.HOST_COUNT,
                                              value=0))
PREDEFINED_CONFIGS = {c.name: c for c in (ONE_AT_A_TIME, HALF_AT_A_TIME, ALL_AT_ONCE)}


class BatchPlan:
    """The minimum healthy hosts rule applied to one deployment's instances."""

    def __init__(self, config: DeploymentConfig, instances: int) -> None:
        self.instances = instances
        self.minimum = config.minimum_healthy(instances)
        self.max_concurrency = config.max_concurrency(instances)

    @property
    def satisfiable(self) -> bool:
        return self.instances > 0 and self.minimum < self.instances

    def batch_size(self, failed: int) -> int:
        """How many instances may be taken offline next, given those that failed so far."""
        return max(0, min(self.max_concurrency, self.instances - failed - self.minimum))

    def succeeded(self, succeeded: int) -> bool:
        return succeeded >= max(self.minimum, 1)


# -- model -----------------------------------------------------------------------------------

class DeploymentStatus(str, Enum):
    CREATED = "Created"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"

    @property
    def done(self) -> bool:
        return self in (DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED,
                        DeploymentStatus.STOPPED)


class InstanceStatus(str, Enum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class DeploymentErrorCode(str, Enum):
    HEALTH_CONSTRAINTS = "HEALTH_CONSTRAINTS"
    HEALTH_CONSTRAINTS_INVALID = "HEALTH_CONSTRAINTS_INVALID"
    NO_INSTANCES = "NO_INSTANCES"
    MANUAL_STOP = "MANUAL_STOP"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class DeploymentCreator(str, Enum):
    USER = "user"
    AUTO_ROLLBACK = "autoRollback"
    AUTOSCALING = "autoscaling"  # a new instance of the Auto Scaling group


class AutoRollbackEvent(str, Enum):
    DEPLOYMENT_FAILURE = "DEPLOYMENT_FAILURE"
    # Accepted as AWS does; the local cloud has no CloudWatch alarms, so it never fires.
    DEPLOYMENT_STOP_ON_ALARM = "DEPLOYMENT_STOP_ON_ALARM"
    DEPLOYMENT_STOP_ON_REQUEST = "DEPLOYMENT_STOP_ON_REQUEST"


class AutoRollbackConfiguration(BaseModel):
    enabled: bool = False
    events: tuple[AutoRollbackEvent, ...] = (AutoRollbackEvent.DEPLOYMENT_FAILURE,)


class InstanceHealth(BaseModel):
    """What CodeDeploy knows of one instance of a group (instance and revision health)."""

    healthy: bool = False
    revision: str | None = None  # identity of the revision installed by its last success


class RevisionRecord(BaseModel):
    revision: Revision
    first_used_at: float
    last_used_at: float
    last_status: DeploymentStatus


class DeploymentGroup(BaseModel):
    application_name: str
    name: str
    group_id: str
    auto_scaling_groups: tuple[str, ...] = ()
    target_group: str | None = None  # set: deployments block and allow traffic
    deployment_config_name: str = ONE_AT_A_TIME.name
    auto_rollback: AutoRollbackConfiguration = Field(default_factory=AutoRollbackConfiguration)
    last_successful_revision: Revision | None = None
    last_successful_deployment_id: str | None = None
    revisions: list[RevisionRecord] = Field(default_factory=list)
    instance_health: dict[str, InstanceHealth] = Field(default_factory=dict)


class Application(BaseModel):
    name: str
    application_id: str
    created_at: float


class ErrorInformation(BaseModel):
    code: DeploymentErrorCode
    message: str


class InstanceTarget(BaseModel):
    instance_id: str
    status: InstanceStatus = InstanceStatus.PENDING
    lifecycle_events: list[LifecycleEventRecord]
    started_at: float | None = None
    ended_at: float | None = None


class Deployment(BaseModel):
    deployment_id: str
    application_name: str
    deployment_group_name: str
    deployment_group_id: str
    revision: Revision
    deployment_config_name: str
    creator: DeploymentCreator = DeploymentCreator.USER
    status: DeploymentStatus = DeploymentStatus.CREATED
    error: ErrorInformation | None = None
    ignore_application_stop_failures: bool = False
    load_balancer: bool = False
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    instances: dict[str, InstanceTarget] = Field(default_factory=dict)  # in deployment order
    stop_requested: bool = False
    rollback_deployment_id: str | None = None
    rollback_triggering_deployment_id: str | None = None
    rollback_message: str | None = None

    def instances_with(self, status: InstanceStatus) -> list[str]:
        return [i for i, t in self.instances.items() if t.status is status]


class Fleet(Protocol):
    """Where a deployment group's instances and load balancer come from (the Auto Scaling
    group and its target group, in the local cloud)."""

    def instances(self, group: DeploymentGroup) -> Sequence[InstanceHandle]: ...

    def traffic_control(self, group: DeploymentGroup) -> TrafficControl | None: ...


def deployment_order(instances: Sequence[InstanceHandle],
                     group: DeploymentGroup) -> list[InstanceHandle]:
    """CodeDeploy's order: unhealthy instances, then unknown, old and current revision health.

    An instance is healthy if its last deployment succeeded; its revision is current if that
    deployment installed the group's last successful revision (user guide: instance health).
    """
    current = group.last_successful_revision.identity if group.last_successful_revision else None

    def rank(instance: InstanceHandle) -> tuple[int, int]:
        health = group.instance_health.get(instance.instance_id, InstanceHealth())
        if health.revision is None:
            revision_rank = 0
        elif health.revision != current:
            revision_rank = 1
        else:
            revision_rank = 2
        return (1 if health.healthy else 0, revision_rank)

    return sorted(instances, key=rank)

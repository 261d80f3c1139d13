"""The floor: how fast a strategy's release could be, given its configuration and the app.

A rollout waits on three things it cannot skip: the app getting ready on an instance, the
load balancer's health checks seeing that, and the old instance draining. Everything else
(signals travelling, the cloud noticing, hooks starting, polling) is overhead. The floor
adds up only the unskippable parts, so ``actual / floor`` says how much a run spent on
overhead, and the parts say where a slow rollout's time went::

    floor      = prepare + batches × (app start + health check + drain)

    prepare      measured: the bake (packer), bundle + upload (codedeploy), 0 (cloudformation)
    batches      from the stack template: ceil(DesiredCapacity / MaxBatchSize) for a rolling
                 update; instances per CodeDeploy deployment config batch for in place
                 (OneAtATime: one at a time, HalfAtATime: half, AllAtOnce: all)
    app start    measured. Rolling update: the new instance's launch → healthy (boot, the
    + health     install for cloudformation, start, and the checks that see it), median over
      check      the new instances; of that, the health check share is at most
                 HealthCheckIntervalSeconds × checks needed (1 for a target that passes its
                 first check — ALB: a new target is healthy after one —, HealthyThresholdCount
                 for one that failed checks first, as the run's target health shows), the rest
                 is app start. In place: app start is the lifecycle events between
                 BlockTraffic and AllowTraffic (ApplicationStop .. ValidateService: stop,
                 copy, install, start, validate), health check the re-registration → healthy,
                 both median per instance.
    drain        deregistration_delay.timeout_seconds: the old target drains before it goes
                 (rolling update: before termination; in place: BlockTraffic).

Only measured parts and configured waits go in, so a run cannot beat its floor by more than
the spread of a median; every second above it is time the orchestration spent.
``actual`` is the measured prepare + rollout. Environment creation and the verify burst are
outside both: they are not the release.
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field

from deployer.base.errors import ConfigError
from deployer.report.rollout import RunMeasures, median

# Deployment configs CodeDeploy ships, as the share of instances one batch may take.
_BUILTIN_CONFIGS = {"CodeDeployDefault.OneAtATime": None, "CodeDeployDefault.HalfAtATime": 0.5,
                    "CodeDeployDefault.AllAtOnce": 1.0}


class RolloutModel(str, Enum):
    ROLLING_UPDATE = "rolling_update"  # new instances replace old ones (AutoScalingRollingUpdate)
    IN_PLACE = "in_place"  # CodeDeploy deploys onto the running instances


class FloorConfig(BaseModel):
    """The parts of a strategy's stack the floor needs."""

    model: RolloutModel
    instances: int
    batch_size: int
    batches: int
    batches_from: str  # where the batch count comes from, in the template's words
    health_check_interval_s: float
    healthy_threshold: int
    deregistration_delay_s: float


class Floor(BaseModel):
    model: RolloutModel
    batches: int
    batches_from: str
    prepare_s: float
    app_start_s: float
    health_check_s: float
    health_check_interval_s: float
    healthy_threshold: int
    checks_needed: int
    deregistration_delay_s: float
    per_batch_s: float
    rollout_floor_s: float
    floor_s: float
    actual_s: float
    rollout_actual_s: float
    ratio_to_floor: float | None
    rollout_ratio: float | None
    overhead_s: float
    notes: list[str] = Field(default_factory=list)


def _batch_size_codedeploy(config_name: str, instances: int, custom: dict) -> tuple[int, str]:
    if config_name in custom:
        spec = custom[config_name]
        minimum = (spec.minimum_healthy_hosts_value if spec.minimum_healthy_hosts_type.value ==
                   "HOST_COUNT" else math.ceil(instances * spec.minimum_healthy_hosts_value / 100))
        return max(1, instances - minimum), f"{config_name} (minimum healthy {minimum})"
    share = _BUILTIN_CONFIGS.get(config_name)
    if share is None:
        return 1, config_name
    return max(1, math.floor(instances * share)), config_name


def floor_config(template: Path, parameters: dict[str, str] | None = None) -> FloorConfig:
    """Read a strategy's stack template (deployer.cfn.templates.load_stack)."""
    from deployer.cfn.document import load_document
    from deployer.cfn.templates import load_stack

    declared = (load_document(Path(template)).get("Parameters") or {})
    # Values only so the template resolves; none of them changes the numbers read here.
    placeholders = {"EtherpadVersion": "0.0.0", "AMI": "ami-00000000000000000"}
    given = {k: v for k, v in {**placeholders, **(parameters or {})}.items() if k in declared}
    stack = load_stack(template, given, stack_name="etherpad-floor",
                       attribute_resolver=lambda logical_id, attribute: "placeholder",
                       ssm_resolver=lambda name: "ami-00000000000000000")
    if not stack.target_groups or not stack.auto_scaling_groups:
        raise ConfigError("the stack has no target group or no Auto Scaling group: no floor",
                          location=str(template))
    group = next(iter(stack.auto_scaling_groups.values()))
    target_group = next(iter(stack.target_groups.values()))
    instances = group.desired_capacity
    if stack.deployment_groups:
        deployment_group = next(iter(stack.deployment_groups.values()))
        config_name = deployment_group.deployment_config_name
        custom = {c.name: c for c in stack.deployment_configs.values()}
        size, source = _batch_size_codedeploy(config_name, instances, custom)
        model = RolloutModel.IN_PLACE
        source = f"{source} over DesiredCapacity {instances}"
    else:
        policy = group.rolling_update
        size = policy.max_batch_size if policy else 1
        model = RolloutModel.ROLLING_UPDATE
        source = f"AutoScalingRollingUpdate MaxBatchSize {size} over DesiredCapacity {instances}"
    return FloorConfig(
        model=model, instances=instances, batch_size=size,
        batches=max(1, math.ceil(instances / size)), batches_from=source,
        health_check_interval_s=target_group.health_check_interval_s,
        healthy_threshold=target_group.healthy_threshold,
        deregistration_delay_s=target_group.deregistration_delay_s)


def compute_floor(config: FloorConfig, run: RunMeasures) -> Floor:
    """The floor of one run: its configuration plus what it measured (see the module doc)."""
    notes: list[str] = []
    checks = config.healthy_threshold if any(b.failed_checks_first
                                             for b in run.boot_to_healthy) else 1
    configured_checks = config.health_check_interval_s * checks
    if config.model is RolloutModel.IN_PLACE:
        app_start = run.in_place_s
        if app_start is None:
            notes.append("no lifecycle events in the rollout: app start counted as 0")
        registered = median([b.seconds for b in run.boot_to_healthy
                             if b.since == "registration"])
        if registered is None:
            notes.append("no target re-registered in the rollout: health check counted as 0")
        health_check = registered or 0.0
    else:
        launched = median([b.seconds for b in run.boot_to_healthy if b.since == "launch"])
        if launched is None:
            notes.append("no new instance turned healthy in the rollout: app start and health "
                         "check counted as 0")
            launched = 0.0
        health_check = min(configured_checks, launched)
        app_start = launched - health_check
    health_check = round(health_check, 3)
    app_start = round(app_start or 0.0, 3)
    per_batch = round(app_start + health_check + config.deregistration_delay_s, 3)
    rollout_floor = round(config.batches * per_batch, 3)
    prepare = run.phases.get("prepare", 0.0)
    floor_s = round(prepare + rollout_floor, 3)
    rollout_actual = run.phases.get("rollout", 0.0)
    actual = round(prepare + rollout_actual, 3)
    if run.batches_observed and run.batches_observed != config.batches:
        notes.append(f"the run shows {run.batches_observed} batches, the template "
                     f"{config.batches}")
    return Floor(
        model=config.model, batches=config.batches, batches_from=config.batches_from,
        prepare_s=round(prepare, 3), app_start_s=app_start, health_check_s=health_check,
        health_check_interval_s=config.health_check_interval_s,
        healthy_threshold=config.healthy_threshold, checks_needed=checks,
        deregistration_delay_s=config.deregistration_delay_s, per_batch_s=per_batch,
        rollout_floor_s=rollout_floor, floor_s=floor_s, actual_s=actual,
        rollout_actual_s=round(rollout_actual, 3),
        ratio_to_floor=round(actual / floor_s, 3) if floor_s > 0 else None,
        rollout_ratio=round(rollout_actual / rollout_floor, 3) if rollout_floor > 0 else None,
        overhead_s=round(actual - floor_s, 3), notes=notes)

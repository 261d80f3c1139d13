"""CodeDeploy deployments: create one, follow it and its instances' lifecycle events live.

``get_deployment`` gives the deployment's status; ``list_deployment_targets`` and
``batch_get_deployment_targets`` give each instance's lifecycle events (BeforeBlockTraffic …
AfterAllowTraffic) with their diagnostics. Both are polled about once a second, where
botocore's ``deployment_successful`` waiter asks every 15 s.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from deployer.aws.errors import Caller
from deployer.base import logs
from deployer.base.clock import Clock, poll_until
from deployer.base.errors import CloudError, DeployerError
from deployer.cloud.port import DeploymentResult, Event, OnEvent

# A deployment runs its hooks with up to an hour each; follow for as long as CodeDeploy may run.
DEPLOYMENT_TIMEOUT_S = 4 * 3600.0
STOP_TIMEOUT_S = 600.0
# After a failure CodeDeploy names the rollback deployment it started; it may take a moment.
ROLLBACK_APPEARS_S = 15.0
TARGETS_PER_BATCH = 25  # batch_get_deployment_targets takes at most 25 target ids

# Auto-rollback events deployer always wants: a failure, and a stop (Ctrl-C) rolls back.
ROLLBACK_EVENTS = ("DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST")


class DeploymentStatus(StrEnum):
    CREATED = "Created"
    QUEUED = "Queued"
    IN_PROGRESS = "InProgress"
    BAKING = "Baking"
    READY = "Ready"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        return self in (DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED,
                        DeploymentStatus.STOPPED)


def _unix(value: Any, default: float) -> float:
    return value.timestamp() if isinstance(value, datetime) else default


def auto_rollback(group_config: dict | None) -> dict:
    """The group's auto-rollback, with failure and stop-on-request always included."""
    events = list((group_config or {}).get("events") or [])
    for event in ROLLBACK_EVENTS:
        if event not in events:
            events.append(event)
    return {"enabled": True, "events": events}


class DeploymentFollower:
    """One deployment: its status and every lifecycle event change, emitted as seen."""

    def __init__(self, caller: Caller, codedeploy: Any, deployment_id: str, on_event: OnEvent,
                 clock: Clock) -> None:
        self.caller = caller
        self.codedeploy = codedeploy
        self.deployment_id = deployment_id
        self.on_event = on_event
        self.clock = clock
        self.info: dict = {}
        self.status: DeploymentStatus | None = None
        self.lifecycle: dict[tuple[str, str], str] = {}  # (instance, event) -> status
        self.instance_status: dict[str, str] = {}
        self.failed_events: list[str] = []

    def poll(self) -> dict:
        info = self.caller(self.codedeploy, "get_deployment",
                           deploymentId=self.deployment_id)["deploymentInfo"]
        self.info = info
        self._poll_targets()
        status = DeploymentStatus(info["status"])
        if status != self.status:
            self.status = status
            error = info.get("errorInformation") or {}
            self.on_event(Event(at=self.clock.now(), source="deployment",
                                resource=self.deployment_id, status=status.value,
                                reason=error.get("message", "")))
        return info

    def _poll_targets(self) -> None:
        target_ids = list(self.caller.pages(self.codedeploy, "list_deployment_targets",
                                            "targetIds", token="nextToken",
                                            deploymentId=self.deployment_id))
        for start in range(0, len(target_ids), TARGETS_PER_BATCH):
            answer = self.caller(self.codedeploy, "batch_get_deployment_targets",
                                 deploymentId=self.deployment_id,
                                 targetIds=target_ids[start:start + TARGETS_PER_BATCH])
            for target in answer.get("deploymentTargets", []):
                self._note_target(target.get("instanceTarget") or {})

    def _note_target(self, target: dict) -> None:
        instance = target.get("targetId", "")
        now = self.clock.now()
        for event in target.get("lifecycleEvents", []):
            name, status = event.get("lifecycleEventName", ""), event.get("status", "")
            key = (instance, name)
            if self.lifecycle.get(key) == status or (key not in self.lifecycle
                                                      and status == "Pending"):
                continue
            self.lifecycle[key] = status
            reason = ""
            diagnostics = event.get("diagnostics") or {}
            if status == "Failed":
                tail = (diagnostics.get("logTail") or "").strip().splitlines()
                reason = " ".join(filter(None, [
                    diagnostics.get("errorCode"), diagnostics.get("scriptName"),
                    diagnostics.get("message"), tail[-1] if tail else ""]))
                self.failed_events.append(f"{instance} {name}: {reason}")
            at = _unix(event.get("endTime") if status in ("Succeeded", "Failed", "Skipped")
                       else event.get("startTime"), now)
            self.on_event(Event(at=at, source="deployment",
                                resource=f"{self.deployment_id}/{instance}/{name}",
                                status=status, reason=reason))
        status = target.get("status", "")
        if status and self.instance_status.get(instance) != status:
            self.instance_status[instance] = status
            self.on_event(Event(at=now, source="deployment",
                                resource=f"{self.deployment_id}/{instance}", status=status))

    def step(self) -> dict | None:
        info = self.poll()
        return info if DeploymentStatus(info["status"]).terminal else None

    def reason(self) -> str:
        error = self.info.get("errorInformation") or {}
        parts = [f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")]
        parts += self.failed_events[:1]
        return "; ".join(p for p in parts if p)


class Deployments:
    """create_deployment, follow it to the end (and its rollback), stop it on Ctrl-C."""

    def __init__(self, caller: Caller, codedeploy: Any, clock: Clock) -> None:
        self.caller = caller
        self.codedeploy = codedeploy
        self.clock = clock

    def create(self, application: str, group: str, revision: dict, *, description: str,
               ignore_application_stop_failures: bool = False) -> str:
        config = self.caller(self.codedeploy, "get_deployment_group", applicationName=application,
                             deploymentGroupName=group)["deploymentGroupInfo"]
        return self.caller(
            self.codedeploy, "create_deployment", applicationName=application,
            deploymentGroupName=group, revision=revision,
            deploymentConfigName=config.get("deploymentConfigName",
                                            "CodeDeployDefault.OneAtATime"),
            description=description,
            ignoreApplicationStopFailures=ignore_application_stop_failures,
            autoRollbackConfiguration=auto_rollback(config.get("autoRollbackConfiguration")),
        )["deploymentId"]

    def follow(self, deployment_id: str, on_event: OnEvent, *, follow_rollback: bool = True,
               watch: Callable[[], None] | None = None) -> DeploymentResult:
        """Follow to the end; ``watch`` is called on every poll (target health, say)."""
        follower = DeploymentFollower(self.caller, self.codedeploy, deployment_id, on_event,
                                      self.clock)

        def step() -> dict | None:
            if watch is not None:
                watch()
            return follower.step()

        try:
            info = poll_until(step, clock=self.clock, timeout_s=DEPLOYMENT_TIMEOUT_S,
                              what=f"deployment {deployment_id}")
        except KeyboardInterrupt:
            self.stop(deployment_id, follower)
            raise
        result = DeploymentResult(deployment_id=deployment_id, status=info["status"],
                                  reason=follower.reason() if info["status"] != "Succeeded"
                                  else "")
        if info["status"] == "Succeeded" or not follow_rollback:
            return result
        rollback_id = self._rollback_id(follower)
        if rollback_id:
            on_event(Event(at=self.clock.now(), source="deployment", resource=deployment_id,
                           status="RollbackStarted", reason=f"rollback deployment {rollback_id}"))
            rolled = self.follow(rollback_id, on_event, follow_rollback=False, watch=watch)
            result.rollback_deployment_id = rollback_id
            result.rollback_status = rolled.status
        return result

    def _rollback_id(self, follower: DeploymentFollower) -> str | None:
        def step() -> str | None:
            info = follower.info
            rollback = info.get("rollbackInfo") or {}
            if rollback.get("rollbackDeploymentId"):
                return rollback["rollbackDeploymentId"]
            enabled = (info.get("autoRollbackConfiguration") or {}).get("enabled")
            if not enabled or rollback.get("rollbackMessage"):
                return ""  # CodeDeploy said why there is none
            follower.poll()
            return None

        try:
            return poll_until(step, clock=self.clock, timeout_s=ROLLBACK_APPEARS_S,
                              what="rollback deployment") or None
        except CloudError:
            return None

    def stop(self, deployment_id: str, follower: DeploymentFollower) -> None:
        """Ctrl-C: stop the deployment (CodeDeploy rolls back) and see it stopped."""
        log = logs.get_logger()
        log.warning("deployment.stopping", deployment_id=deployment_id,
                    why="interrupted; stopping it rather than leaving it running unseen")
        try:
            self.caller(self.codedeploy, "stop_deployment", deploymentId=deployment_id,
                        autoRollbackEnabled=True)
            poll_until(follower.step, clock=self.clock, timeout_s=STOP_TIMEOUT_S,
                       what=f"stopping deployment {deployment_id}")
        except DeployerError as exc:
            # A deployment that just finished cannot be stopped; that is not a new problem.
            log.warning("deployment.stop_failed", deployment_id=deployment_id, reason=str(exc))
        except KeyboardInterrupt:
            log.warning("deployment.stop_not_awaited", deployment_id=deployment_id)
            return
        rollback = (follower.info.get("rollbackInfo") or {}).get("rollbackDeploymentId")
        log.warning("deployment.stopped", deployment_id=deployment_id,
                    status=follower.info.get("status"), rollback_deployment_id=rollback)

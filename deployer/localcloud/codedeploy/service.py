"""CodeDeploy, EC2 in-place: applications, deployment groups, deployments across a fleet.

The service side of CodeDeploy. A deployment picks the group's instances in CodeDeploy's
order (unhealthy, then unknown revision, old, current), runs the agent on them in batches the
deployment config allows, decides success by the minimum healthy hosts rule, and, when the
group asks for it, rolls back by creating a new deployment of the last good revision.

State lives under ``<state_dir>/codedeploy``: ``service.json`` (applications, deployment
groups with their revision history and instance health, custom deployment configs) and one
``deployments/<id>.json`` per deployment, rewritten on every change so another process can
follow a deployment with :func:`read_deployment`.
"""

from __future__ import annotations

import os
import secrets
import string
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from deployer.base import logs
from deployer.base.clock import Clock
from deployer.base.errors import CloudError, ConfigError, NotFound, StateError
from deployer.cloud.port import DeploymentResult, Event, OnEvent
from deployer.localcloud.codedeploy.agent import (
    CodeDeployAgent,
    InstanceHandle,
    Revision,
    TrafficControl,
    read_revision_appspec,
)
from deployer.localcloud.codedeploy.deployment import AgentFactory, DeploymentRun
from deployer.localcloud.codedeploy.model import (
    ALL_AT_ONCE,
    HALF_AT_A_TIME,
    ONE_AT_A_TIME,
    PREDEFINED_CONFIGS,
    Application,
    AutoRollbackConfiguration,
    AutoRollbackEvent,
    Deployment,
    DeploymentConfig,
    DeploymentCreator,
    DeploymentErrorCode,
    DeploymentGroup,
    DeploymentStatus,
    ErrorInformation,
    Fleet,
    InstanceStatus,
    MinimumHealthyHosts,
    MinimumHealthyHostsType,
)

__all__ = [
    "ALL_AT_ONCE", "HALF_AT_A_TIME", "ONE_AT_A_TIME", "AutoRollbackConfiguration",
    "AutoRollbackEvent", "CodeDeployService", "Deployment", "DeploymentConfig",
    "DeploymentCreator", "DeploymentGroup", "DeploymentStatus", "Fleet", "InstanceHandle",
    "InstanceStatus", "MinimumHealthyHosts", "MinimumHealthyHostsType", "Revision",
    "TrafficControl", "read_deployment",
]

log = logs.get_logger(component="codedeploy")


# -- deployment configs ------------------------------------------------------------------------


def read_deployment(state_dir: Path, deployment_id: str) -> Deployment:
    """Read a deployment as last persisted (for another process following it)."""
    path = state_dir / "codedeploy" / "deployments" / f"{deployment_id}.json"
    try:
        return Deployment.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"deployment {deployment_id} does not exist") from None


def _new_deployment_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "d-" + "".join(secrets.choice(alphabet) for _ in range(9))


def _write_json(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class _ServiceState(BaseModel):
    applications: dict[str, Application] = Field(default_factory=dict)
    deployment_groups: dict[str, DeploymentGroup] = Field(default_factory=dict)  # "app/group"
    deployment_configs: dict[str, DeploymentConfig] = Field(default_factory=dict)


# -- the service -----------------------------------------------------------------------------

class CodeDeployService:
    """CodeDeploy for the local cloud. Deployments run in background threads."""

    def __init__(self, state_dir: Path, fleet: Fleet, *, kill_grace_s: float = 3.0,
                 on_event: OnEvent | None = None, clock: Clock | None = None,
                 agent: AgentFactory | None = None) -> None:
        self.dir = state_dir / "codedeploy"
        self.fleet = fleet
        self.kill_grace_s = kill_grace_s
        self.clock = clock or Clock()
        # How an instance's agent is made (the real one runs the hooks; tests pass a fake).
        self.agent: AgentFactory = agent or (lambda instance: CodeDeployAgent(
            instance, kill_grace_s=self.kill_grace_s, clock=self.clock))
        self.on_event = on_event
        self._lock = threading.RLock()
        self._instance_locks: dict[str, threading.Lock] = {}
        self._deployments: dict[str, Deployment] = {}
        self._done: dict[str, threading.Event] = {}
        self._active: dict[str, str] = {}  # "app/group" -> deployment id (and its rollback)
        self._stop_rollback: dict[str, bool | None] = {}
        self._state = self._load()

    # -- persistence -------------------------------------------------------------------------
    def _load(self) -> _ServiceState:
        path = self.dir / "service.json"
        state = (_ServiceState.model_validate_json(path.read_text()) if path.exists()
                 else _ServiceState())
        for file in sorted((self.dir / "deployments").glob("d-*.json")):
            deployment = Deployment.model_validate_json(file.read_text())
            if not deployment.status.done:
                # Its threads died with the process that ran it.
                deployment.status = DeploymentStatus.FAILED
                deployment.error = ErrorInformation(
                    code=DeploymentErrorCode.INTERNAL_ERROR,
                    message="the local cloud stopped while this deployment was in progress")
                deployment.ended_at = self.clock.now()
                _write_json(file, deployment.model_dump_json(indent=1))
            self._deployments[deployment.deployment_id] = deployment
            done = threading.Event()
            done.set()
            self._done[deployment.deployment_id] = done
        return state

    def _save_state(self) -> None:
        _write_json(self.dir / "service.json", self._state.model_dump_json(indent=1))

    def _save(self, deployment: Deployment) -> None:
        _write_json(self.dir / "deployments" / f"{deployment.deployment_id}.json",
                    deployment.model_dump_json(indent=1))

    # -- applications, groups, configs ---------------------------------------------------------
    def create_application(self, name: str) -> Application:
        with self._lock:
            if name in self._state.applications:
                raise StateError(f"application {name} already exists")
            app = Application(name=name, application_id=str(uuid.uuid4()),
                              created_at=self.clock.now())
            self._state.applications[name] = app
            self._save_state()
            return app

    def applications(self) -> list[Application]:
        with self._lock:
            return list(self._state.applications.values())

    def delete_application(self, name: str) -> None:
        with self._lock:
            self._state.applications.pop(name, None)
            for key in [k for k in self._state.deployment_groups if k.startswith(f"{name}/")]:
                del self._state.deployment_groups[key]
            self._save_state()

    def create_deployment_config(self, name: str,
                                 minimum_healthy_hosts: MinimumHealthyHosts) -> DeploymentConfig:
        if name in PREDEFINED_CONFIGS or name.startswith("CodeDeployDefault."):
            raise ConfigError(f"deployment config {name} is predefined",
                              hint="choose a name outside CodeDeployDefault.*")
        mhh = minimum_healthy_hosts
        if mhh.type is MinimumHealthyHostsType.MOST_CONCURRENCY:
            raise ConfigError("MinimumHealthyHosts type MOST_CONCURRENCY is reserved for "
                              "CodeDeployDefault.OneAtATime", hint="use HOST_COUNT or "
                                                                   "FLEET_PERCENT")
        if mhh.value < 0 or (mhh.type is MinimumHealthyHostsType.FLEET_PERCENT
                             and mhh.value > 100):
            raise ConfigError(f"MinimumHealthyHosts value {mhh.value} is out of range",
                              hint="HOST_COUNT >= 0, FLEET_PERCENT 0-100")
        config = DeploymentConfig(name=name, minimum_healthy_hosts=mhh)
        with self._lock:
            if name in self._state.deployment_configs:
                raise StateError(f"deployment config {name} already exists")
            self._state.deployment_configs[name] = config
            self._save_state()
        return config

    def deployment_config(self, name: str) -> DeploymentConfig:
        with self._lock:
            config = PREDEFINED_CONFIGS.get(name) or self._state.deployment_configs.get(name)
        if config is None:
            raise NotFound(f"deployment config {name} does not exist")
        return config

    def create_deployment_group(self, application_name: str, name: str, *,
                                auto_scaling_groups: Sequence[str] = (),
                                target_group: str | None = None,
                                deployment_config_name: str = ONE_AT_A_TIME.name,
                                auto_rollback: AutoRollbackConfiguration | None = None,
                                ) -> DeploymentGroup:
        self.deployment_config(deployment_config_name)
        with self._lock:
            if application_name not in self._state.applications:
                raise NotFound(f"application {application_name} does not exist")
            key = f"{application_name}/{name}"
            if key in self._state.deployment_groups:
                raise StateError(f"deployment group {name} already exists in {application_name}")
            group = DeploymentGroup(application_name=application_name, name=name,
                                    group_id=str(uuid.uuid4()),
                                    auto_scaling_groups=tuple(auto_scaling_groups),
                                    target_group=target_group,
                                    deployment_config_name=deployment_config_name,
                                    auto_rollback=auto_rollback or AutoRollbackConfiguration())
            self._state.deployment_groups[key] = group
            self._save_state()
            return group.model_copy(deep=True)

    def update_deployment_group(self, application_name: str, name: str, *,
                                auto_scaling_groups: Sequence[str] | None = None,
                                target_group: str | None = None,
                                deployment_config_name: str | None = None,
                                auto_rollback: AutoRollbackConfiguration | None = None,
                                ) -> DeploymentGroup:
        if deployment_config_name is not None:
            self.deployment_config(deployment_config_name)
        with self._lock:
            group = self._group(application_name, name)
            if auto_scaling_groups is not None:
                group.auto_scaling_groups = tuple(auto_scaling_groups)
            if target_group is not None:
                group.target_group = target_group or None
            if deployment_config_name is not None:
                group.deployment_config_name = deployment_config_name
            if auto_rollback is not None:
                group.auto_rollback = auto_rollback
            self._save_state()
            return group.model_copy(deep=True)

    def get_deployment_group(self, application_name: str, name: str) -> DeploymentGroup:
        with self._lock:
            return self._group(application_name, name).model_copy(deep=True)

    def _group(self, application_name: str, name: str) -> DeploymentGroup:
        group = self._state.deployment_groups.get(f"{application_name}/{name}")
        if group is None:
            raise NotFound(f"deployment group {name} of application {application_name} does "
                           "not exist")
        return group

    # -- deployments ---------------------------------------------------------------------------
    def create_deployment(self, application_name: str, deployment_group_name: str,
                          revision: Revision, *, deployment_config_name: str | None = None,
                          ignore_application_stop_failures: bool = False,
                          on_event: OnEvent | None = None) -> Deployment:
        """Start a deployment to the group's instances and return it (status Created).

        The revision is checked first (appspec, archive entries, os), so a broken revision is
        a ConfigError here rather than a failure on every instance.
        """
        read_revision_appspec(revision)
        with self._lock:
            group = self._group(application_name, deployment_group_name)
            key = f"{application_name}/{deployment_group_name}"
            if key in self._active:
                raise StateError(f"the deployment group {deployment_group_name} already has an "
                                 f"active deployment {self._active[key]}",
                                 hint="wait for it or stop it first")
            config = self.deployment_config(deployment_config_name
                                            or group.deployment_config_name)
            deployment = self._new_deployment(group, revision, config,
                                              ignore_application_stop_failures,
                                              DeploymentCreator.USER)
            self._active[key] = deployment.deployment_id
        thread = threading.Thread(target=self._run_with_rollback,
                                  args=(deployment.deployment_id, None, on_event),
                                  name=f"codedeploy-{deployment.deployment_id}", daemon=True)
        thread.start()
        return self.get_deployment(deployment.deployment_id)

    def deploy(self, application_name: str, deployment_group_name: str, revision: Revision, *,
               deployment_config_name: str | None = None,
               ignore_application_stop_failures: bool = False,
               on_event: OnEvent | None = None, timeout: float | None = None
               ) -> DeploymentResult:
        """Create a deployment and wait for it (and its rollback, if one happens)."""
        deployment = self.create_deployment(
            application_name, deployment_group_name, revision,
            deployment_config_name=deployment_config_name,
            ignore_application_stop_failures=ignore_application_stop_failures,
            on_event=on_event)
        return self.wait(deployment.deployment_id, timeout=timeout)

    def deploy_to_new_instance(self, application_name: str, deployment_group_name: str,
                               instance: InstanceHandle, *, on_event: OnEvent | None = None
                               ) -> DeploymentResult | None:
        """Deploy the group's last successful revision to one instance the group just launched.

        None when the group has no successful revision yet (a new instance then gets nothing,
        as on AWS). A deployment already running for the group does not hold this up; like
        AWS, the new instance gets the last successful revision, not the one being deployed.
        """
        with self._lock:
            group = self._group(application_name, deployment_group_name)
            if group.last_successful_revision is None:
                return None
            # One instance: OneAtATime's rule is simply "it must succeed".
            deployment = self._new_deployment(group, group.last_successful_revision,
                                              ONE_AT_A_TIME, False, DeploymentCreator.AUTOSCALING)
        self._run(deployment.deployment_id, [instance], on_event)
        return self._result(deployment.deployment_id)

    def wait(self, deployment_id: str, timeout: float | None = None) -> DeploymentResult:
        done = self._done_event(deployment_id)
        if not self.clock.wait(done, timeout):
            raise CloudError(f"deployment {deployment_id} did not finish within {timeout} s")
        return self._result(deployment_id)

    def stop(self, deployment_id: str, *, auto_rollback: bool | None = None) -> None:
        """Ask a running deployment to stop; instances finish their current lifecycle event.

        ``auto_rollback`` (StopDeployment's autoRollbackEnabled) overrides whether the group's
        DEPLOYMENT_STOP_ON_REQUEST rollback happens; None leaves it to the group.
        """
        with self._lock:
            deployment = self._deployment(deployment_id)
            if deployment.status.done:
                raise StateError(f"deployment {deployment_id} is already {deployment.status.value}")
            deployment.stop_requested = True
            self._stop_rollback[deployment_id] = auto_rollback
            self._save(deployment)

    def get_deployment(self, deployment_id: str) -> Deployment:
        with self._lock:
            return self._deployment(deployment_id).model_copy(deep=True)

    def list_deployments(self, application_name: str | None = None,
                         deployment_group_name: str | None = None) -> list[Deployment]:
        with self._lock:
            return [d.model_copy(deep=True) for d in self._deployments.values()
                    if application_name in (None, d.application_name)
                    and deployment_group_name in (None, d.deployment_group_name)]

    def _deployment(self, deployment_id: str) -> Deployment:
        deployment = self._deployments.get(deployment_id)
        if deployment is None:
            raise NotFound(f"deployment {deployment_id} does not exist")
        return deployment

    def _done_event(self, deployment_id: str) -> threading.Event:
        with self._lock:
            self._deployment(deployment_id)
            return self._done[deployment_id]

    def _result(self, deployment_id: str) -> DeploymentResult:
        with self._lock:
            deployment = self._deployment(deployment_id)
            if not deployment.status.done:
                raise StateError(f"deployment {deployment_id} is still "
                                 f"{deployment.status.value}")
            rollback_status = None
            notes = [deployment.error.message] if deployment.error else []
            if deployment.rollback_deployment_id:
                rollback = self._deployment(deployment.rollback_deployment_id)
                rollback_status = rollback.status.value
                notes.append(f"{deployment.rollback_message}: {rollback_status}"
                             + (f" ({rollback.error.message})" if rollback.error else ""))
            elif deployment.rollback_message:
                notes.append(deployment.rollback_message)
            reason = "; ".join(notes)
            return DeploymentResult(deployment_id=deployment_id,
                                    status=deployment.status.value, reason=reason,
                                    rollback_deployment_id=deployment.rollback_deployment_id,
                                    rollback_status=rollback_status)

    def _new_deployment(self, group: DeploymentGroup, revision: Revision,
                        config: DeploymentConfig, ignore_application_stop_failures: bool,
                        creator: DeploymentCreator) -> Deployment:
        deployment = Deployment(
            deployment_id=_new_deployment_id(), application_name=group.application_name,
            deployment_group_name=group.name, deployment_group_id=group.group_id,
            revision=revision, deployment_config_name=config.name, creator=creator,
            ignore_application_stop_failures=ignore_application_stop_failures,
            load_balancer=group.target_group is not None, created_at=self.clock.now())
        self._deployments[deployment.deployment_id] = deployment
        self._done[deployment.deployment_id] = threading.Event()
        self._save(deployment)
        return deployment

    # -- running -------------------------------------------------------------------------------
    def _emit(self, on_event: OnEvent | None, resource: str, status: str, reason: str = "") -> None:
        event = Event(at=self.clock.now(), source="deployment", resource=resource, status=status,
                      reason=reason)
        for callback in (on_event, self.on_event):
            if callback is None:
                continue
            try:
                callback(event)
            except Exception as exc:
                log.warning("on_event callback failed", resource=resource, error=repr(exc))

    def _run_with_rollback(self, deployment_id: str, instances: Sequence[InstanceHandle] | None,
                           on_event: OnEvent | None) -> None:
        try:
            self._run(deployment_id, instances, on_event, keep_done=True)
            self._maybe_roll_back(deployment_id, on_event)
        finally:
            with self._lock:
                deployment = self._deployments[deployment_id]
                key = f"{deployment.application_name}/{deployment.deployment_group_name}"
                if self._active.get(key) == deployment_id:
                    del self._active[key]
                self._done[deployment_id].set()

    def _run(self, deployment_id: str, instances: Sequence[InstanceHandle] | None,
             on_event: OnEvent | None, *, keep_done: bool = False) -> None:
        try:
            DeploymentRun(self, deployment_id, instances, on_event).execute()
        except Exception as exc:
            log.exception("deployment crashed", deployment=deployment_id)
            with self._lock:
                deployment = self._deployments[deployment_id]
                if not deployment.status.done:
                    deployment.status = DeploymentStatus.FAILED
                    deployment.error = ErrorInformation(code=DeploymentErrorCode.INTERNAL_ERROR,
                                                        message=str(exc) or repr(exc))
                    deployment.ended_at = self.clock.now()
                    self._save(deployment)
            self._emit(on_event, deployment_id, DeploymentStatus.FAILED.value, str(exc))
        finally:
            if not keep_done:
                self._done[deployment_id].set()

    def _maybe_roll_back(self, deployment_id: str, on_event: OnEvent | None) -> None:
        with self._lock:
            deployment = self._deployments[deployment_id]
            if deployment.creator is not DeploymentCreator.USER:
                return  # rollbacks and new-instance deployments are not rolled back themselves
            group = self._group(deployment.application_name, deployment.deployment_group_name)
            wanted = self._rollback_wanted(deployment, group)
            if not wanted:
                return
            if group.last_successful_revision is None:
                deployment.rollback_message = ("no rollback: the deployment group has no "
                                               "earlier successful revision")
                self._save(deployment)
                return
            rollback = self._new_deployment(
                group, group.last_successful_revision,
                self.deployment_config(deployment.deployment_config_name),
                deployment.ignore_application_stop_failures, DeploymentCreator.AUTO_ROLLBACK)
            rollback.rollback_triggering_deployment_id = deployment_id
            deployment.rollback_deployment_id = rollback.deployment_id
            deployment.rollback_message = (f"automatic rollback {rollback.deployment_id} to "
                                           f"{group.last_successful_revision.describe()}")
            self._save(deployment)
            self._save(rollback)
        # The group stays busy with the failed deployment's id until its rollback is done.
        self._emit(on_event, rollback.deployment_id, DeploymentStatus.CREATED.value,
                   f"automatic rollback of {deployment_id}")
        self._run(rollback.deployment_id, None, on_event)

    def _rollback_wanted(self, deployment: Deployment, group: DeploymentGroup) -> bool:
        events = group.auto_rollback.events if group.auto_rollback.enabled else ()
        if deployment.status is DeploymentStatus.FAILED:
            return AutoRollbackEvent.DEPLOYMENT_FAILURE in events
        if deployment.status is DeploymentStatus.STOPPED:
            override = self._stop_rollback.get(deployment.deployment_id)
            if override is not None:
                return override
            return AutoRollbackEvent.DEPLOYMENT_STOP_ON_REQUEST in events
        return False

    def _instance_lock(self, instance_id: str) -> threading.Lock:
        """One deployment at a time per instance, whatever handle object the fleet passes."""
        with self._lock:
            return self._instance_locks.setdefault(instance_id, threading.Lock())

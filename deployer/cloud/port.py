"""The cloud port: the few verbs strategies need, whatever cloud is underneath.

Two adapters implement it: ``deployer.localcloud`` (the embedded default) and
``deployer.aws`` (boto3 + the packer binary). Strategies only ever see this module.
Waiting verbs take an ``on_event`` callback so progress can be shown live and a rollout's
end is noticed within about a second, on either cloud.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class StackStatus(StrEnum):
    """CloudFormation stack states, as both adapters report them."""

    REVIEW_IN_PROGRESS = "REVIEW_IN_PROGRESS"  # created by a change set not yet executed
    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    CREATE_COMPLETE = "CREATE_COMPLETE"
    CREATE_FAILED = "CREATE_FAILED"
    ROLLBACK_IN_PROGRESS = "ROLLBACK_IN_PROGRESS"
    ROLLBACK_COMPLETE = "ROLLBACK_COMPLETE"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
    UPDATE_COMPLETE_CLEANUP_IN_PROGRESS = "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"
    UPDATE_COMPLETE = "UPDATE_COMPLETE"
    UPDATE_FAILED = "UPDATE_FAILED"
    UPDATE_ROLLBACK_IN_PROGRESS = "UPDATE_ROLLBACK_IN_PROGRESS"
    UPDATE_ROLLBACK_FAILED = "UPDATE_ROLLBACK_FAILED"
    UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS = "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"
    UPDATE_ROLLBACK_COMPLETE = "UPDATE_ROLLBACK_COMPLETE"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
    DELETE_FAILED = "DELETE_FAILED"
    DELETE_COMPLETE = "DELETE_COMPLETE"
    IMPORT_IN_PROGRESS = "IMPORT_IN_PROGRESS"
    IMPORT_COMPLETE = "IMPORT_COMPLETE"
    IMPORT_ROLLBACK_IN_PROGRESS = "IMPORT_ROLLBACK_IN_PROGRESS"
    IMPORT_ROLLBACK_FAILED = "IMPORT_ROLLBACK_FAILED"
    IMPORT_ROLLBACK_COMPLETE = "IMPORT_ROLLBACK_COMPLETE"

    @property
    def in_progress(self) -> bool:
        """An operation is running. REVIEW_IN_PROGRESS is not one: it waits for a change set
        to be executed, and only a delete (or that execution) moves it on."""
        return self.endswith("_IN_PROGRESS") and self is not StackStatus.REVIEW_IN_PROGRESS

    @property
    def terminal(self) -> bool:
        return not self.endswith("_IN_PROGRESS")

    @property
    def gone(self) -> bool:
        """No stack to release on: deleted, or a failed create (which can only be deleted)."""
        return self in (StackStatus.ROLLBACK_COMPLETE, StackStatus.DELETE_COMPLETE)

    @property
    def rolled_back(self) -> bool:
        """CloudFormation rolled the stack back (or tried to: see ``rollback_failed``)."""
        return self in _ROLLBACK_STATES

    @property
    def rollback_failed(self) -> bool:
        """The rollback itself failed: the stack needs a human (ContinueUpdateRollback)."""
        return self in (StackStatus.ROLLBACK_FAILED, StackStatus.UPDATE_ROLLBACK_FAILED,
                        StackStatus.IMPORT_ROLLBACK_FAILED)


_ROLLBACK_STATES = frozenset({
    StackStatus.ROLLBACK_IN_PROGRESS, StackStatus.ROLLBACK_COMPLETE, StackStatus.ROLLBACK_FAILED,
    StackStatus.UPDATE_ROLLBACK_IN_PROGRESS, StackStatus.UPDATE_ROLLBACK_FAILED,
    StackStatus.UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS,
    StackStatus.UPDATE_ROLLBACK_COMPLETE, StackStatus.IMPORT_ROLLBACK_IN_PROGRESS,
    StackStatus.IMPORT_ROLLBACK_FAILED, StackStatus.IMPORT_ROLLBACK_COMPLETE})


def is_gone(status: str | None) -> bool:
    """True for no stack at all (``None``) or one in a state :attr:`StackStatus.gone`."""
    if status is None:
        return True
    try:
        return StackStatus(status).gone
    except ValueError:
        return False


class Event(BaseModel):
    """One thing that happened in the cloud (stack event, lifecycle event, scaling activity)."""

    at: float  # unix time
    source: str  # "stack", "deployment", "autoscaling", "image", "loadbalancer"
    resource: str
    status: str
    reason: str = ""


OnEvent = Callable[[Event], None]


class Artifact(BaseModel):
    """An object in the artifact store (S3 bucket)."""

    bucket: str
    key: str
    etag: str
    version: str | None = None
    size: int


class Image(BaseModel):
    image_id: str
    name: str
    release: str | None = None
    size_bytes: int = 0
    created_at: float = 0.0
    tags: dict[str, str] = Field(default_factory=dict)


class TargetHealth(BaseModel):
    target_id: str
    state: str  # initial | healthy | unhealthy | draining | unused
    reason: str = ""


class InstanceView(BaseModel):
    instance_id: str
    state: str
    image_id: str | None = None
    release: str | None = None
    target_health: str | None = None
    pid: int | None = None
    endpoint: str | None = None


class EnvironmentView(BaseModel):
    """What `deployer status` shows for one strategy's environment."""

    strategy: str
    stack_name: str
    stack_status: str
    url: str | None
    parameters: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    instances: list[InstanceView] = Field(default_factory=list)
    release: str | None = None


class StackResult(BaseModel):
    stack_name: str
    status: StackStatus  # e.g. UPDATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE, CREATE_COMPLETE
    reason: str = ""

    @property
    def rolled_back(self) -> bool:
        return self.status.rolled_back

    @property
    def rollback_failed(self) -> bool:
        return self.status.rollback_failed


class DeploymentResult(BaseModel):
    deployment_id: str
    status: Literal["Succeeded", "Failed", "Stopped"]
    reason: str = ""
    rollback_deployment_id: str | None = None
    rollback_status: str | None = None

    @property
    def rolled_back(self) -> bool:
        """CodeDeploy's auto-rollback redeployed the last good revision."""
        return self.rollback_status == "Succeeded"

    @property
    def rollback_failed(self) -> bool:
        """An auto-rollback was started and did not succeed."""
        return self.rollback_deployment_id is not None and self.rollback_status != "Succeeded"


class CloudPort(ABC):
    """What a strategy may ask of a cloud."""

    name: str
    # True when the cloud's instances and image builders run on this machine (the local
    # cloud): a release source this machine cannot reach, they cannot reach either, so
    # preflight checks it here. On AWS the cloud's machines fetch releases themselves.
    fetches_releases_on_this_machine: bool

    # environments (one CloudFormation stack per strategy)
    @abstractmethod
    def ensure_environment(self, strategy: str, template: Path, parameters: dict[str, str],
                           on_event: OnEvent) -> EnvironmentView: ...

    @abstractmethod
    def describe_environment(self, strategy: str) -> EnvironmentView | None: ...

    @abstractmethod
    def destroy_environment(self, strategy: str, on_event: OnEvent) -> None: ...

    @abstractmethod
    def destroy_all(self, on_event: OnEvent) -> None:
        """Every environment of this target removed (``deployer down --all``)."""

    @abstractmethod
    def update_stack(self, strategy: str, parameters: dict[str, str],
                     on_event: OnEvent) -> StackResult: ...

    # artifact store and parameter store
    @abstractmethod
    def put_artifact(self, strategy: str, key: str, path: Path) -> Artifact: ...

    # CodeDeploy
    @abstractmethod
    def deploy_revision(self, strategy: str, revision: Artifact, on_event: OnEvent,
                        *, release: str | None = None,
                        ignore_application_stop_failures: bool = False) -> DeploymentResult: ...

    # images
    @abstractmethod
    def build_image(self, template: Path, variables: dict[str, str],
                    on_event: OnEvent) -> Image: ...

    @abstractmethod
    def list_images(self) -> list[Image]: ...

    # the load balancer as the poller and reports see it
    @abstractmethod
    def target_health(self, strategy: str) -> list[TargetHealth]: ...

    # image lifecycle (optional: a cloud without images lists none and prunes nothing)
    def images_in_use(self) -> set[str]:
        """Image ids a stack (launch template, AMI parameter) or an instance still uses."""
        return set()

    def deregister_image(self, image_id: str) -> list[str]:
        """Deregister an image and delete its storage; the snapshot ids deleted, if any.

        Refuses (StateError) an image in use.
        """
        from deployer.base.errors import UsageError

        raise UsageError(f"the {self.name} target cannot deregister images")

    def target_health_history(self, strategy: str) -> list[dict]:
        """Target state transitions {at, target_id, from_state, to_state, reason}, if known."""
        return []

    # what the editors' data check reads (optional: a cloud that gives neither is checked
    # through the load balancer alone, from pads' public text exports)
    def etherpad_api_key(self, strategy: str) -> str | None:
        """The HTTP API key every instance of the environment shares, when there is one."""
        return None

    def instance_urls(self, strategy: str) -> dict[str, str]:
        """instance id -> base URL of each serving instance's own Etherpad, where this
        machine can reach it (the local cloud); empty where it cannot (AWS: private
        addresses)."""
        return {}

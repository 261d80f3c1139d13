"""The strategy plug-in family: one small abstract class, registered through an entry point.

A strategy is prepare, roll out, roll back — each a call or two on the cloud port. Built-in
strategies live in the top-level ``strategies`` package and register in pyproject.toml under
the ``deployer.strategies`` entry-point group, exactly as a third-party plug-in would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from deployer.base.assets import asset_path
from deployer.base.errors import RollbackFailed, RolloutFailed, UsageError
from deployer.cloud.port import (
    CloudPort,
    EnvironmentView,
    OnEvent,
    StackResult,
    StackStatus,
    is_usable,
)

ENTRY_POINT_GROUP = "deployer.strategies"


class ReleaseOptions(BaseModel):
    """Strategy options a release run was given (CLI flags); unknown ones are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # CodeDeploy: carry on when the old revision's ApplicationStop script fails.
    ignore_application_stop_failures: bool = False


@dataclass
class ReleaseContext:
    """Everything a strategy needs for one release run."""

    release: str
    from_release: str | None
    cloud: CloudPort
    workdir: Path
    on_event: OnEvent
    source: str = "github"
    options: ReleaseOptions = field(default_factory=ReleaseOptions)

    def __post_init__(self) -> None:
        if not isinstance(self.options, ReleaseOptions):  # a plain mapping of option values
            self.options = ReleaseOptions.model_validate(self.options)


class PreparedKind(StrEnum):
    """What `prepare` built (the report's ``details.prepared.kind``)."""

    REVISION = "revision"  # a CodeDeploy revision bundle in the artifact store
    IMAGE = "image"  # a machine image (AMI)
    NONE = "none"  # nothing to build


@dataclass
class Prepared:
    """What `prepare` produced: a revision bundle, an image, or nothing to build."""

    kind: PreparedKind
    ref: str | None = None
    size_bytes: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = PreparedKind(self.kind)  # a plug-in may say "image"; an unknown kind fails


class Strategy(ABC):
    name: str = ""
    # The phases `prepare` is made of, for reports (bundle/upload or bake, or nothing).
    prepare_phases: tuple[str, ...] = ()
    # True when this machine fetches the release (a revision bundle is built here); else the
    # cloud's machines fetch it (a bake, user data), which on AWS may reach what this cannot.
    release_fetched_here: bool = False

    def stack_template(self) -> Path:
        """The CloudFormation template of this strategy's environment."""
        return asset_path("etherpad", "stacks", f"{self.name}.yaml")

    def initial_parameters(self, ctx: ReleaseContext) -> dict[str, str]:
        """Stack parameters for an environment created at the release before this one."""
        return {"EtherpadVersion": ctx.from_release or ctx.release}

    def ensure_environment(self, ctx: ReleaseContext) -> EnvironmentView:
        """The strategy's environment; created at ``from_release`` when there is none.

        When it exists, ``from_release`` becomes the release it really runs, whatever was
        asked: the report says what the release started from. A stack that exists but is no
        environment (half created, a failed delete, a rollback to continue) goes to the
        cloud's ``ensure_environment``, which repairs or recreates it, or refuses in one line.
        """
        view = ctx.cloud.describe_environment(self.name)
        if view is not None and is_usable(view.stack_status):
            ctx.from_release = view.release or ctx.from_release
            return view
        if view is not None and view.stack_status == StackStatus.UPDATE_ROLLBACK_FAILED:
            # The stack and its instances exist: the cloud continues the rollback (or says
            # what to do), and the environment keeps its release; nothing new to create.
            ctx.from_release = view.release or ctx.from_release
            return ctx.cloud.ensure_environment(self.name, self.stack_template(), {},
                                                ctx.on_event)
        if ctx.from_release is None:
            raise self._nothing_to_create_it_at()
        return ctx.cloud.ensure_environment(self.name, self.stack_template(),
                                            self.initial_parameters(ctx), ctx.on_event)

    def _nothing_to_create_it_at(self) -> UsageError:
        return UsageError(f"there is no {self.name} environment yet and no release to "
                          "create it at", hint="pass --from VERSION, the release it runs "
                                               "before this one")

    def preflight(self, ctx: ReleaseContext) -> None:
        """Check the run's input before anything is created: the source has the releases.

        The starting release is only needed (and checked) when the environment must be
        created. A strategy whose releases come from elsewhere overrides this.
        """
        from deployer.etherpad import preflight

        self.check_input(ctx.release, ctx.from_release, ctx.source, ctx.cloud.name)
        view = ctx.cloud.describe_environment(self.name)
        creating = view is None or not (is_usable(view.stack_status) or view.stack_status
                                        == StackStatus.UPDATE_ROLLBACK_FAILED)
        if creating and ctx.from_release is None:
            raise self._nothing_to_create_it_at()
        releases = [ctx.release, *([ctx.from_release] if creating and ctx.from_release else [])]
        if self.fetched_by_cloud(ctx.cloud.fetches_releases_on_this_machine):
            preflight.check_cloud_releases(ctx.source, releases)
        else:
            preflight.check_releases(ctx.source, releases)

    def fetched_by_cloud(self, cloud_fetches_here: bool) -> bool:
        """True when the cloud's own machines fetch the release (AWS), unless this strategy
        bundles it here (the local cloud's machines are this machine)."""
        return not cloud_fetches_here and not self.release_fetched_here

    def check_input(self, release: str, from_release: str | None, source: str,
                    target: str) -> None:
        """The checks that ask nobody: names and source by the one rule, and on AWS that
        the instances can read the source. Cheap enough to run before a cloud is chosen."""
        from deployer.core.providers import cloud_class
        from deployer.etherpad import preflight

        preflight.check_input(source, [release, from_release])
        if self.fetched_by_cloud(cloud_class(target).fetches_releases_on_this_machine):
            preflight.check_readable_by_cloud(source)

    @abstractmethod
    def prepare(self, ctx: ReleaseContext) -> Prepared: ...

    @abstractmethod
    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        """Roll the release out; raise RolloutFailed if the cloud rolled it back, and
        RollbackFailed if the cloud's own rollback failed too."""

    @abstractmethod
    def roll_back(self, ctx: ReleaseContext) -> bool:
        """Restore the previous release (used when the rollout failed without rolling back).

        True when something was restored; False when there was nothing to do by hand (the
        cloud rolls back itself, or there is no previous release): the run is then not
        reported as rolled back.
        """


def raise_if_rolled_back(result: StackResult) -> None:
    """A stack update CloudFormation rolled back is RolloutFailed; one whose rollback failed
    too (UPDATE_ROLLBACK_FAILED) is RollbackFailed."""
    if result.rollback_failed:
        raise RollbackFailed(f"stack update failed and so did its rollback: "
                             f"{result.reason or result.status}",
                             hint=f"continue the rollback of {result.stack_name} "
                                  "(ContinueUpdateRollback) and check the instances")
    if result.rolled_back:
        raise RolloutFailed(f"stack update rolled back: {result.reason or result.status}")


def cloud_rolled_back(ctx: ReleaseContext, strategy: str) -> bool:
    """After a rollout that failed without a verdict (its follow cut short): wait for the
    stack's operation, if one still runs, and say whether the cloud rolled it back. No
    operation running means nothing was rolled back since; a rollback that failed is
    RollbackFailed."""
    result = ctx.cloud.wait_for_stack_operation(strategy, ctx.on_event)
    if result is None:
        return False
    if result.rollback_failed:
        raise RollbackFailed(f"stack update failed and so did its rollback: "
                             f"{result.reason or result.status}",
                             hint=f"continue the rollback of {result.stack_name} "
                                  "(ContinueUpdateRollback) and check the instances")
    return result.rolled_back


def strategy_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_strategy(name: str) -> Strategy:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Strategy)):
                raise UsageError(f"entry point {ep.value} for strategy {name!r} is not a Strategy")
            strategy = cls()
            strategy.name = name
            return strategy
    known = ", ".join(strategy_names()) or "none installed"
    raise UsageError(f"unknown strategy {name!r}", hint=f"choose one of: {known}")

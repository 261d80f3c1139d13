"""The strategy plug-in family: one small abstract class, registered through an entry point.

A strategy is prepare, roll out, roll back — each a call or two on the cloud port. Built-in
strategies live in the top-level ``strategies`` package and register in pyproject.toml under
the ``deployer.strategies`` entry-point group, exactly as a third-party plug-in would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from deployer.base.assets import asset_path
from deployer.base.errors import UsageError
from deployer.cloud.port import CloudPort, EnvironmentView, OnEvent

ENTRY_POINT_GROUP = "deployer.strategies"


@dataclass
class ReleaseContext:
    """Everything a strategy needs for one release run."""

    release: str
    from_release: str | None
    cloud: CloudPort
    workdir: Path
    on_event: OnEvent
    source: str = "github"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """What `prepare` produced: a revision bundle, an image, or nothing to build."""

    kind: str  # "revision" | "image" | "none"
    ref: str | None = None
    size_bytes: int = 0
    details: dict[str, Any] = field(default_factory=dict)


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
        asked: the report says what the release started from.
        """
        view = ctx.cloud.describe_environment(self.name)
        if view is not None and view.stack_status not in ("ROLLBACK_COMPLETE",
                                                          "DELETE_COMPLETE"):
            ctx.from_release = view.release or ctx.from_release
            return view
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
        creating = view is None or view.stack_status in ("ROLLBACK_COMPLETE", "DELETE_COMPLETE")
        if creating and ctx.from_release is None:
            raise self._nothing_to_create_it_at()
        releases = [ctx.release, *([ctx.from_release] if creating else [])]
        if self.fetched_by_cloud(ctx.cloud.name):
            preflight.check_cloud_releases(ctx.source, releases)
        else:
            preflight.check_releases(ctx.source, releases)

    def fetched_by_cloud(self, target: str) -> bool:
        """True when the cloud's own machines fetch the release: AWS, unless it is bundled
        here (the local cloud's machines are this machine)."""
        return target != "local" and not self.release_fetched_here

    def check_input(self, release: str, from_release: str | None, source: str,
                    target: str) -> None:
        """The checks that ask nobody: names and source by the one rule, and on AWS that
        the instances can read the source. Cheap enough to run before a cloud is chosen."""
        from deployer.etherpad import preflight

        preflight.check_input(source, [release, from_release])
        if self.fetched_by_cloud(target):
            preflight.check_readable_by_cloud(source)

    @abstractmethod
    def prepare(self, ctx: ReleaseContext) -> Prepared: ...

    @abstractmethod
    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        """Roll the release out; raise RolloutFailed if the cloud rolled it back."""

    @abstractmethod
    def roll_back(self, ctx: ReleaseContext) -> None:
        """Restore the previous release (used when the rollout failed without rolling back)."""


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

"""CloudFormation rolling update: new instances install the release from user data."""

from __future__ import annotations

from deployer.base.errors import RollbackFailed
from deployer.cloud.port import NO_CHANGES
from deployer.core.strategy import (
    Prepared,
    PreparedKind,
    ReleaseContext,
    Strategy,
    cloud_rolled_back,
    raise_if_rolled_back,
)


class CloudFormationStrategy(Strategy):
    """Update the stack parameter ``EtherpadVersion``; the group's rolling update does the rest."""

    prepare_phases = ()

    def initial_parameters(self, ctx: ReleaseContext) -> dict[str, str]:
        return {"EtherpadVersion": ctx.from_release or ctx.release,
                "EtherpadSource": ctx.source}

    def prepare(self, ctx: ReleaseContext) -> Prepared:
        return Prepared(kind=PreparedKind.NONE)

    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        result = ctx.cloud.update_stack(
            self.name, {"EtherpadVersion": ctx.release, "EtherpadSource": ctx.source},
            ctx.on_event)
        raise_if_rolled_back(result)

    def roll_back(self, ctx: ReleaseContext) -> bool:
        # An update whose follow was cut short carries on: its end decides first.
        if cloud_rolled_back(ctx, self.name):
            return True
        previous = ctx.from_release
        view = ctx.cloud.describe_environment(self.name)
        if not previous or view is None or view.release == previous:
            return False  # the stack runs the previous release: nothing to restore
        result = ctx.cloud.update_stack(self.name, {"EtherpadVersion": previous}, ctx.on_event)
        if result.rolled_back or result.status.endswith("_FAILED"):
            raise RollbackFailed(f"the update back to {previous} did not complete: "
                                 f"{result.reason or result.status}",
                                 hint=f"check the stack {result.stack_name} and its instances")
        return result.reason != NO_CHANGES


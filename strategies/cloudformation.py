"""CloudFormation rolling update: new instances install the release from user data."""

from __future__ import annotations

from deployer.base.errors import RolloutFailed
from deployer.core.strategy import Prepared, ReleaseContext, Strategy


class CloudFormationStrategy(Strategy):
    """Update the stack parameter ``EtherpadVersion``; the group's rolling update does the rest."""

    prepare_phases = ()

    def initial_parameters(self, ctx: ReleaseContext) -> dict[str, str]:
        return {"EtherpadVersion": ctx.from_release or ctx.release,
                "EtherpadSource": ctx.source}

    def prepare(self, ctx: ReleaseContext) -> Prepared:
        return Prepared(kind="none")

    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        result = ctx.cloud.update_stack(
            self.name, {"EtherpadVersion": ctx.release, "EtherpadSource": ctx.source},
            ctx.on_event)
        if result.rolled_back:
            raise RolloutFailed(f"stack update rolled back: {result.reason or result.status}")

    def roll_back(self, ctx: ReleaseContext) -> None:
        previous = ctx.from_release
        if previous:
            ctx.cloud.update_stack(self.name, {"EtherpadVersion": previous}, ctx.on_event)

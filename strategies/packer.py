"""Immutable images: bake the release into an image with Packer, roll the image out."""

from __future__ import annotations

from deployer.base.assets import asset_path
from deployer.core.strategy import (
    Prepared,
    PreparedKind,
    ReleaseContext,
    Strategy,
    cloud_rolled_back,
    raise_if_rolled_back,
)


class PackerStrategy(Strategy):
    """``packer build`` the release, then update the stack parameter ``AMI``."""

    prepare_phases = ("bake",)

    def initial_parameters(self, ctx: ReleaseContext) -> dict[str, str]:
        # The stack is created from an image baked at the starting release.
        image = self._bake(ctx, ctx.from_release or ctx.release)
        return {"AMI": image.ref or "", "EtherpadVersion": ctx.from_release or ctx.release}

    def _bake(self, ctx: ReleaseContext, release: str) -> Prepared:
        variables = {"etherpad_version": release, "etherpad_source": ctx.source}
        image = ctx.cloud.build_image(asset_path("packer", "etherpad.pkr.hcl"), variables,
                                      ctx.on_event)
        return Prepared(kind=PreparedKind.IMAGE, ref=image.image_id, size_bytes=image.size_bytes,
                        details={"image_name": image.name})

    def prepare(self, ctx: ReleaseContext) -> Prepared:
        return self._bake(ctx, ctx.release)

    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        result = ctx.cloud.update_stack(
            self.name, {"AMI": prepared.ref or "", "EtherpadVersion": ctx.release}, ctx.on_event)
        raise_if_rolled_back(result)

    def roll_back(self, ctx: ReleaseContext) -> bool:
        # CloudFormation rolls a failed update back itself; nothing to do by hand. What to
        # report is the cloud's to say: an update whose follow was cut short carries on.
        return cloud_rolled_back(ctx, self.name)

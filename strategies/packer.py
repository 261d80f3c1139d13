"""Immutable images: bake the release into an image with Packer, roll the image out."""

from __future__ import annotations

from deployer.base.assets import asset_path
from deployer.base.errors import RolloutFailed
from deployer.core.strategy import Prepared, ReleaseContext, Strategy


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
        return Prepared(kind="image", ref=image.image_id, size_bytes=image.size_bytes,
                        details={"image_name": image.name})

    def prepare(self, ctx: ReleaseContext) -> Prepared:
        return self._bake(ctx, ctx.release)

    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        result = ctx.cloud.update_stack(
            self.name, {"AMI": prepared.ref or "", "EtherpadVersion": ctx.release}, ctx.on_event)
        if result.rolled_back:
            raise RolloutFailed(f"stack update rolled back: {result.reason or result.status}")

    def roll_back(self, ctx: ReleaseContext) -> None:
        # CloudFormation rolls a failed update back itself; nothing to do by hand.
        return None

"""CodeDeploy in place: a revision (Etherpad + appspec/) deployed onto the running instances."""

from __future__ import annotations

import shutil
import tarfile

from deployer.base.assets import asset_path
from deployer.base.errors import CloudError, RollbackFailed, RolloutFailed
from deployer.cloud.port import Artifact, EnvironmentView
from deployer.core.strategy import Prepared, PreparedKind, ReleaseContext, Strategy
from deployer.etherpad.install import bundle_release
from deployer.etherpad.sources import resolve_source


class CodeDeployStrategy(Strategy):
    """Bundle the release with appspec/, upload it, deploy it to the deployment group."""

    prepare_phases = ("bundle", "upload")
    release_fetched_here = True  # the revision bundle is built on this machine

    def ensure_environment(self, ctx: ReleaseContext) -> EnvironmentView:
        view = super().ensure_environment(ctx)
        if not any(t.state == "healthy" for t in ctx.cloud.target_health(self.name)):
            # A new environment runs only the agent: its first revision is the starting release.
            start = ctx.from_release or view.release or ctx.release
            revision = self._upload(ctx, self._bundle(ctx, start), start)
            self._deploy(ctx, revision, start)
            view = ctx.cloud.describe_environment(self.name) or view
        return view

    def _bundle(self, ctx: ReleaseContext, release: str) -> Prepared:
        work = ctx.workdir / f"revision-{release}"
        bundle = bundle_release(release, resolve_source(ctx.source), work)
        shutil.copy2(asset_path("appspec", "appspec.yml"), work / "appspec.yml")
        shutil.copytree(asset_path("appspec", "hooks"), work / "hooks")
        archive = ctx.workdir / f"etherpad-{release}.tgz"
        with tarfile.open(archive, "w:gz") as tar:
            for child in sorted(work.iterdir()):
                tar.add(child, arcname=child.name)
        shutil.rmtree(work)
        return Prepared(kind=PreparedKind.REVISION, ref=str(archive),
                        size_bytes=archive.stat().st_size,
                        details={"release": release, "commit": bundle.commit,
                                 "files": bundle.files})

    def _upload(self, ctx: ReleaseContext, bundle: Prepared, release: str) -> Artifact:
        from pathlib import Path

        return ctx.cloud.put_artifact(self.name, f"revisions/etherpad-{release}.tgz",
                                      Path(bundle.ref or ""))

    def _deploy(self, ctx: ReleaseContext, revision: Artifact, release: str) -> None:
        result = ctx.cloud.deploy_revision(
            self.name, revision, ctx.on_event, release=release,
            ignore_application_stop_failures=ctx.options.ignore_application_stop_failures)
        if result.status == "Succeeded":
            return
        if result.rollback_failed:
            raise RollbackFailed(
                f"deployment {result.deployment_id} failed ({result.reason}) and so did "
                f"CodeDeploy's rollback {result.rollback_deployment_id} "
                f"({(result.rollback_status or 'unknown').lower()})",
                hint="check the instances; redeploy the last good revision")
        if result.rolled_back:
            raise RolloutFailed(f"deployment {result.deployment_id} failed and CodeDeploy "
                                f"rolled back ({result.rollback_deployment_id}): {result.reason}")
        raise CloudError(f"deployment {result.deployment_id} {result.status.lower()}: "
                         f"{result.reason}")

    def prepare(self, ctx: ReleaseContext) -> Prepared:
        bundle = self._bundle(ctx, ctx.release)
        artifact = self._upload(ctx, bundle, ctx.release)
        bundle.details.update(bucket=artifact.bucket, key=artifact.key, etag=artifact.etag,
                              version=artifact.version)
        bundle.details["artifact"] = artifact.model_dump()
        return bundle

    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        self._deploy(ctx, Artifact(**prepared.details["artifact"]), ctx.release)

    def roll_back(self, ctx: ReleaseContext) -> bool:
        # CodeDeploy's auto-rollback redeploys the last good revision itself.
        return False

"""Pick the cloud adapter for a target: ``local`` (embedded, the default) or ``aws``."""

from __future__ import annotations

from deployer.base.errors import UsageError
from deployer.cloud.port import CloudPort

TARGETS = ("local", "aws")


def cloud_class(target: str) -> type[CloudPort]:
    """The adapter of ``target``, not yet made (what it can do is known without a cloud)."""
    if target == "local":
        from deployer.localcloud.client import LocalCloud

        return LocalCloud
    if target == "aws":
        try:
            from deployer.aws.provider import AwsCloud
        except ImportError as exc:
            raise UsageError("the aws target is not available in this build of deployer",
                             hint="use --target local") from exc
        return AwsCloud
    raise UsageError(f"unknown target {target!r}", hint="use local or aws")


def get_cloud(target: str) -> CloudPort:
    cloud = cloud_class(target)()
    if target == "aws":
        # Who we are and where, before anything is created: wrong or missing credentials
        # or region end the command here with one line.
        cloud.preflight()  # type: ignore[attr-defined]
    return cloud

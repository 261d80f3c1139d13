"""Pick the cloud adapter for a target: ``local`` (embedded, the default) or ``aws``."""

from __future__ import annotations

from deployer.base.errors import UsageError
from deployer.cloud.port import CloudPort

TARGETS = ("local", "aws")


def get_cloud(target: str) -> CloudPort:
    if target == "local":
        from deployer.localcloud.client import LocalCloud

        return LocalCloud()
    if target == "aws":
        try:
            from deployer.aws.provider import AwsCloud
        except ImportError as exc:
            raise UsageError("the aws target is not available in this build of deployer",
                             hint="use --target local") from exc
        cloud = AwsCloud()
        # Who we are and where, before anything is created: wrong or missing credentials
        # or region end the command here with one line.
        cloud.preflight()
        return cloud
    raise UsageError(f"unknown target {target!r}", hint="use local or aws")

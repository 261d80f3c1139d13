"""One contract, every provider: what strategies may rely on from the cloud port.

Port-level assertions run on both providers — the local cloud with the stand-in app stack
(tests/localcloud/fixtures), and AWS on moto with the real cloudformation template reduced
to what moto runs. The strategies' own prepare/roll_out then run against the AWS adapter on
moto, the target the local cloud already runs them on in tests/e2e. If either provider
drifts from the port's meaning (environment view fields, StackResult.rolled_back,
DeploymentResult mapping), this file fails.

What moto cannot do is left out here and covered elsewhere: deleting the full stacks
(tests/aws/test_moto.py deletes a reduced one) and deployments that progress
(tests/aws/test_stubbed.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from deployer.cloud.port import (
    CloudPort,
    DeploymentResult,
    EnvironmentView,
    Image,
    StackResult,
    TargetHealth,
)

FIXTURES = Path(__file__).parents[1] / "localcloud" / "fixtures"


@dataclass
class Provider:
    cloud: CloudPort
    strategy: str
    template: Path
    parameters: dict[str, str]
    can_destroy: bool = True


@pytest.fixture(params=["aws", "local"])
def provider(request, tmp_path, monkeypatch):
    if request.param == "aws":
        from deployer.aws.provider import AwsCloud
        from tests.aws.support import reduced_template

        session = request.getfixturevalue("moto_session")
        cloud = AwsCloud(session, clock=request.getfixturevalue("clock"))
        yield Provider(cloud, "cloudformation", reduced_template("cloudformation", tmp_path),
                       {}, can_destroy=False)  # moto cannot delete the VPC stack
        return
    from deployer.localcloud.client import LocalCloud

    request.applymarker(pytest.mark.slow)
    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    cloud = LocalCloud(home)
    try:
        yield Provider(cloud, "fixture", FIXTURES / "app-stack.yaml",
                       {"AppScript": str(FIXTURES / "app.py"), "StartDelay": "0.3"})
    finally:
        cloud.destroy_all(lambda e: None)


def check_view(view: EnvironmentView, provider: Provider, release: str) -> None:
    assert view.strategy == provider.strategy
    assert view.stack_name == f"etherpad-{provider.strategy}"
    assert view.release == release == view.parameters["EtherpadVersion"]
    assert view.url and view.url.startswith("http://") and view.url == view.outputs["URL"]
    assert view.instances and all(i.instance_id and i.state for i in view.instances)


def test_environment_lifecycle(provider: Provider):
    cloud, strategy = provider.cloud, provider.strategy
    events: list = []
    assert cloud.describe_environment(strategy) is None
    view = cloud.ensure_environment(strategy, provider.template,
                                    {"EtherpadVersion": "1.0", **provider.parameters},
                                    events.append)
    assert view.stack_status == "CREATE_COMPLETE"
    check_view(view, provider, "1.0")
    stack_events = [e for e in events if e.source == "stack" and e.resource == view.stack_name]
    assert stack_events and stack_events[-1].status == "CREATE_COMPLETE"
    # Ensuring again finds it: no second stack, nothing changed.
    again = cloud.ensure_environment(strategy, provider.template,
                                     {"EtherpadVersion": "9.9", **provider.parameters},
                                     events.append)
    assert (again.stack_name, again.release) == (view.stack_name, "1.0")

    result = cloud.update_stack(strategy, {"EtherpadVersion": "2.0"}, events.append)
    assert isinstance(result, StackResult)
    assert (result.stack_name, result.status, result.rolled_back) == \
        (view.stack_name, "UPDATE_COMPLETE", False)
    check_view(cloud.describe_environment(strategy), provider, "2.0")

    health = cloud.target_health(strategy)
    assert all(isinstance(t, TargetHealth) for t in health)
    for change in cloud.target_health_history(strategy):
        assert set(change) == {"at", "target_id", "from_state", "to_state", "reason"}
    assert all(isinstance(i, Image) for i in cloud.list_images())
    assert isinstance(cloud.images_in_use(), set)

    if provider.can_destroy:
        cloud.destroy_environment(strategy, events.append)
        assert cloud.describe_environment(strategy) is None


@pytest.mark.parametrize("status, rolled_back", [
    ("UPDATE_COMPLETE", False), ("CREATE_COMPLETE", False), ("UPDATE_ROLLBACK_COMPLETE", True),
    ("ROLLBACK_COMPLETE", True), ("UPDATE_ROLLBACK_FAILED", True)])
def test_stack_result_rolled_back_means_cloudformation_rolled_back(status, rolled_back):
    assert StackResult(stack_name="s", status=status).rolled_back is rolled_back


# -- the strategies against the AWS adapter -----------------------------------------------

def context(cloud: CloudPort, tmp_path: Path, **options: Any):
    from deployer.core.strategy import ReleaseContext

    events: list = []
    return ReleaseContext(release="1.8.18", from_release="1.8.17", cloud=cloud,
                          workdir=tmp_path, on_event=events.append, options=options), events


def strategy(name: str):
    from deployer.core.strategy import load_strategy

    return load_strategy(name)


def test_cloudformation_strategy_on_aws(moto_session, clock, tmp_path):
    from deployer.aws.provider import AwsCloud
    from tests.aws.support import reduced_template

    cloud = AwsCloud(moto_session, clock=clock)
    cfn = strategy("cloudformation")
    ctx, _ = context(cloud, tmp_path)
    cfn.stack_template = lambda: reduced_template("cloudformation", tmp_path)  # moto's subset
    view = cfn.ensure_environment(ctx)
    assert view.release == "1.8.17" and view.parameters["EtherpadSource"] == "github"
    prepared = cfn.prepare(ctx)
    cfn.roll_out(ctx, prepared)  # raises RolloutFailed if the stack rolled back
    assert cloud.describe_environment("cloudformation").release == "1.8.18"


def test_packer_strategy_on_aws(moto_session, clock, tmp_path):
    import shutil

    from deployer.aws.packer import PackerCli
    from deployer.aws.provider import AwsCloud
    from tests.aws.support import reduced_template

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(Path(__file__).parents[1] / "aws" / "fake_packer.sh", bin_dir / "packer")
    ec2 = moto_session.client("ec2")
    amis = [ec2.register_image(Name=f"etherpad-{r}", RootDeviceName="/dev/sda1")["ImageId"]
            for r in ("1.8.17", "1.8.18")]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_PACKER_LOG": str(tmp_path / "log")}

    class Bakes(PackerCli):
        """Each bake names the next registered image, as Packer would a new AMI."""

        def build(self, *args, **kwargs):
            self.env["FAKE_PACKER_AMI"] = amis.pop(0)
            return super().build(*args, **kwargs)

    cloud = AwsCloud(moto_session, clock=clock, packer=Bakes(env=env))
    packer = strategy("packer")
    packer.stack_template = lambda: reduced_template("packer", tmp_path)
    ctx, _ = context(cloud, tmp_path)
    first = packer.ensure_environment(ctx)
    prepared = packer.prepare(ctx)
    assert prepared.kind == "image" and prepared.ref != first.parameters["AMI"]
    packer.roll_out(ctx, prepared)
    after = cloud.describe_environment("packer")
    assert after.parameters["AMI"] == prepared.ref and after.release == "1.8.18"
    assert prepared.ref in cloud.images_in_use()


def test_codedeploy_strategy_uploads_and_maps_results_on_aws(moto_session, clock, tmp_path):
    """The codedeploy strategy's upload and result mapping on the AWS adapter. moto's
    deployments never progress, so the follow is stubbed with the result CodeDeploy gives."""
    from deployer.aws.provider import AwsCloud
    from deployer.base.errors import CloudError, RolloutFailed
    from deployer.cloud.port import Artifact
    from deployer.core.strategy import Prepared
    from tests.aws.support import reduced_template
    from tests.aws.test_moto import codedeploy_group, enable_versioning

    class Followed(AwsCloud):
        results: ClassVar[list[DeploymentResult]] = []

        def deploy_revision(self, strategy, revision, on_event, **kwargs):
            self.started = self.start_deployment(strategy, revision, **kwargs)
            return self.results.pop(0).model_copy(update={"deployment_id": self.started})

    cloud = Followed(moto_session, clock=clock)
    view = cloud.ensure_environment("codedeploy", reduced_template("codedeploy", tmp_path),
                                    {"EtherpadVersion": "1.8.17"}, lambda e: None)
    codedeploy_group(moto_session)
    enable_versioning(moto_session, view.outputs["ArtifactBucketName"])
    bundle = tmp_path / "etherpad-1.8.18.tgz"
    bundle.write_bytes(b"bundle")
    cd = strategy("codedeploy")
    ctx, _ = context(cloud, tmp_path)
    artifact = cd._upload(ctx, Prepared(kind="revision", ref=str(bundle)), "1.8.18")
    assert isinstance(artifact, Artifact) and artifact.version and artifact.etag
    prepared = Prepared(kind="revision", details={"artifact": artifact.model_dump()})

    Followed.results = [DeploymentResult(deployment_id="", status="Succeeded")]
    cd.roll_out(ctx, prepared)
    Followed.results = [DeploymentResult(deployment_id="", status="Failed", reason="boom",
                                         rollback_deployment_id="d-RB",
                                         rollback_status="Succeeded")]
    with pytest.raises(RolloutFailed, match="rolled back \\(d-RB\\): boom"):
        cd.roll_out(ctx, prepared)
    Followed.results = [DeploymentResult(deployment_id="", status="Stopped", reason="stopped")]
    with pytest.raises(CloudError, match="stopped: stopped"):
        cd.roll_out(ctx, prepared)


# -- stacks that exist but are no environment (issue 11 defect 5) --------------------------

def put_stack_in(provider: Provider, status: str) -> None:
    """Put the provider's stack into ``status`` the way an emulator's state is set: moto's
    backend, or the local cloud's state file while its supervisor is stopped."""
    name = f"etherpad-{provider.strategy}"
    if provider.cloud.name == "aws":
        from tests.aws.test_parity import set_status

        set_status(name, status)
        return
    import json

    cloud = provider.cloud
    cloud.stop_supervisor()  # type: ignore[attr-defined]
    path = cloud.dir / "state.json"  # type: ignore[attr-defined]
    state = json.loads(path.read_text())
    state["stacks"][name]["status"] = status
    path.write_text(json.dumps(state))


@pytest.mark.parametrize("status", ["REVIEW_IN_PROGRESS", "ROLLBACK_FAILED", "DELETE_FAILED"])
def test_a_stack_that_is_no_environment_is_refused_then_created_anew(provider: Provider,
                                                                     tmp_path, status):
    from deployer.base.errors import StateError
    from deployer.cloud.port import StackStatus

    cloud, strategy = provider.cloud, provider.strategy
    template, parameters = provider.template, provider.parameters
    if cloud.name == "aws":  # a stack moto can delete (it cannot delete the VPC one)
        from tests.aws.test_parity import bucket_only

        template, parameters = bucket_only(strategy, tmp_path), {}
    cloud.ensure_environment(strategy, template, {"EtherpadVersion": "1.0", **parameters},
                             lambda e: None)
    put_stack_in(provider, status)
    view = cloud.describe_environment(strategy)
    assert view is not None and view.stack_status == status
    assert StackStatus(view.stack_status).half_created and not StackStatus(status).usable
    with pytest.raises(StateError, match=f"is {status}: not an environment to release on"):
        cloud.update_stack(strategy, {"EtherpadVersion": "2.0"}, lambda e: None)
    again = cloud.ensure_environment(strategy, template,
                                     {"EtherpadVersion": "2.0", **parameters}, lambda e: None)
    assert (again.stack_status, again.release) == ("CREATE_COMPLETE", "2.0")


def test_update_rollback_failed_is_no_environment_until_its_rollback_ends(provider: Provider,
                                                                         tmp_path):
    """AWS continues the rollback (tests/aws/test_stubbed_recovery.py follows it: moto has no
    ContinueUpdateRollback); the local cloud, which has none, says what to do in one line."""
    from deployer.base.errors import StateError

    cloud, strategy = provider.cloud, provider.strategy
    template, parameters = provider.template, provider.parameters
    if cloud.name == "aws":
        from tests.aws.test_parity import bucket_only

        template, parameters = bucket_only(strategy, tmp_path), {}
    cloud.ensure_environment(strategy, template, {"EtherpadVersion": "1.0", **parameters},
                             lambda e: None)
    put_stack_in(provider, "UPDATE_ROLLBACK_FAILED")
    with pytest.raises(StateError, match="is UPDATE_ROLLBACK_FAILED: not an environment to "
                                         "release on"):
        cloud.update_stack(strategy, {"EtherpadVersion": "2.0"}, lambda e: None)
    if cloud.name == "local":
        with pytest.raises(StateError, match=r"is UPDATE_ROLLBACK_FAILED .remove it with "
                                             r"'deployer down --strategy fixture'"):
            cloud.ensure_environment(strategy, template, {"EtherpadVersion": "1.0",
                                                          **parameters}, lambda e: None)

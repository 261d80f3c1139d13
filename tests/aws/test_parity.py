"""Issue 11 on moto: the region deployer uses (defect 4), stacks that exist but are no
environment (defect 5), and ``down`` that reports the truth (defect 12).

The half-created states moto never reaches by itself (ROLLBACK_FAILED, DELETE_FAILED) are
put into its backend, as an emulator's state is: moto's own operations then act on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from deployer.aws.provider import AwsCloud
from deployer.base.errors import StateError
from tests.aws.support import reduced_template

ACCOUNT = "123456789012"


def run_cli(*argv: str) -> int:
    from deployer.cli.app import main

    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    return int(exited.value.code or 0)


def bucket_only(strategy: str, tmp_path: Path) -> Path:
    """The strategy's template reduced to its artifact bucket: a stack moto can delete."""
    document = json.loads(reduced_template("codedeploy", tmp_path).read_text())
    document["Resources"] = {"ArtifactBucket": document["Resources"]["ArtifactBucket"]}
    document["Outputs"] = {"ArtifactBucketName": document["Outputs"]["ArtifactBucketName"],
                           "URL": {"Value": "http://example.invalid/"}}
    document["Parameters"] = {"EtherpadVersion": document["Parameters"]["EtherpadVersion"]}
    path = tmp_path / f"{strategy}-bucket-only.json"
    path.write_text(json.dumps(document))
    return path


def set_status(name: str, status: str, region: str = "us-east-1") -> None:
    from moto.cloudformation.models import cloudformation_backends

    backend = cloudformation_backends[ACCOUNT][region]
    stack = next(s for s in backend.stacks.values() if s.name == name)
    stack.status = status


def status_of(session: boto3.Session, name: str) -> str:
    return session.client("cloudformation").describe_stacks(
        StackName=name)["Stacks"][0]["StackStatus"]


def use_template(monkeypatch, strategy: str, path: Path) -> None:
    from deployer.core.strategy import Strategy

    original = Strategy.stack_template
    monkeypatch.setattr(Strategy, "stack_template",
                        lambda self: path if self.name == strategy else original(self))


# -- defect 4: AWS_REGION ------------------------------------------------------------------

def test_aws_region_wins_over_aws_default_region_and_status_looks_there(
        moto_session, monkeypatch, tmp_path, clock, capsys):
    eu = boto3.Session(region_name="eu-west-1")
    AwsCloud(eu, clock=clock).ensure_environment(
        "cloudformation", bucket_only("cloudformation", tmp_path),
        {"EtherpadVersion": "1.8.17"}, lambda e: None)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # AWS_DEFAULT_REGION is us-east-1
    from deployer.core.providers import get_cloud

    assert get_cloud("aws").identity.region == "eu-west-1"
    capsys.readouterr()  # its log line
    assert run_cli("status", "--target", "aws", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["stack_name"] for e in doc["environments"]] == ["etherpad-cloudformation"]


def test_without_aws_region_the_default_region_and_profile_still_count(moto_session):
    from deployer.aws.session import default_session

    assert default_session({}).region_name == "us-east-1"  # AWS_DEFAULT_REGION
    assert default_session({"AWS_REGION": "ap-south-1"}).region_name == "ap-south-1"


# -- defect 5: stacks that are no environment ----------------------------------------------

def test_up_recreates_a_stack_left_in_review_in_progress(moto_session, monkeypatch, tmp_path,
                                                        capsys):
    """A CREATE change set never executed leaves REVIEW_IN_PROGRESS: no resources, no URL.
    `up` used to print 'REVIEW_IN_PROGRESS at None' and exit 0."""
    template = reduced_template("cloudformation", tmp_path)
    cfn = moto_session.client("cloudformation")
    cfn.create_change_set(StackName="etherpad-cloudformation", ChangeSetName="never-run",
                          ChangeSetType="CREATE", TemplateBody=template.read_text(),
                          Parameters=[{"ParameterKey": "EtherpadVersion",
                                       "ParameterValue": "1.8.17"}],
                          Capabilities=["CAPABILITY_IAM"])
    assert status_of(moto_session, "etherpad-cloudformation") == "REVIEW_IN_PROGRESS"
    use_template(monkeypatch, "cloudformation", template)
    monkeypatch.setenv("DEPLOYER_HOME", str(tmp_path / "home"))
    code = run_cli("up", "--strategy", "cloudformation", "--version", "1.8.17",
                   "--target", "aws")
    out = " ".join(capsys.readouterr().out.split())  # rich wraps a long line
    assert code == 0, out
    assert out.startswith("etherpad-cloudformation: CREATE_COMPLETE at http://")
    assert status_of(moto_session, "etherpad-cloudformation") == "CREATE_COMPLETE"


@pytest.mark.parametrize("status", ["ROLLBACK_FAILED", "DELETE_FAILED", "CREATE_FAILED"])
def test_a_half_created_stack_is_deleted_and_created_anew(moto_session, clock, tmp_path,
                                                         status):
    cloud = AwsCloud(moto_session, clock=clock)
    template = bucket_only("packer", tmp_path)
    cloud.ensure_environment("packer", template, {"EtherpadVersion": "1.8.17"}, lambda e: None)
    set_status("etherpad-packer", status)
    view = cloud.ensure_environment("packer", template, {"EtherpadVersion": "1.8.18"},
                                    lambda e: None)
    assert view.stack_status == "CREATE_COMPLETE" and view.release == "1.8.18"
    stacks = moto_session.client("cloudformation").list_stacks()["StackSummaries"]
    assert sorted(s["StackStatus"] for s in stacks if s["StackName"] == "etherpad-packer") == \
        ["CREATE_COMPLETE", "DELETE_COMPLETE"]


def test_a_half_created_stack_that_cannot_be_deleted_is_one_line(moto_session, clock,
                                                                 tmp_path):
    """moto cannot delete the VPC stack (DependencyViolation): the stack stays, and the
    error says what to do."""
    cloud = AwsCloud(moto_session, clock=clock)
    template = reduced_template("cloudformation", tmp_path)
    cloud.ensure_environment("cloudformation", template, {"EtherpadVersion": "1.8.17"},
                             lambda e: None)
    set_status("etherpad-cloudformation", "ROLLBACK_FAILED")
    with pytest.raises(StateError) as caught:
        cloud.ensure_environment("cloudformation", template, {"EtherpadVersion": "1.8.17"},
                                 lambda e: None)
    message = str(caught.value)
    assert message.startswith("stack etherpad-cloudformation is ROLLBACK_FAILED (not an "
                              "environment) and could not be deleted to create it anew: ")
    assert "\n" not in message and "CloudFormation console" in message


@pytest.mark.parametrize("status", ["REVIEW_IN_PROGRESS", "ROLLBACK_FAILED", "DELETE_FAILED",
                                    "UPDATE_ROLLBACK_FAILED"])
def test_release_onto_a_stack_that_is_no_environment_is_refused(moto_session, clock,
                                                                tmp_path, status):
    cloud = AwsCloud(moto_session, clock=clock)
    cloud.ensure_environment("packer", bucket_only("packer", tmp_path),
                             {"EtherpadVersion": "1.8.17"}, lambda e: None)
    set_status("etherpad-packer", status)
    with pytest.raises(StateError, match=f"^stack etherpad-packer is {status}: not an "
                                         "environment to release on .'deployer up"):
        cloud.update_stack("packer", {"EtherpadVersion": "1.8.18"}, lambda e: None)


def test_the_strategy_does_not_take_a_half_created_stack_for_an_environment(
        moto_session, clock, tmp_path):
    """The strategy used to return the REVIEW_IN_PROGRESS view (URL None) as live, and the
    release went on to bake an image and fail later with 'bad URL None'."""
    from deployer.core.strategy import ReleaseContext, load_strategy

    cloud = AwsCloud(moto_session, clock=clock)
    template = bucket_only("cloudformation", tmp_path)
    cloud.ensure_environment("cloudformation", template, {"EtherpadVersion": "1.8.16"},
                             lambda e: None)
    set_status("etherpad-cloudformation", "DELETE_FAILED")
    strategy = load_strategy("cloudformation")
    strategy.stack_template = lambda: template  # type: ignore[method-assign]
    strategy.initial_parameters = lambda ctx: {"EtherpadVersion": ctx.from_release}  # type: ignore[method-assign]
    ctx = ReleaseContext(release="1.8.18", from_release="1.8.17", cloud=cloud,
                         workdir=tmp_path, on_event=lambda e: None)
    view = strategy.ensure_environment(ctx)
    assert (view.stack_status, view.release, ctx.from_release) == \
        ("CREATE_COMPLETE", "1.8.17", "1.8.17")


# -- defect 12: down -----------------------------------------------------------------------

def test_down_of_a_missing_stack_says_it_does_not_exist(moto_session, capsys):
    assert run_cli("down", "--strategy", "packer", "--target", "aws") == 0
    assert capsys.readouterr().out == \
        "there is no packer environment on the aws target: nothing to remove\n"


def test_down_all_goes_past_a_stack_that_fails_and_reports_every_one(moto_session, clock,
                                                                     tmp_path, capsys):
    cloud = AwsCloud(moto_session, clock=clock)
    # etherpad-cloudformation comes before etherpad-packer; moto cannot delete its VPC.
    cloud.ensure_environment("cloudformation", reduced_template("cloudformation", tmp_path),
                             {"EtherpadVersion": "1.8.17"}, lambda e: None)
    cloud.ensure_environment("packer", bucket_only("packer", tmp_path),
                             {"EtherpadVersion": "1.8.17"}, lambda e: None)
    assert run_cli("down", "--all", "--target", "aws") == 1
    captured = capsys.readouterr()
    assert "all environments removed" not in captured.out
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith("deployer: error: 1 of 2 environments not removed "
                           "(etherpad-cloudformation: cloudformation:DeleteStack failed")
    assert "; removed: etherpad-packer" in line
    stacks = moto_session.client("cloudformation").list_stacks()["StackSummaries"]
    assert {s["StackName"]: s["StackStatus"] for s in stacks}["etherpad-packer"] == \
        "DELETE_COMPLETE"


def test_up_removes_its_work_dir(moto_session, monkeypatch, tmp_path):
    use_template(monkeypatch, "cloudformation", reduced_template("cloudformation", tmp_path))
    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    assert run_cli("up", "--strategy", "cloudformation", "--version", "1.8.17",
                   "--target", "aws") == 0
    assert not any((home / "work").iterdir())


# -- defect 7: CodeDeploy releases are recorded on the stack -------------------------------

def test_a_codedeploy_release_is_recorded_on_the_stack(moto_session, clock, tmp_path):
    """moto's deployments never progress: the follow gives CodeDeploy's verdict, everything
    else (the deployment, the record on the stack) runs on moto."""
    from deployer.cloud.port import DeploymentResult
    from tests.aws.test_moto import codedeploy_group, enable_versioning

    verdicts = ["Failed", "Succeeded"]

    class Followed(AwsCloud):
        def _follow_deployment(self, deployment_id, on_event, watch):
            return DeploymentResult(deployment_id=deployment_id, status=verdicts.pop(0))

    cloud = Followed(moto_session, clock=clock)
    view = cloud.ensure_environment("codedeploy", reduced_template("codedeploy", tmp_path),
                                    {"EtherpadVersion": "1.8.17"}, lambda e: None)
    codedeploy_group(moto_session)
    enable_versioning(moto_session, view.outputs["ArtifactBucketName"])
    bundle = tmp_path / "etherpad-1.8.18.tgz"
    bundle.write_bytes(b"revision")
    artifact = cloud.put_artifact("codedeploy", "revisions/etherpad-1.8.18.tgz", bundle)

    cloud.deploy_revision("codedeploy", artifact, lambda e: None, release="1.8.18")
    assert cloud.describe_environment("codedeploy").release == "1.8.17"  # failed: not out
    cloud.deploy_revision("codedeploy", artifact, lambda e: None, release="1.8.18")
    after = cloud.describe_environment("codedeploy")
    assert after.release == "1.8.18" and after.parameters["EtherpadVersion"] == "1.8.18"
    assert after.stack_status == "UPDATE_COMPLETE"
    # The other parameters kept their values.
    assert {k: v for k, v in after.parameters.items() if k != "EtherpadVersion"} == \
        {k: v for k, v in view.parameters.items() if k != "EtherpadVersion"}

"""The AWS adapter against moto: stacks from the real templates (reduced where moto stops
short, see tests.aws.support.reduced_template), assets and revision uploads, deployment
creation, image pruning, and the preflight.

moto runs every stack operation synchronously, so these tests check what is sent and what
is read back; the live following of slow operations is tested with Stubber timelines in
test_stubbed.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import boto3
import pytest

from deployer.aws.provider import AwsCloud, stack_name
from deployer.aws.storage import assets_bucket_name
from deployer.base.errors import CloudError, ConfigError
from tests.aws.support import reduced_template

ACCOUNT = "123456789012"


def public_ami(session: boto3.Session) -> str:
    return session.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def create(cloud: AwsCloud, strategy: str, tmp_path: Path, **parameters: str):
    events: list = []
    view = cloud.ensure_environment(strategy, reduced_template(strategy, tmp_path),
                                    {"EtherpadVersion": "1.8.17", **parameters}, events.append)
    return view, events


@pytest.mark.parametrize("strategy", ["cloudformation", "packer", "codedeploy"])
def test_create_and_update(cloud, moto_session, tmp_path, strategy):
    extra = {"AMI": public_ami(moto_session)} if strategy == "packer" else {}
    view, events = create(cloud, strategy, tmp_path, **extra)
    assert view.stack_name == stack_name(strategy) == f"etherpad-{strategy}"
    assert view.stack_status == "CREATE_COMPLETE"
    assert view.release == "1.8.17"
    assert view.url and view.url.startswith("http://") and view.url == view.outputs["URL"]
    assert view.instances and all(i.state == "InService" for i in view.instances)
    assert [e.status for e in events if e.resource == view.stack_name][-1] == "CREATE_COMPLETE"

    result = cloud.update_stack(strategy, {"EtherpadVersion": "1.8.18"}, events.append)
    assert result.status == "UPDATE_COMPLETE" and not result.rolled_back
    after = cloud.describe_environment(strategy)
    assert after.release == "1.8.18"
    # Parameters not named kept their values (UsePreviousValue).
    assert {k: v for k, v in after.parameters.items() if k != "EtherpadVersion"} == \
        {k: v for k, v in view.parameters.items() if k != "EtherpadVersion"}


def test_delete_empties_the_artifact_bucket_first(cloud, moto_session, tmp_path):
    """moto 5 cannot delete the full stacks (its stack delete fails on the VPC with a
    DependencyViolation whatever the order), so deletion runs on the codedeploy template
    reduced to its versioned artifact bucket: the part CloudFormation itself cannot delete
    while it holds objects."""
    import json

    document = json.loads(reduced_template("codedeploy", tmp_path).read_text())
    document["Resources"] = {"ArtifactBucket": document["Resources"]["ArtifactBucket"]}
    document["Outputs"] = {"ArtifactBucketName": document["Outputs"]["ArtifactBucketName"]}
    document["Parameters"] = {"EtherpadVersion": document["Parameters"]["EtherpadVersion"]}
    path = tmp_path / "bucket-only.json"
    path.write_text(json.dumps(document))
    events: list = []
    view = cloud.ensure_environment("codedeploy", path, {"EtherpadVersion": "1.8.17"},
                                    events.append)
    enable_versioning(moto_session, view.outputs["ArtifactBucketName"])
    bundle = tmp_path / "r.tgz"
    bundle.write_bytes(b"x")
    for _ in range(3):
        artifact = cloud.put_artifact("codedeploy", "revisions/r.tgz", bundle)
    moto_session.client("s3").delete_object(Bucket=artifact.bucket, Key=artifact.key)  # a marker

    cloud.destroy_environment("codedeploy", events.append)
    assert cloud.describe_environment("codedeploy") is None
    assert events[-1].resource == "etherpad-codedeploy" and events[-1].status == "DELETE_COMPLETE"
    names = [b["Name"] for b in moto_session.client("s3").list_buckets()["Buckets"]]
    assert artifact.bucket not in names
    cloud.destroy_environment("codedeploy", events.append)  # nothing there: nothing to do


def test_assets_bucket_and_url(cloud, moto_session, tmp_path):
    view, _ = create(cloud, "cloudformation", tmp_path)
    url = view.parameters["AssetsUrl"]
    bucket = assets_bucket_name(ACCOUNT, "us-east-1")
    assert url.startswith(f"s3://{bucket}/deployer/etherpad-assets-") and url.endswith(".tgz")
    s3 = moto_session.client("s3")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    body = s3.get_object(Bucket=bucket, Key=url.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as tar:
        names = tar.getnames()
    # The user data runs "$ASSETS/bin/install-etherpad.sh" from the unpacked tarball.
    assert "bin/install-etherpad.sh" in names and "settings.json.template" in names
    # Same assets, same key: an update re-sends the same URL and changes nothing.
    assert cloud.update_stack("cloudformation", {}, lambda e: None).reason == "no changes"


def test_empty_change_set_is_nothing_to_do(cloud, moto_session, tmp_path):
    create(cloud, "packer", tmp_path, AMI=public_ami(moto_session))
    events: list = []
    result = cloud.update_stack("packer", {"EtherpadVersion": "1.8.17"}, events.append)
    assert result.status == "CREATE_COMPLETE" and result.reason == "no changes"
    assert not result.rolled_back
    assert [e.reason for e in events] == ["no changes: nothing to do"]
    cfn = moto_session.client("cloudformation")
    assert cfn.describe_stacks(StackName="etherpad-packer")["Stacks"][0]["StackStatus"] == \
        "CREATE_COMPLETE"


def test_unknown_parameter_is_a_config_error(cloud, moto_session, tmp_path):
    create(cloud, "packer", tmp_path, AMI=public_ami(moto_session))
    with pytest.raises(ConfigError, match="no parameter Nope"):
        cloud.update_stack("packer", {"Nope": "1"}, lambda e: None)


def test_large_template_is_sent_through_s3(cloud, moto_session, tmp_path):
    path = reduced_template("packer", tmp_path)
    text = path.read_text()
    padded = text.replace('"Resources"', '"Metadata": {"Padding": "' + "x" * 52_000 + '"}, '
                          '"Resources"', 1)
    path.write_text(padded)
    view = cloud.ensure_environment("packer", path, {"EtherpadVersion": "1.8.17",
                                                     "AMI": public_ami(moto_session)},
                                    lambda e: None)
    assert view.stack_status == "CREATE_COMPLETE"
    keys = [o["Key"] for o in moto_session.client("s3").list_objects_v2(
        Bucket=assets_bucket_name(ACCOUNT, "us-east-1"))["Contents"]]
    assert any(k.startswith("deployer/templates/etherpad-packer-") for k in keys)


def enable_versioning(session: boto3.Session, bucket: str) -> None:
    """The template turns versioning on (VersioningConfiguration); moto 5's CloudFormation
    ignores that property, so the test does what CloudFormation would have done."""
    session.client("s3").put_bucket_versioning(Bucket=bucket,
                                               VersioningConfiguration={"Status": "Enabled"})


def codedeploy_group(session: boto3.Session) -> None:
    """What the template's CodeDeploy resources create (moto's CloudFormation has no model)."""
    codedeploy = session.client("codedeploy")
    codedeploy.create_application(applicationName="etherpad-codedeploy", computePlatform="Server")
    codedeploy.create_deployment_group(
        applicationName="etherpad-codedeploy", deploymentGroupName="etherpad-codedeploy-group",
        serviceRoleArn=f"arn:aws:iam::{ACCOUNT}:role/codedeploy",
        deploymentConfigName="CodeDeployDefault.HalfAtATime",
        autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]})


def test_revision_upload_and_deployment(cloud, moto_session, tmp_path):
    view, _ = create(cloud, "codedeploy", tmp_path)
    codedeploy_group(moto_session)
    enable_versioning(moto_session, view.outputs["ArtifactBucketName"])
    bundle = tmp_path / "etherpad-1.8.18.tgz"
    bundle.write_bytes(b"revision bytes")
    first = cloud.put_artifact("codedeploy", "revisions/etherpad-1.8.18.tgz", bundle)
    second = cloud.put_artifact("codedeploy", "revisions/etherpad-1.8.18.tgz", bundle)
    bucket = cloud.describe_environment("codedeploy").outputs["ArtifactBucketName"]
    assert first.bucket == bucket and first.size == len(b"revision bytes")
    assert first.etag == hashlib.md5(b"revision bytes").hexdigest()
    # The artifact bucket is versioned: each upload is its own version, recorded.
    assert first.version and second.version and first.version != second.version

    deployment_id = cloud.start_deployment("codedeploy", first, release="1.8.18")
    info = moto_session.client("codedeploy").get_deployment(
        deploymentId=deployment_id)["deploymentInfo"]
    assert info["revision"] == {"revisionType": "S3", "s3Location": {
        "bucket": bucket, "key": "revisions/etherpad-1.8.18.tgz", "bundleType": "tgz",
        "eTag": first.etag, "version": first.version}}
    assert info["deploymentConfigName"] == "CodeDeployDefault.HalfAtATime"
    assert info["autoRollbackConfiguration"] == {
        "enabled": True, "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]}


def register(session: boto3.Session, name: str, release: str) -> tuple[str, list[str]]:
    ec2 = session.client("ec2")
    image_id = ec2.register_image(Name=name, RootDeviceName="/dev/sda1")["ImageId"]
    ec2.create_tags(Resources=[image_id], Tags=[{"Key": "Application", "Value": "etherpad"},
                                                {"Key": "Release", "Value": release}])
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    return image_id, [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]]


def test_images_list_and_prune(cloud, moto_session, tmp_path):
    from deployer.core.images import prune_images

    snapshots = {}
    for release in ("1.8.16", "1.8.17", "1.8.18"):
        image_id, snaps = register(moto_session, f"etherpad-{release}", release)
        snapshots[image_id] = snaps
    used = next(iter(snapshots))
    # One image is the one the packer stack runs: it must survive any prune.
    create(cloud, "packer", tmp_path, AMI=used)

    listed = {i.image_id: i for i in cloud.list_images()}
    assert set(listed) == set(snapshots)
    assert {i.release for i in listed.values()} == {"1.8.16", "1.8.17", "1.8.18"}
    assert all(i.size_bytes > 0 and i.created_at > 0 for i in listed.values())
    assert used in cloud.images_in_use()

    result = prune_images(cloud, keep=1)
    newest = max(listed.values(), key=lambda i: (i.created_at, i.image_id))
    assert [i.image_id for i in result.plan.keep] == [newest.image_id]
    assert not result.refused and len(result.deregistered) == (1 if newest.image_id != used else 2)
    assert used not in result.deregistered
    gone = set(result.deregistered)
    assert set(result.deleted_snapshots) == {s for i in gone for s in snapshots[i]}
    ec2 = moto_session.client("ec2")
    remaining = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert remaining == set(snapshots) - gone
    left = {s["SnapshotId"] for s in ec2.describe_snapshots()["Snapshots"]}
    assert not set(result.deleted_snapshots) & left and set(snapshots[used]) <= left


def test_deregister_refuses_an_image_in_use(cloud, moto_session, tmp_path):
    from deployer.base.errors import StateError

    image, _ = register(moto_session, "etherpad-1.8.17", "1.8.17")
    create(cloud, "packer", tmp_path, AMI=image)
    with pytest.raises(StateError, match="in use"):
        cloud.deregister_image(image)


def test_preflight_without_credentials_is_one_line_and_creates_nothing(moto_session,
                                                                      monkeypatch, capsys):
    from deployer.cli.app import main

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(SystemExit) as exited:
        main(["up", "--strategy", "packer", "--version", "1.8.17", "--target", "aws"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("deployer: error: no AWS credentials (set AWS_PROFILE")

    # Nothing was created: look with credentials again.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    session = boto3.Session(region_name="us-east-1")
    assert session.client("s3").list_buckets()["Buckets"] == []
    assert session.client("cloudformation").describe_stacks()["Stacks"] == []


def test_preflight_without_region(monkeypatch):
    from deployer.core.providers import get_cloud

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(CloudError) as caught:
        get_cloud("aws")
    assert str(caught.value).startswith("no AWS region (set AWS_REGION or AWS_DEFAULT_REGION")


def test_preflight_with_an_unknown_profile(monkeypatch):
    from deployer.core.providers import get_cloud

    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(CloudError, match="AWS profile 'nope' is not in the AWS config files"):
        get_cloud("aws")


def test_preflight_names_the_identity(cloud):
    identity = cloud.preflight()
    assert identity.account == ACCOUNT and identity.region == "us-east-1"


def test_cli_status_and_images_on_aws(cloud, moto_session, tmp_path, capsys):
    import json

    from deployer.cli.app import main

    image, _ = register(moto_session, "etherpad-1.8.17", "1.8.17")
    create(cloud, "packer", tmp_path, AMI=image)
    with pytest.raises(SystemExit) as exited:
        main(["status", "--target", "aws", "--json"])
    assert exited.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"] == "aws"
    assert [(e["stack_name"], e["release"]) for e in doc["environments"]] == \
        [("etherpad-packer", "1.8.17")]
    assert [i["image_id"] for i in doc["images"]] == [image]
    with pytest.raises(SystemExit) as exited:
        main(["images", "list", "--target", "aws", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert exited.value.code == 0 and listed[0]["image_id"] == image and listed[0]["in_use"]
    with pytest.raises(SystemExit) as exited:
        main(["images", "prune", "--keep", "0", "--target", "aws"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and f"kept {image} (1.8.17): in use" in out

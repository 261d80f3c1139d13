"""The realistic Etherpad stack end to end, and what triggers a rolling update."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from deployer.cfn import specs
from deployer.cfn.templates import StackModel, load_stack, rolling_update_triggers

from .conftest import FIXTURES

ETHERPAD = FIXTURES / "etherpad.yaml"
ATTRIBUTES = {
    ("LoadBalancer", "DNSName"): "127.0.0.1:8080",
    ("Database", "Endpoint.Address"): "127.0.0.1",
    ("Database", "Endpoint.Port"): "5432",
}


def etherpad(**parameters: str) -> StackModel:
    parameters.setdefault("AdminPassword", "admin-secret-1")
    return load_stack(ETHERPAD, parameters, stack_name="etherpad-dev",
                      attribute_resolver=lambda logical, attribute:
                      ATTRIBUTES.get((logical, attribute)))


def test_realistic_stack_typed_specs():
    stack = etherpad()
    assert stack.parameters["EtherpadVersion"] == "1.8.17"  # default applied
    assert stack.conditions == {"IsProd": False, "IsDev": True, "ManyInstances": False}
    assert stack.skipped == {"ServerErrorAlarm": "IsProd"}

    assert stack.target_groups["TargetGroup"] == specs.TargetGroupSpec(
        logical_id="TargetGroup", name="etherpad-dev-TargetGroup", port=9001,
        health_check_interval_s=5, health_check_timeout_s=2, healthy_threshold=2,
        unhealthy_threshold=2, matcher="200,302", deregistration_delay_s=10)
    assert stack.load_balancers["LoadBalancer"].idle_timeout_s == 120
    assert stack.load_balancers["LoadBalancer"].subnets == ["etherpad-dev-SubnetA",
                                                            "etherpad-dev-SubnetB"]
    assert stack.listeners["Listener"] == specs.ListenerSpec(
        logical_id="Listener", load_balancer="LoadBalancer", port=80,
        default_target_group="TargetGroup")

    template = stack.launch_templates["LaunchTemplate"]
    assert (template.image_id, template.instance_type) == ("ami-0c55b159cbfafe1f0", "t3.micro")
    assert template.metadata_options == {"HttpTokens": "required", "HttpEndpoint": "enabled"}
    assert template.user_data.startswith("#!/bin/bash\nset -euo pipefail\n")
    assert "install-etherpad --release 1.8.17" in template.user_data
    assert "--db-host 127.0.0.1 --db-port 5432" in template.user_data
    assert "--db-secret etherpad-dev-DatabaseSecret" in template.user_data
    assert "export HOME=${HOME:-/root}" in template.user_data  # ${!HOME} escape
    assert ("cfn-signal -e $? --stack etherpad-dev --resource EtherpadGroup "
            "--region us-east-1") in template.user_data

    group = stack.auto_scaling_groups["EtherpadGroup"]
    assert (group.min_size, group.max_size, group.desired_capacity) == (1, 2, 1)
    assert group.health_check_type is specs.HealthCheckType.ELB
    assert group.health_check_grace_period_s == 120
    assert group.target_groups == ["TargetGroup"]
    assert group.launch_template.logical_id == "LaunchTemplate"
    assert group.launch_template.tracking is specs.VersionTracking.LATEST
    assert group.creation_policy == specs.CreationPolicySpec(signal_count=1, signal_timeout_s=900)
    assert group.rolling_update == specs.RollingUpdatePolicy(
        max_batch_size=1, min_instances_in_service=1, pause_time_s=600,
        wait_on_resource_signals=True,
        suspend_processes=["HealthCheck", "ReplaceUnhealthy", "AZRebalance",
                           "AlarmNotification", "ScheduledActions"])

    assert stack.codedeploy_applications["Application"].name == "etherpad-dev-etherpad"
    deployments = stack.deployment_groups["DeploymentGroup"]
    assert (deployments.application, deployments.application_name) == (
        "Application", "etherpad-dev-etherpad")
    assert deployments.deployment_config_name == "CodeDeployDefault.OneAtATime"
    assert deployments.auto_scaling_groups == ["EtherpadGroup"]
    assert deployments.target_groups == ["TargetGroup"]
    assert deployments.with_traffic_control
    assert deployments.auto_rollback == specs.AutoRollbackSpec(
        enabled=True, events=["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"])
    assert deployments.alarm_configuration.enabled is False  # dev: AWS::NoValue
    assert stack.deployment_configs["TwoAtATime"].minimum_healthy_hosts_value == 50

    assert stack.buckets["ArtifactBucket"] == specs.BucketSpec(
        logical_id="ArtifactBucket", name="etherpad-dev-artifactbucket", versioning=True)
    assert stack.ssm_parameters["ReleaseParameter"] == specs.SsmParameterSpec(
        logical_id="ReleaseParameter", name="/etherpad/etherpad-dev/release", value="1.8.17")
    database = stack.databases["Database"]
    assert (database.engine, database.db_name, database.port) == (
        specs.DatabaseEngine.POSTGRES, "etherpad", 5432)
    assert database.master_password == specs.SecretReference(secret="DatabaseSecret",
                                                             json_key="password")
    assert stack.secrets["DatabaseSecret"].generate.generate_string_key == "password"


def test_realistic_stack_recorded_resources_and_outputs():
    stack = etherpad()
    recorded = {resource.logical_id: resource.type for resource in stack.recorded}
    assert recorded == {
        "Vpc": "AWS::EC2::VPC", "InternetGateway": "AWS::EC2::InternetGateway",
        "GatewayAttachment": "AWS::EC2::VPCGatewayAttachment", "SubnetA": "AWS::EC2::Subnet",
        "SubnetB": "AWS::EC2::Subnet", "RouteTable": "AWS::EC2::RouteTable",
        "DefaultRoute": "AWS::EC2::Route", "SubnetARoutes": "AWS::EC2::SubnetRouteTableAssociation",
        "SubnetBRoutes": "AWS::EC2::SubnetRouteTableAssociation",
        "LoadBalancerSecurityGroup": "AWS::EC2::SecurityGroup",
        "InstanceSecurityGroup": "AWS::EC2::SecurityGroup",
        "InstanceIngress": "AWS::EC2::SecurityGroupIngress",
        "DatabaseSecurityGroup": "AWS::EC2::SecurityGroup", "InstanceRole": "AWS::IAM::Role",
        "InstancePolicy": "AWS::IAM::Policy", "InstanceProfile": "AWS::IAM::InstanceProfile",
        "LogGroup": "AWS::Logs::LogGroup", "CodeDeployRole": "AWS::IAM::Role",
        "DatabaseSubnetGroup": "AWS::RDS::DBSubnetGroup",
    }
    subnet = stack.resources["SubnetB"].properties
    assert (subnet["AvailabilityZone"], subnet["CidrBlock"]) == ("us-east-1b", "10.0.1.0/24")
    assert stack.resources["DefaultRoute"].depends_on == ["GatewayAttachment"]
    assert stack.resources["LogGroup"].properties["RetentionInDays"] == 7
    assert stack.resources["ArtifactBucket"].deletion_policy == "Retain"
    policy = stack.resources["InstancePolicy"].properties["PolicyDocument"]["Statement"]
    assert policy[0]["Resource"] == "arn:aws:s3:::etherpad-dev-artifactbucket/*"
    assert stack.outputs == {
        "URL": "http://127.0.0.1:8080/",
        "ArtifactBucketName": "etherpad-dev-artifactbucket",
        "DeploymentGroupName": "etherpad-dev-DeploymentGroup",
        "ApplicationName": "etherpad-dev-etherpad",
        "AvailabilityZones": "us-east-1a,us-east-1b",
        "DevNote": "dev: no alarms, 1 instance(s)",
    }
    assert stack.unresolved_outputs == {}


def test_realistic_stack_in_production():
    stack = etherpad(Environment="prod", DesiredInstances="2")
    assert stack.conditions["ManyInstances"] is True
    assert stack.auto_scaling_groups["EtherpadGroup"].max_size == 4
    assert stack.auto_scaling_groups["EtherpadGroup"].creation_policy.signal_count == 2
    deployments = stack.deployment_groups["DeploymentGroup"]
    assert (deployments.deployment_config, deployments.deployment_config_name) == (
        "TwoAtATime", "etherpad-dev-TwoAtATime")
    assert deployments.alarm_configuration == specs.AlarmConfigurationSpec(
        enabled=True, alarms=["etherpad-dev-ServerErrorAlarm"])
    assert stack.resources["Database"].properties["MultiAZ"] is True
    assert "ServerErrorAlarm" in stack.resources and stack.skipped == {}
    assert stack.outputs["AlarmName"] == "etherpad-dev-ServerErrorAlarm"
    assert "DevNote" not in stack.outputs


def test_noecho_values_stay_out_of_what_is_printed():
    stack = etherpad(AdminPassword="never-print-me")
    assert "never-print-me" in stack.launch_templates["LaunchTemplate"].user_data
    assert stack.noecho_parameters == frozenset({"AdminPassword"})
    for shown in (repr(stack), str(stack), repr(stack.launch_templates),
                  str(stack.displayed_parameters())):
        assert "never-print-me" not in shown
    assert "--admin-password '****'" in stack.redact(
        stack.launch_templates["LaunchTemplate"].user_data)


def test_json_templates_load_too(tmp_path):
    path = tmp_path / "bucket.json"
    path.write_text(json.dumps({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"Suffix": {"Type": "String", "Default": "a"}},
        "Resources": {"Artifacts": {"Type": "AWS::S3::Bucket", "Properties": {
            "BucketName": {"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, {"Ref": "Suffix"}]]},
            "VersioningConfiguration": {"Status": "Enabled"}}}},
        "Outputs": {"Bucket": {"Value": {"Ref": "Artifacts"}}},
    }, indent=2))
    stack = load_stack(path, {"Suffix": "b"}, stack_name="json")
    assert stack.buckets["Artifacts"].name == "json-b"
    assert stack.outputs == {"Bucket": "json-b"}


# --- rolling update triggers ----------------------------------------------------------------

def test_new_release_in_user_data_triggers_a_rolling_update():
    old, new = etherpad(EtherpadVersion="1.8.17"), etherpad(EtherpadVersion="1.8.18")
    assert rolling_update_triggers(old, new) == {
        "EtherpadGroup": ["launch template LaunchTemplate changed: LaunchTemplateData.UserData"]}


def test_new_image_triggers_a_rolling_update():
    old, new = etherpad(), etherpad(AMI="ami-0123456789abcdef0")
    assert rolling_update_triggers(old, new) == {
        "EtherpadGroup": ["launch template LaunchTemplate changed: LaunchTemplateData.ImageId"]}


def test_size_changes_do_not_replace_instances():
    assert rolling_update_triggers(etherpad(), etherpad(DesiredInstances="2")) == {}
    assert rolling_update_triggers(etherpad(), etherpad()) == {}


FLEET = """
Parameters:
  Image: {Type: String, Default: ami-1}
  Subnets: {Type: CommaDelimitedList, Default: 'subnet-1,subnet-2'}
  Version: {Type: String, Default: '1'}
  Template: {Type: String, Default: Web, AllowedValues: [Web, Other]}
Conditions:
  UseWeb: !Equals [!Ref Template, Web]
Resources:
  Web:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData: {ImageId: !Ref Image}
  Other:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData: {ImageId: !Ref Image}
  Tracking:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      MinSize: 1
      MaxSize: 2
      VPCZoneIdentifier: !Ref Subnets
      LaunchTemplate:
        LaunchTemplateId: !If [UseWeb, !Ref Web, !Ref Other]
        Version: !If [UseWeb, !GetAtt Web.LatestVersionNumber, !GetAtt Other.LatestVersionNumber]
  Pinned:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      MinSize: 1
      MaxSize: 2
      LaunchTemplate:
        LaunchTemplateId: !Ref Web
        Version: !Ref Version
"""


@pytest.mark.parametrize("change, expected", [
    ({"Subnets": "subnet-1,subnet-3"}, {"Tracking": ["VPCZoneIdentifier changed"]}),
    ({"Version": "2"}, {"Pinned": ["launch template version is now 2 (was 1)"]}),
    # A pinned version does not follow template changes: CloudFormation sees no change.
    ({"Image": "ami-2"}, {"Tracking": ["launch template Web changed: LaunchTemplateData.ImageId"]}),
    ({"Template": "Other"}, {"Tracking": ["launch template is now Other (was Web)"]}),
])
def test_rolling_update_triggers(templates, change, expected):
    old, new = templates.load(FLEET), templates.load(FLEET, change)
    assert rolling_update_triggers(old, new) == expected


def test_new_groups_are_created_not_updated(templates):
    old = templates.load(FLEET.split("  Pinned:")[0])
    assert rolling_update_triggers(old, templates.load(FLEET, {"Image": "ami-2"})) == {
        "Tracking": ["launch template Web changed: LaunchTemplateData.ImageId"]}


# --- the fixture is real CloudFormation -----------------------------------------------------

@pytest.mark.skipif(shutil.which("cfn-lint") is None, reason="cfn-lint is not installed")
def test_realistic_fixture_passes_cfn_lint():
    result = subprocess.run(["cfn-lint", str(ETHERPAD)], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr

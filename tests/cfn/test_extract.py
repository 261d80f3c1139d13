"""Typed specs: AWS defaults, AWS validation, and no property silently ignored."""

from __future__ import annotations

import base64
import textwrap

import pytest

from deployer.base.errors import ConfigError, UnsupportedProperty
from deployer.cfn import specs
from deployer.cfn.specs import parse_duration
from deployer.localcloud.stack import target_group_settings

from .conftest import assert_at

# A launch template, a target group and a group using both: the smallest useful fleet.
FLEET = """
Resources:
  Web:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        ImageId: ami-1
  Pool:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Port: 9001
  Group:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      MinSize: 1
      MaxSize: 3
      LaunchTemplate:
        LaunchTemplateId: !Ref Web
        Version: !GetAtt Web.LatestVersionNumber
"""


def fleet(*extra: str) -> str:
    """FLEET plus more resources (written at the same indentation as in FLEET)."""
    return FLEET + "".join(textwrap.indent(textwrap.dedent(text).strip("\n"), "  ") + "\n"
                           for text in extra)


def with_property(resource: str, lines: str) -> str:
    """FLEET with ``lines`` (YAML at property level) added to ``resource``'s Properties."""
    anchor = f"  {resource}:\n"
    head, tail = FLEET.split(anchor)
    props_at = tail.index("    Properties:\n") + len("    Properties:\n")
    block = textwrap.indent(textwrap.dedent(lines).strip("\n"), "      ") + "\n"
    return head + anchor + tail[:props_at] + block + tail[props_at:]


def with_attribute(resource: str, lines: str) -> str:
    """FLEET with a resource attribute (CreationPolicy, UpdatePolicy...) on ``resource``."""
    anchor = f"  {resource}:\n"
    block = textwrap.indent(textwrap.dedent(lines).strip("\n"), "    ") + "\n"
    return FLEET.replace(anchor, anchor + block)


# --- target groups ------------------------------------------------------------------------

def test_target_group_defaults_are_aws_defaults(templates):
    pool = templates.load(FLEET).target_groups["Pool"]
    assert pool == specs.TargetGroupSpec(
        logical_id="Pool", name="test-Pool", port=9001, protocol="HTTP", target_type="instance",
        health_check_path="/", health_check_port="traffic-port", health_check_interval_s=30,
        health_check_timeout_s=5, healthy_threshold=5, unhealthy_threshold=2, matcher="200",
        deregistration_delay_s=300)


def test_target_group_fast_health_checks(templates):
    pool = templates.load(with_property("Pool", """
        Name: etherpad
        HealthCheckPath: /health
        HealthCheckPort: '9002'
        HealthCheckIntervalSeconds: 5
        HealthCheckTimeoutSeconds: '2'
        HealthyThresholdCount: 2
        UnhealthyThresholdCount: 3
        Matcher: {HttpCode: '200-299,302'}
        TargetGroupAttributes:
          - {Key: deregistration_delay.timeout_seconds, Value: '0'}
          - {Key: stickiness.enabled, Value: 'false'}
        VpcId: vpc-1
        Tags: [{Key: a, Value: b}]
    """)).target_groups["Pool"]
    assert (pool.name, pool.health_check_path, pool.health_check_port) == (
        "etherpad", "/health", "9002")
    assert (pool.health_check_interval_s, pool.health_check_timeout_s) == (5, 2)
    assert (pool.healthy_threshold, pool.unhealthy_threshold) == (2, 3)
    assert pool.deregistration_delay_s == 0
    assert [pool.matches(code) for code in (200, 250, 302, 301, 404)] == [
        True, True, True, False, False]


def test_the_load_balancer_checks_with_every_health_setting_of_the_template(templates):
    pool = templates.load(with_property("Pool", """
        HealthCheckPath: /health
        HealthCheckPort: '9002'
        HealthCheckIntervalSeconds: 5
        HealthCheckTimeoutSeconds: 2
        HealthyThresholdCount: 2
        UnhealthyThresholdCount: 3
        Matcher: {HttpCode: '200-299'}
        TargetGroupAttributes:
          - {Key: deregistration_delay.timeout_seconds, Value: '0'}
    """)).target_groups["Pool"]
    settings = target_group_settings(pool)
    assert (settings.health_check_path, settings.health_check_port) == ("/health", "9002")
    assert (settings.health_check_interval_s, settings.health_check_timeout_s) == (5, 2)
    assert (settings.healthy_threshold, settings.unhealthy_threshold) == (2, 3)
    assert (settings.matcher, settings.deregistration_delay_s) == ("200-299", 0)


@pytest.mark.parametrize("lines, prop, message", [
    ("HealthCheckIntervalSeconds: 4", "HealthCheckIntervalSeconds", "4 is out of range (5..300)"),
    ("HealthCheckTimeoutSeconds: 30", "HealthCheckTimeoutSeconds",
     "must be smaller than HealthCheckIntervalSeconds (30)"),
    ("HealthyThresholdCount: 11", "HealthyThresholdCount", "11 is out of range (2..10)"),
    ("UnhealthyThresholdCount: one", "UnhealthyThresholdCount", "must be a whole number"),
    ("HealthCheckPath: health", "HealthCheckPath", "must start with /"),
    ("HealthCheckPort: '0'", "HealthCheckPort", "0 is out of range"),
    ("Matcher: {HttpCode: '200-'}", "Matcher.HttpCode", "must be codes or ranges within 200-499"),
    ("Matcher: {HttpCode: '500'}", "Matcher.HttpCode", "must be codes or ranges within 200-499"),
    ("TargetGroupAttributes: [{Key: deregistration_delay.timeout_seconds, Value: '3601'}]",
     "TargetGroupAttributes.0.Value", "3601 is out of range (0..3600)"),
    ("HealthCheckEnabled: maybe", "HealthCheckEnabled", "must be true or false"),
    ("TargetType: pod", "TargetType", "'pod' is not one of instance, ip, lambda, alb"),
])
def test_target_group_validation(templates, lines, prop, message):
    text = with_property("Pool", lines)
    error = templates.error(text)
    assert type(error) is ConfigError
    assert f"resource Pool: property {prop}: " in str(error) and message in str(error)
    assert_at(error, text, lines.split(":")[0])


@pytest.mark.parametrize("lines, prop, why", [
    ("Protocol: HTTPS", "Protocol", "HTTPS is not emulated"),
    ("TargetType: ip", "TargetType", "ip is not emulated"),
    ("ProtocolVersion: GRPC", "ProtocolVersion", "GRPC is not emulated"),
    ("Targets: [{Id: i-1}]", "Targets", ""),
    ("HealthCheckPathh: /", "HealthCheckPathh", ""),
    ("Matcher: {GrpcCode: '12'}", "Matcher.GrpcCode", ""),
    ("TargetGroupAttributes: [{Key: stickiness.enabled, Value: 'true'}]",
     "TargetGroupAttributes.stickiness.enabled", "only false is emulated"),
    ("TargetGroupAttributes: [{Key: load_balancing.cross_zone.enabled, Value: 'true'}]",
     "TargetGroupAttributes.load_balancing.cross_zone.enabled", ""),
])
def test_target_group_unsupported_properties(templates, lines, prop, why):
    text = with_property("Pool", lines)
    error = templates.error(text, error=UnsupportedProperty)
    assert (error.resource, error.prop) == ("Pool", prop)
    assert f"resource Pool: property {prop} is not supported by the local cloud" in str(error)
    assert why in str(error)
    assert_at(error, text, lines.split(":")[0])


# --- load balancer and listener -----------------------------------------------------------

LISTENED = """
Lb:
  Type: AWS::ElasticLoadBalancingV2::LoadBalancer
  Properties:
    Subnets: [subnet-1, subnet-2]
    SecurityGroups: [sg-1]
    LoadBalancerAttributes:
      - {Key: idle_timeout.timeout_seconds, Value: '30'}
      - {Key: deletion_protection.enabled, Value: 'false'}
Http:
  Type: AWS::ElasticLoadBalancingV2::Listener
  Properties:
    LoadBalancerArn: !Ref Lb
    Port: 80
    Protocol: HTTP
    DefaultActions:
      - Type: forward
        TargetGroupArn: !Ref Pool
"""


def test_load_balancer_and_listener(templates):
    stack = templates.load(fleet(LISTENED))
    assert stack.load_balancers["Lb"] == specs.LoadBalancerSpec(
        logical_id="Lb", name="test-Lb", scheme="internet-facing", idle_timeout_s=30,
        subnets=["subnet-1", "subnet-2"], security_groups=["sg-1"])
    assert stack.listeners["Http"] == specs.ListenerSpec(
        logical_id="Http", load_balancer="Lb", port=80, protocol="HTTP",
        default_target_group="Pool")


def test_listener_forward_config_with_one_target_group(templates):
    text = fleet(LISTENED.replace("TargetGroupArn: !Ref Pool", textwrap.dedent("""\
        ForwardConfig:
                  TargetGroups: [{TargetGroupArn: !Ref Pool, Weight: 1}]""")))
    assert templates.load(text).listeners["Http"].default_target_group == "Pool"


@pytest.mark.parametrize("old, new, prop, cls, message", [
    ("Type: forward", "Type: redirect", "DefaultActions.0.Type", UnsupportedProperty,
     "redirect is not emulated"),
    ("Protocol: HTTP\n", "Protocol: HTTPS\n    Certificates: [{CertificateArn: x}]\n",
     "Certificates", UnsupportedProperty, ""),
    ("TargetGroupArn: !Ref Pool",
     "TargetGroupArn: arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/x/y",
     "DefaultActions.0.TargetGroupArn", ConfigError, "must refer to a TargetGroup of this stack"),
    ("LoadBalancerArn: !Ref Lb", "LoadBalancerArn: !Ref Pool", "LoadBalancerArn", ConfigError,
     "must refer to a LoadBalancer of this stack"),
    ("    Subnets: [subnet-1, subnet-2]\n", "    Type: network\n", "Type", UnsupportedProperty,
     "network is not emulated"),
    ("{Key: deletion_protection.enabled, Value: 'false'}",
     "{Key: routing.http.xff_header_processing.mode, Value: remove}",
     "LoadBalancerAttributes.routing.http.xff_header_processing.mode", UnsupportedProperty, ""),
])
def test_listener_and_load_balancer_errors(templates, old, new, prop, cls, message):
    assert old in LISTENED
    error = templates.error(fleet(LISTENED.replace(old, new)), error=cls)
    assert f"property {prop}" in str(error) and message in str(error)


# --- launch templates -----------------------------------------------------------------------

def test_launch_template_user_data_and_metadata(templates):
    script = "#!/bin/bash\necho etherpad\n"
    stack = templates.load(fleet(f"""
        Encoded:
          Type: AWS::EC2::LaunchTemplate
          Properties:
            LaunchTemplateName: etherpad-encoded
            LaunchTemplateData:
              ImageId: ami-2
              InstanceType: t3.small
              UserData: {base64.b64encode(script.encode()).decode()}
              MetadataOptions: {{HttpTokens: required, HttpPutResponseHopLimit: 2}}
              IamInstanceProfile: {{Name: etherpad}}
              SecurityGroupIds: [sg-1]
              TagSpecifications: [{{ResourceType: instance, Tags: [{{Key: a, Value: b}}]}}]
        Wrapped:
          Type: AWS::EC2::LaunchTemplate
          Properties:
            LaunchTemplateData:
              UserData: !Base64 {{"Fn::Sub": "#!/bin/sh\\necho ${{AWS::StackName}}\\n"}}
        """))
    encoded = stack.launch_templates["Encoded"]
    assert (encoded.name, encoded.image_id, encoded.instance_type) == (
        "etherpad-encoded", "ami-2", "t3.small")
    assert encoded.user_data == script
    assert encoded.metadata_options == {"HttpTokens": "required", "HttpPutResponseHopLimit": "2"}
    assert encoded.iam_instance_profile == {"Name": "etherpad"}
    assert encoded.security_groups == ["sg-1"]
    assert stack.launch_templates["Wrapped"].user_data == "#!/bin/sh\necho test\n"
    assert stack.launch_templates["Web"].user_data is None


@pytest.mark.parametrize("lines, prop, cls, message", [
    ("UserData: '#!/bin/sh'", "LaunchTemplateData.UserData", ConfigError,
     "must be base64-encoded (wrap the script in Fn::Base64)"),
    ("InstanceMarketOptions: {MarketType: spot}", "LaunchTemplateData.InstanceMarketOptions",
     UnsupportedProperty, "is not supported by the local cloud"),
    ("MetadataOptions: {HttpTokenz: required}", "LaunchTemplateData.MetadataOptions.HttpTokenz",
     UnsupportedProperty, "is not supported"),
])
def test_launch_template_errors(templates, lines, prop, cls, message):
    text = with_property("Web", "LaunchTemplateData:\n" + textwrap.indent(lines, "  ")) \
        .replace("      LaunchTemplateData:\n        ImageId: ami-1\n", "", 1)
    error = templates.error(text, error=cls)
    assert f"resource Web: property {prop}" in str(error) and message in str(error)
    assert_at(error, text, lines.split(":")[0])


def test_cfn_init_metadata_is_refused(templates):
    text = with_attribute("Web", """
        Metadata:
          AWS::CloudFormation::Init:
            config: {commands: {a: {command: 'true'}}}
    """)
    error = templates.error(text, error=UnsupportedProperty)
    assert error.prop == "Metadata.AWS::CloudFormation::Init"
    assert "cfn-init is not emulated" in str(error)
    assert_at(error, text, "AWS::CloudFormation::Init")
    # Other metadata is harmless.
    stack = templates.load(with_attribute("Web", "Metadata: {Comment: etherpad}"))
    assert stack.resources["Web"].metadata == {"Comment": "etherpad"}


# --- Auto Scaling groups ----------------------------------------------------------------

def test_group_defaults(templates):
    group = templates.load(FLEET).auto_scaling_groups["Group"]
    assert (group.min_size, group.max_size, group.desired_capacity) == (1, 3, 1)
    assert group.health_check_type is specs.HealthCheckType.EC2
    assert group.health_check_grace_period_s == 0
    assert group.launch_template == specs.LaunchTemplateRef(
        logical_id="Web", version="Web.LatestVersionNumber",
        tracking=specs.VersionTracking.LATEST)
    assert group.creation_policy is None and group.rolling_update is None
    assert group.target_groups == [] and group.name == "test-Group"


def test_group_policies_defaults(templates):
    text = with_attribute("Group", """
        CreationPolicy:
          ResourceSignal: {}
        UpdatePolicy:
          AutoScalingRollingUpdate: {}
    """)
    group = templates.load(text).auto_scaling_groups["Group"]
    assert group.creation_policy == specs.CreationPolicySpec(
        signal_count=1, signal_timeout_s=300, min_successful_instances_percent=100)
    assert group.rolling_update == specs.RollingUpdatePolicy(
        max_batch_size=1, min_instances_in_service=0, min_successful_instances_percent=100,
        pause_time_s=0, wait_on_resource_signals=False, suspend_processes=[])
    waiting = templates.load(with_attribute("Group", """
        UpdatePolicy:
          AutoScalingRollingUpdate: {WaitOnResourceSignals: true}
    """)).auto_scaling_groups["Group"]
    assert waiting.rolling_update.pause_time_s == 300  # PT5M when waiting for signals


def test_group_full(templates):
    text = with_property("Group", """
        DesiredCapacity: '2'
        HealthCheckType: ELB
        HealthCheckGracePeriod: 90
        TargetGroupARNs: [!Ref Pool]
        VPCZoneIdentifier: [subnet-1, subnet-2]
        TerminationPolicies: [OldestInstance]
        Tags: [{Key: Name, Value: etherpad, PropagateAtLaunch: true}]
    """).replace("Version: !GetAtt Web.LatestVersionNumber", "Version: '3'")
    text = text.replace("  Group:\n", """  Group:
    CreationPolicy:
      ResourceSignal: {Count: 2, Timeout: PT1M30S}
      AutoScalingCreationPolicy: {MinSuccessfulInstancesPercent: 50}
    UpdatePolicy:
      AutoScalingScheduledAction: {IgnoreUnmodifiedGroupSizeProperties: true}
      AutoScalingRollingUpdate:
        MaxBatchSize: 2
        MinInstancesInService: 1
        MinSuccessfulInstancesPercent: 50
        PauseTime: PT1H
        WaitOnResourceSignals: true
        SuspendProcesses: [HealthCheck, AZRebalance]
""")
    group = templates.load(text).auto_scaling_groups["Group"]
    assert group.desired_capacity == 2
    assert group.health_check_type is specs.HealthCheckType.ELB
    assert group.health_check_grace_period_s == 90
    assert group.target_groups == ["Pool"]
    assert group.vpc_zone_identifier == ["subnet-1", "subnet-2"]
    assert group.termination_policies == ["OldestInstance"]
    assert group.launch_template == specs.LaunchTemplateRef(logical_id="Web", version="3")
    assert group.creation_policy == specs.CreationPolicySpec(
        signal_count=2, signal_timeout_s=90, min_successful_instances_percent=50)
    assert group.rolling_update == specs.RollingUpdatePolicy(
        max_batch_size=2, min_instances_in_service=1, min_successful_instances_percent=50,
        pause_time_s=3600, wait_on_resource_signals=True,
        suspend_processes=["HealthCheck", "AZRebalance"])


def test_group_by_launch_template_name(templates):
    text = with_property("Web", "LaunchTemplateName: etherpad-web").replace(
        "LaunchTemplateId: !Ref Web", "LaunchTemplateName: etherpad-web").replace(
        "Version: !GetAtt Web.LatestVersionNumber", "Version: !GetAtt Web.DefaultVersionNumber")
    ref = templates.load(text).auto_scaling_groups["Group"].launch_template
    assert (ref.logical_id, ref.tracking) == ("Web", specs.VersionTracking.DEFAULT)


ROLLING = "UpdatePolicy:\n  AutoScalingRollingUpdate:\n"


@pytest.mark.parametrize("attribute, prop, fragment, message", [
    (ROLLING + "    MinInstancesInService: 3",
     "UpdatePolicy.AutoScalingRollingUpdate.MinInstancesInService", "MinInstancesInService",
     "3 must be less than MaxSize (3)"),
    (ROLLING + "    MinSuccessfulInstancesPercent: 80",
     "UpdatePolicy.AutoScalingRollingUpdate.MinSuccessfulInstancesPercent",
     "MinSuccessfulInstancesPercent", "needs WaitOnResourceSignals: true"),
    (ROLLING + "    PauseTime: PT1H1S", "UpdatePolicy.AutoScalingRollingUpdate.PauseTime",
     "PauseTime", "PT1H1S is longer than the maximum PT1H"),
    (ROLLING + "    PauseTime: 5 minutes", "UpdatePolicy.AutoScalingRollingUpdate.PauseTime",
     "PauseTime", "is not an ISO-8601 duration"),
    (ROLLING + "    MaxBatchSize: 0", "UpdatePolicy.AutoScalingRollingUpdate.MaxBatchSize",
     "MaxBatchSize", "0 is out of range (>= 1)"),
    (ROLLING + "    SuspendProcesses: [Launch, Reboot]",
     "UpdatePolicy.AutoScalingRollingUpdate.SuspendProcesses", "SuspendProcesses",
     "'Reboot' is not a scaling process"),
    ("CreationPolicy:\n  ResourceSignal: {Timeout: PT13H}", "CreationPolicy.ResourceSignal.Timeout",
     "ResourceSignal", "PT13H is longer than the maximum PT12H"),
    ("CreationPolicy:\n  ResourceSignal: {Count: -1}", "CreationPolicy.ResourceSignal.Count",
     "ResourceSignal", "-1 is out of range"),
])
def test_group_policy_validation(templates, attribute, prop, fragment, message):
    text = with_attribute("Group", attribute)
    error = templates.error(text)
    assert type(error) is ConfigError
    assert f"resource Group: property {prop}: " in str(error) and message in str(error)
    assert_at(error, text, fragment)


@pytest.mark.parametrize("old, new, prop, message", [
    ("MaxSize: 3", "MaxSize: 0", "MinSize", "1 is larger than MaxSize 0"),
    ("MaxSize: 3", "MaxSize: 3\n      DesiredCapacity: 4", "DesiredCapacity",
     "4 is out of range (1..3)"),
    ("MaxSize: 3", "MaxSize: 3\n      HealthCheckType: ELBv2", "HealthCheckType",
     "'ELBv2' is not one of"),
    ("Version: !GetAtt Web.LatestVersionNumber", "Version: $Latest", "LaunchTemplate.Version",
     "CloudFormation does not accept $Latest or $Default"),
    ("Version: !GetAtt Web.LatestVersionNumber", "Version: !GetAtt Other.LatestVersionNumber",
     "LaunchTemplate.Version", "is a version of Other, but the group uses launch template Web"),
    ("        Version: !GetAtt Web.LatestVersionNumber\n", "", "LaunchTemplate.Version",
     "is required"),
    ("LaunchTemplateId: !Ref Web", "LaunchTemplateId: !Ref Web\n        LaunchTemplateName: web",
     "LaunchTemplate", "needs exactly one of LaunchTemplateId and LaunchTemplateName"),
    ("LaunchTemplateId: !Ref Web", "LaunchTemplateId: lt-0123456789",
     "LaunchTemplate.LaunchTemplateId", "must refer to a LaunchTemplate of this stack"),
])
def test_group_validation(templates, old, new, prop, message):
    text = fleet("""
        Other:
          Type: AWS::EC2::LaunchTemplate
          Properties: {LaunchTemplateData: {ImageId: ami-3}}
    """).replace(old, new)
    error = templates.error(text)
    assert f"resource Group: property {prop}: " in str(error) and message in str(error)


@pytest.mark.parametrize("text, prop, why", [
    (with_property("Group", "LaunchConfigurationName: old-style"), "LaunchConfigurationName", ""),
    (with_property("Group", "LifecycleHookSpecificationList: []"),
     "LifecycleHookSpecificationList", ""),
    (with_attribute("Group", "UpdatePolicy:\n  AutoScalingReplacingUpdate: {WillReplace: true}"),
     "UpdatePolicy.AutoScalingReplacingUpdate", "only rolling updates are emulated"),
    (with_attribute("Group", "UpdatePolicy:\n  AutoScalingRollingUpdate:\n"
                             "    MinActiveInstancesPercent: 50"),
     "UpdatePolicy.AutoScalingRollingUpdate.MinActiveInstancesPercent", ""),
    (with_attribute("Pool", "CreationPolicy:\n  ResourceSignal: {Count: 1}"), "CreationPolicy",
     "only Auto Scaling groups honour it"),
])
def test_group_unsupported(templates, text, prop, why):
    error = templates.error(text, error=UnsupportedProperty)
    assert error.prop == prop and why in str(error)


@pytest.mark.parametrize("text, seconds", [
    ("PT5M", 300), ("PT1H", 3600), ("PT30S", 30), ("PT1M30S", 90), ("PT0S", 0),
    ("PT2H15M", 8100), (" PT10M ", 600),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["PT", "5M", "P1D", "PT1.5S", "pt5m", "PT5M1H", "", "PT-1S"])
def test_parse_duration_rejects(text):
    with pytest.raises(ConfigError, match="not an ISO-8601 duration"):
        parse_duration(text)


# --- CodeDeploy -----------------------------------------------------------------------------

CODEDEPLOY = """
App:
  Type: AWS::CodeDeploy::Application
Half:
  Type: AWS::CodeDeploy::DeploymentConfig
  Properties:
    DeploymentConfigName: etherpad-half
    MinimumHealthyHosts: {Type: FLEET_PERCENT, Value: 50}
Deployments:
  Type: AWS::CodeDeploy::DeploymentGroup
  Properties:
    ApplicationName: !Ref App
    ServiceRoleArn: arn:aws:iam::123456789012:role/codedeploy
    AutoScalingGroups: [!Ref Group]
"""


def test_deployment_group_defaults(templates):
    stack = templates.load(fleet(CODEDEPLOY))
    assert stack.codedeploy_applications["App"] == specs.CodeDeployApplicationSpec(
        logical_id="App", name="test-App", compute_platform="Server")
    assert stack.deployment_configs["Half"] == specs.DeploymentConfigSpec(
        logical_id="Half", name="etherpad-half",
        minimum_healthy_hosts_type=specs.MinimumHealthyHostsType.FLEET_PERCENT,
        minimum_healthy_hosts_value=50)
    group = stack.deployment_groups["Deployments"]
    assert group == specs.DeploymentGroupSpec(
        logical_id="Deployments", name="test-Deployments", application="App",
        application_name="test-App", auto_scaling_groups=["Group"],
        service_role="arn:aws:iam::123456789012:role/codedeploy")
    assert group.deployment_config_name == "CodeDeployDefault.OneAtATime"
    assert group.deployment_option == "WITHOUT_TRAFFIC_CONTROL" and not group.with_traffic_control
    assert group.auto_rollback == specs.AutoRollbackSpec(enabled=False, events=[])


def test_deployment_group_full(templates):
    text = fleet(CODEDEPLOY + """\
    DeploymentGroupName: etherpad
    DeploymentConfigName: !Ref Half
    LoadBalancerInfo:
      TargetGroupInfoList: [{Name: !GetAtt Pool.TargetGroupName}]
    DeploymentStyle: {DeploymentType: IN_PLACE, DeploymentOption: WITH_TRAFFIC_CONTROL}
    AutoRollbackConfiguration:
      Enabled: true
      Events: [DEPLOYMENT_FAILURE, DEPLOYMENT_STOP_ON_ALARM]
    AlarmConfiguration:
      Enabled: true
      Alarms: [{Name: etherpad-5xx}]
    OutdatedInstancesStrategy: IGNORE
""")
    group = templates.load(text).deployment_groups["Deployments"]
    assert group.name == "etherpad"
    assert (group.deployment_config_name, group.deployment_config) == ("etherpad-half", "Half")
    assert group.target_groups == ["Pool"] and group.with_traffic_control
    assert group.auto_rollback == specs.AutoRollbackSpec(
        enabled=True, events=["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"])
    assert group.alarm_configuration == specs.AlarmConfigurationSpec(
        enabled=True, alarms=["etherpad-5xx"])
    assert group.outdated_instances_strategy == "IGNORE"
    # The configuration and the target group can also be named rather than referenced.
    by_name = templates.load(text.replace("!Ref Half", "etherpad-half").replace(
        "!GetAtt Pool.TargetGroupName", "test-Pool")).deployment_groups["Deployments"]
    assert (by_name.deployment_config, by_name.target_groups) == ("Half", ["Pool"])


@pytest.mark.parametrize("extra, prop, cls, message", [
    ("    DeploymentConfigName: CodeDeployDefault.LambdaAllAtOnce", "DeploymentConfigName",
     UnsupportedProperty, "CodeDeployDefault.LambdaAllAtOnce is not emulated"),
    ("    DeploymentConfigName: TwoAtATime", "DeploymentConfigName", ConfigError,
     "must refer to a DeploymentConfig of this stack"),
    ("    DeploymentStyle: {DeploymentOption: WITH_TRAFFIC_CONTROL}",
     "DeploymentStyle.DeploymentOption", ConfigError,
     "WITH_TRAFFIC_CONTROL needs LoadBalancerInfo.TargetGroupInfoList"),
    ("    DeploymentStyle: {DeploymentType: BLUE_GREEN}", "DeploymentStyle.DeploymentType",
     UnsupportedProperty, "BLUE_GREEN is not emulated"),
    ("    Ec2TagFilters: [{Key: app, Value: etherpad, Type: KEY_AND_VALUE}]", "Ec2TagFilters",
     UnsupportedProperty, ""),
    ("    LoadBalancerInfo: {ElbInfoList: [{Name: classic}]}", "LoadBalancerInfo.ElbInfoList",
     UnsupportedProperty, ""),
    ("    AutoRollbackConfiguration: {Enabled: true, Events: [DEPLOYMENT_TIMEOUT]}",
     "AutoRollbackConfiguration.Events", ConfigError, "'DEPLOYMENT_TIMEOUT' is not one of"),
    ("    AutoScalingGroups: [some-other-group]", "AutoScalingGroups.0", ConfigError,
     "must refer to a AutoScalingGroup of this stack"),
])
def test_deployment_group_errors(templates, extra, prop, cls, message):
    text = fleet(CODEDEPLOY.replace("    AutoScalingGroups: [!Ref Group]\n", "") + extra + "\n")
    error = templates.error(text, error=cls)
    assert f"resource Deployments: property {prop}" in str(error) and message in str(error)
    assert_at(error, text, extra.strip())


@pytest.mark.parametrize("old, new, prop, cls, message", [
    ("{Type: FLEET_PERCENT, Value: 50}", "{Type: FLEET_PERCENT, Value: 101}",
     "MinimumHealthyHosts.Value", ConfigError, "101 is out of range (0..100)"),
    ("{Type: FLEET_PERCENT, Value: 50}", "{Type: HOSTS, Value: 1}", "MinimumHealthyHosts.Type",
     ConfigError, "'HOSTS' is not one of HOST_COUNT, FLEET_PERCENT"),
    ("    DeploymentConfigName: etherpad-half\n", "    ComputePlatform: Lambda\n",
     "ComputePlatform", UnsupportedProperty, "Lambda is not emulated"),
])
def test_deployment_config_errors(templates, old, new, prop, cls, message):
    error = templates.error(fleet(CODEDEPLOY.replace(old, new)), error=cls)
    assert f"resource Half: property {prop}" in str(error) and message in str(error)


# --- bucket, parameter, database, secret ------------------------------------------------------

DATA = """
Artifacts:
  Type: AWS::S3::Bucket
  Properties:
    BucketName: etherpad-artifacts
    VersioningConfiguration: {Status: Enabled}
Plain:
  Type: AWS::S3::Bucket
Release:
  Type: AWS::SSM::Parameter
  Properties: {Name: /etherpad/release, Type: String, Value: 1.8.18, AllowedPattern: '[0-9.]+'}
Db:
  Type: AWS::RDS::DBInstance
  Properties:
    Engine: mysql
    DBName: etherpad
    MasterUsername: etherpad
    MasterUserPassword: correct-horse
    AllocatedStorage: '20'
    DBInstanceClass: db.t3.micro
Managed:
  Type: AWS::RDS::DBInstance
  Properties:
    Engine: postgres
    Port: 6543
    MasterUsername: admin
    ManageMasterUserPassword: true
Credentials:
  Type: AWS::SecretsManager::Secret
  Properties:
    Name: etherpad/db
    GenerateSecretString: {}
Given:
  Type: AWS::SecretsManager::Secret
  Properties:
    SecretString: '{"password": "x"}'
"""


def test_bucket_parameter_database_secret(templates):
    stack = templates.load(fleet(DATA))
    assert stack.buckets["Artifacts"] == specs.BucketSpec(
        logical_id="Artifacts", name="etherpad-artifacts", versioning=True)
    assert stack.buckets["Plain"].versioning is False
    assert stack.ssm_parameters["Release"] == specs.SsmParameterSpec(
        logical_id="Release", name="/etherpad/release", type="String", value="1.8.18")
    db = stack.databases["Db"]
    assert (db.engine, db.port, db.db_name, db.master_username) == (
        specs.DatabaseEngine.MYSQL, 3306, "etherpad", "etherpad")
    assert db.master_password.get_secret_value() == "correct-horse"
    assert "correct-horse" not in repr(db)
    managed = stack.databases["Managed"]
    assert (managed.port, managed.master_password, managed.manage_master_user_password) == (
        6543, None, True)
    assert stack.secrets["Credentials"].generate == specs.GenerateSecretSpec()
    assert stack.secrets["Credentials"].generate.password_length == 32
    assert stack.secrets["Given"].secret_string.get_secret_value() == '{"password": "x"}'


def test_database_credentials_from_a_secret_by_arn_or_name(templates):
    text = fleet(DATA.replace(
        "MasterUserPassword: correct-horse",
        "MasterUserPassword: '{{resolve:secretsmanager:etherpad/db:SecretString:password}}'"
    ).replace("MasterUsername: etherpad", "MasterUsername: !Sub "
              "'{{resolve:secretsmanager:${Credentials}:SecretString:username}}'"))
    db = templates.load(text).databases["Db"]
    assert db.master_password == specs.SecretReference(secret="Credentials", json_key="password")
    assert db.master_username == specs.SecretReference(secret="Credentials", json_key="username")


@pytest.mark.parametrize("old, new, resource, prop, cls, message", [
    ("VersioningConfiguration: {Status: Enabled}", "VersioningConfiguration: {Status: Paused}",
     "Artifacts", "VersioningConfiguration.Status", ConfigError, "'Paused' is not one of"),
    ("BucketName: etherpad-artifacts",
     "NotificationConfiguration: {TopicConfigurations: []}", "Artifacts",
     "NotificationConfiguration", UnsupportedProperty, ""),
    ("Type: String, Value: 1.8.18", "Type: SecureString, Value: 1.8.18", "Release", "Type",
     ConfigError, "'SecureString' is not one of String, StringList"),
    ("Value: 1.8.18,", "Value: latest,", "Release", "Value", ConfigError,
     "does not match AllowedPattern"),
    ("Engine: mysql", "Engine: aurora-postgresql", "Db", "Engine", ConfigError,
     "'aurora-postgresql' is not one of postgres, mysql, mariadb"),
    ("    ManageMasterUserPassword: true\n",
     "    ManageMasterUserPassword: true\n    MasterUserPassword: x\n", "Managed",
     "MasterUserPassword", ConfigError, "give exactly one of MasterUserPassword"),
    ("    MasterUsername: etherpad\n", "", "Db", "MasterUsername", ConfigError, "is required"),
    ("Engine: mysql", "Engine: mysql\n    SourceDBInstanceIdentifier: other", "Db",
     "SourceDBInstanceIdentifier", UnsupportedProperty, ""),
    ("MasterUserPassword: correct-horse",
     "MasterUserPassword: '{{resolve:secretsmanager:elsewhere:SecretString:password}}'", "Db",
     "MasterUserPassword", UnsupportedProperty, "secret elsewhere is not part of this stack"),
    ("GenerateSecretString: {}", "GenerateSecretString: {SecretStringTemplate: '{}'}",
     "Credentials", "GenerateSecretString.SecretStringTemplate", ConfigError,
     "SecretStringTemplate and GenerateStringKey go together"),
    ("GenerateSecretString: {}",
     "GenerateSecretString: {SecretStringTemplate: '[1]', GenerateStringKey: p}",
     "Credentials", "GenerateSecretString.SecretStringTemplate", ConfigError,
     "must be a JSON object"),
    ("GenerateSecretString: {}", "GenerateSecretString: {}\n    SecretString: x", "Credentials",
     "SecretString", ConfigError, "give exactly one of SecretString and GenerateSecretString"),
    ("GenerateSecretString: {}", "GenerateSecretString: {}\n    ReplicaRegions: []",
     "Credentials", "ReplicaRegions", UnsupportedProperty, ""),
])
def test_data_resource_errors(templates, old, new, resource, prop, cls, message):
    assert old in DATA
    error = templates.error(fleet(DATA.replace(old, new, 1)), error=cls)
    assert f"resource {resource}: property {prop}" in str(error) and message in str(error)


# --- types ----------------------------------------------------------------------------------

def test_unsupported_resource_type_names_resource_type_and_line(templates):
    text = fleet("""
        Handler:
          Type: AWS::Lambda::Function
          Properties: {Runtime: python3.12}
    """)
    error = templates.error(text)
    assert "resource Handler: type AWS::Lambda::Function is not supported by the local cloud" \
        in str(error)
    assert "--target aws" in str(error)
    assert_at(error, text, "Handler:")
    # Switched off by its condition, it does not exist, whatever its type.
    stack = templates.load("Conditions:\n  Never: !Equals [a, b]\n" + text.replace(
        "Type: AWS::Lambda::Function", "Type: AWS::Lambda::Function\n    Condition: Never"))
    assert stack.skipped == {"Handler": "Never"}


def test_recorded_types_are_kept_but_not_emulated(templates):
    stack = templates.load(fleet("""
        Role:
          Type: AWS::IAM::Role
          Properties:
            AssumeRolePolicyDocument:
              Statement: [{Effect: Allow, Action: sts:AssumeRole, Condition: {Bool: {x: 'true'}}}]
        Alarm:
          Type: AWS::CloudWatch::Alarm
          Properties: {Threshold: 1}
    """))
    assert [(r.logical_id, r.type) for r in stack.recorded] == [
        ("Role", "AWS::IAM::Role"), ("Alarm", "AWS::CloudWatch::Alarm")]
    # An IAM "Condition" key is data, not the Condition function.
    statement = stack.resources["Role"].properties["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Condition"] == {"Bool": {"x": "true"}}

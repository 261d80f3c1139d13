"""Reading typed specs out of resolved resources: allow-lists, AWS defaults, AWS validation.

One function per supported type. Each states which properties it honours and which it only
records; :meth:`PropertyReader.allow` turns everything else into :class:`UnsupportedProperty`.
Errors name the resource, the property (dotted path) and the template line.

:func:`extract_specs` and the readers of the fleet itself live here: target groups, load
balancers, listeners, launch templates and Auto Scaling groups with their policies, what
the local cloud runs. The readers of the services the fleet uses (CodeDeploy, S3, SSM, RDS,
Secrets Manager) are in :mod:`deployer.cfn.services`; the toolkit they all share (where a
property was written, how a value is read) is :mod:`deployer.cfn.properties`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from deployer.cfn import specs as s
from deployer.cfn.properties import PropertyReader, StackIndex
from deployer.cfn.services import (
    bucket,
    codedeploy_application,
    database,
    deployment_config,
    deployment_group,
    secret,
    ssm_parameter,
)
from deployer.cfn.values import (
    Base64Text,
    Reference,
    ResolvedResource,
    plain,
)

_TAGS = ("Tags",)


def target_group(r: PropertyReader) -> s.TargetGroupSpec:
    p = r.allow(r.props, honoured=(
        "Name", "Port", "Protocol", "TargetType", "HealthCheckEnabled", "HealthCheckProtocol",
        "HealthCheckPath", "HealthCheckPort", "HealthCheckIntervalSeconds",
        "HealthCheckTimeoutSeconds", "HealthyThresholdCount", "UnhealthyThresholdCount",
        "Matcher", "TargetGroupAttributes", "ProtocolVersion"),
        recorded=("VpcId", "IpAddressType", *_TAGS))
    spec: dict[str, Any] = {"logical_id": r.resource.logical_id,
                            "name": str(p.get("Name", r.name()))}
    spec["target_type"] = r.choice("TargetType", p.get("TargetType", "instance"),
                                   ("instance", "ip", "lambda", "alb"), supported=("instance",))
    spec["port"] = r.integer("Port", p["Port"], 1, 65535) if "Port" in p else None
    if spec["port"] is None:
        raise r.error("Port", "is required for instance targets")
    web = ("HTTP", "HTTPS", "TCP", "TLS", "UDP", "TCP_UDP", "GENEVE")
    spec["protocol"] = r.choice("Protocol", p.get("Protocol", "HTTP"), web, supported=("HTTP",))
    r.choice("ProtocolVersion", p.get("ProtocolVersion", "HTTP1"), ("HTTP1", "HTTP2", "GRPC"),
             supported=("HTTP1",))
    spec["health_check_enabled"] = r.boolean("HealthCheckEnabled",
                                             p.get("HealthCheckEnabled", True))
    spec["health_check_protocol"] = r.choice("HealthCheckProtocol",
                                             p.get("HealthCheckProtocol", "HTTP"), web,
                                             supported=("HTTP",))
    path = r.text("HealthCheckPath", p.get("HealthCheckPath", "/"))
    if not path.startswith("/") or len(path) > 1024:
        raise r.error("HealthCheckPath", f"{path!r} must start with / (at most 1024 characters)")
    spec["health_check_path"] = path
    port = r.text("HealthCheckPort", p.get("HealthCheckPort", "traffic-port"))
    if port != "traffic-port":
        r.integer("HealthCheckPort", port, 1, 65535)
    spec["health_check_port"] = port
    spec["health_check_interval_s"] = r.integer(
        "HealthCheckIntervalSeconds", p.get("HealthCheckIntervalSeconds", 30), 5, 300)
    spec["health_check_timeout_s"] = r.integer(
        "HealthCheckTimeoutSeconds", p.get("HealthCheckTimeoutSeconds", 5), 2, 120)
    if spec["health_check_timeout_s"] >= spec["health_check_interval_s"]:
        raise r.error("HealthCheckTimeoutSeconds", "must be smaller than "
                      f"HealthCheckIntervalSeconds ({spec['health_check_interval_s']})")
    spec["healthy_threshold"] = r.integer("HealthyThresholdCount",
                                          p.get("HealthyThresholdCount", 5), 2, 10)
    spec["unhealthy_threshold"] = r.integer("UnhealthyThresholdCount",
                                            p.get("UnhealthyThresholdCount", 2), 2, 10)
    matcher = r.allow(p.get("Matcher"), honoured=("HttpCode",), prefix="Matcher.")
    code = r.text("Matcher.HttpCode", matcher.get("HttpCode", "200"))
    if not re.fullmatch(r"\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*", code) or any(
            not 200 <= low <= high <= 499 for low, high in s._matcher_ranges(code)):
        raise r.error("Matcher.HttpCode", f"{code!r} must be codes or ranges within 200-499, "
                      "such as 200, 200,302 or 200-299")
    spec["matcher"] = code
    spec["deregistration_delay_s"] = 300
    for i, attribute in enumerate(p.get("TargetGroupAttributes") or []):
        _target_group_attribute(r, i, attribute, spec)
    r.no_policies()
    return s.TargetGroupSpec(**spec)


def _target_group_attribute(r: PropertyReader, i: int, attribute: Any,
                            spec: dict[str, Any]) -> None:
    where = f"TargetGroupAttributes.{i}"
    r.allow(attribute, honoured=("Key", "Value"), prefix=where + ".")
    key = r.text(where + ".Key", attribute.get("Key", ""))
    value = r.text(where + ".Value", attribute.get("Value", ""))
    if key == "deregistration_delay.timeout_seconds":
        spec["deregistration_delay_s"] = r.integer(where + ".Value", value, 0, 3600)
        return
    # Attributes whose value changes nothing are fine at that value: recorded.
    harmless = {"stickiness.enabled": "false", "load_balancing.algorithm.type": "round_robin",
                "slow_start.duration_seconds": "0"}
    if harmless.get(key) != value.lower():
        raise r.unsupported(f"TargetGroupAttributes.{key}", at=where,
                            why=f"only {harmless[key]} is emulated" if key in harmless else "")


def load_balancer(r: PropertyReader) -> s.LoadBalancerSpec:
    p = r.allow(r.props, honoured=("Name", "Type", "Scheme", "LoadBalancerAttributes"),
                recorded=("Subnets", "SubnetMappings", "SecurityGroups", "IpAddressType",
                          *_TAGS))
    r.choice("Type", p.get("Type", "application"), ("application", "network", "gateway"),
             supported=("application",))
    spec: dict[str, Any] = {
        "logical_id": r.resource.logical_id, "name": str(p.get("Name", r.name())),
        "scheme": r.choice("Scheme", p.get("Scheme", "internet-facing"),
                           ("internet-facing", "internal")),
        "subnets": r.strings("Subnets", p.get("Subnets")),
        "security_groups": r.strings("SecurityGroups", p.get("SecurityGroups")),
    }
    recorded = {"deletion_protection.enabled", "routing.http2.enabled",
                "routing.http.drop_invalid_header_fields.enabled", "access_logs.s3.enabled",
                "access_logs.s3.bucket", "access_logs.s3.prefix"}
    for i, attribute in enumerate(p.get("LoadBalancerAttributes") or []):
        where = f"LoadBalancerAttributes.{i}"
        r.allow(attribute, honoured=("Key", "Value"), prefix=where + ".")
        key = r.text(where + ".Key", attribute.get("Key", ""))
        if key == "idle_timeout.timeout_seconds":
            spec["idle_timeout_s"] = r.integer(where + ".Value", attribute.get("Value"), 1, 4000)
        elif key not in recorded:
            raise r.unsupported(f"LoadBalancerAttributes.{key}", at=where)
    r.no_policies()
    return s.LoadBalancerSpec(**spec)


def listener(r: PropertyReader) -> s.ListenerSpec:
    p = r.allow(r.props, honoured=("LoadBalancerArn", "Port", "Protocol", "DefaultActions"))
    if "LoadBalancerArn" not in p or "Port" not in p:
        raise r.error("LoadBalancerArn" if "LoadBalancerArn" not in p else "Port", "is required")
    actions = p.get("DefaultActions") or []
    if len(actions) != 1:
        raise r.unsupported("DefaultActions", why="exactly one forward action is emulated")
    action = r.allow(actions[0], honoured=("Type", "TargetGroupArn", "ForwardConfig", "Order"),
                     prefix="DefaultActions.0.")
    r.choice("DefaultActions.0.Type", action.get("Type"),
             ("forward", "redirect", "fixed-response", "authenticate-oidc",
              "authenticate-cognito", "jwt-validation"), supported=("forward",))
    target = action.get("TargetGroupArn")
    if target is None:
        forward = r.allow(action.get("ForwardConfig"), honoured=("TargetGroups",),
                          prefix="DefaultActions.0.ForwardConfig.")
        groups = forward.get("TargetGroups") or []
        if len(groups) != 1:
            raise r.unsupported("DefaultActions.0.ForwardConfig.TargetGroups",
                                why="weighted forwarding to several target groups")
        r.allow(groups[0], honoured=("TargetGroupArn", "Weight"),
                prefix="DefaultActions.0.ForwardConfig.TargetGroups.0.")
        target = groups[0].get("TargetGroupArn")
    r.no_policies()
    return s.ListenerSpec(
        logical_id=r.resource.logical_id,
        load_balancer=r.link("LoadBalancerArn", p["LoadBalancerArn"], s.LOAD_BALANCER,
                             (None, "LoadBalancerArn")),
        port=r.integer("Port", p["Port"], 1, 65535),
        protocol=r.choice("Protocol", p.get("Protocol", "HTTP"),
                          ("HTTP", "HTTPS", "TCP", "TLS", "UDP", "TCP_UDP", "GENEVE"),
                          supported=("HTTP",)),
        default_target_group=r.link("DefaultActions.0.TargetGroupArn", target, s.TARGET_GROUP,
                                    (None, "TargetGroupArn")))


_LAUNCH_DATA_RECORDED = (
    "MetadataOptions", "IamInstanceProfile", "SecurityGroupIds", "SecurityGroups", "KeyName",
    "TagSpecifications", "Monitoring", "BlockDeviceMappings", "EbsOptimized",
    "CreditSpecification", "InstanceInitiatedShutdownBehavior", "DisableApiTermination",
    "DisableApiStop", "NetworkInterfaces", "CpuOptions", "MaintenanceOptions",
    "PrivateDnsNameOptions")


def launch_template(r: PropertyReader) -> s.LaunchTemplateSpec:
    p = r.allow(r.props, honoured=("LaunchTemplateData", "LaunchTemplateName"),
                recorded=("TagSpecifications", "VersionDescription"))
    if "LaunchTemplateData" not in p:
        raise r.error("LaunchTemplateData", "is required")
    data = r.allow(p["LaunchTemplateData"], honoured=("ImageId", "InstanceType", "UserData"),
                   recorded=_LAUNCH_DATA_RECORDED, prefix="LaunchTemplateData.")
    metadata = r.allow(data.get("MetadataOptions"), honoured=(), recorded=(
        "HttpEndpoint", "HttpTokens", "HttpPutResponseHopLimit", "HttpProtocolIpv6",
        "InstanceMetadataTags"), prefix="LaunchTemplateData.MetadataOptions.")
    profile = data.get("IamInstanceProfile") or {}
    r.no_policies()
    return s.LaunchTemplateSpec(
        logical_id=r.resource.logical_id,
        name=str(p.get("LaunchTemplateName", r.name())),
        image_id=r.text("LaunchTemplateData.ImageId", data["ImageId"]) if "ImageId" in data
        else None,
        instance_type=str(data["InstanceType"]) if "InstanceType" in data else None,
        user_data=_user_data(r, data["UserData"]) if "UserData" in data else None,
        metadata_options={k: str(v) for k, v in metadata.items()},
        iam_instance_profile={k: str(v) for k, v in profile.items()},
        security_groups=r.strings("LaunchTemplateData.SecurityGroupIds",
                                  data.get("SecurityGroupIds")),
        data=plain(data))


def _user_data(r: PropertyReader, value: Any) -> str:
    prop = "LaunchTemplateData.UserData"
    text = r.text(prop, value)
    if isinstance(value, Base64Text):
        return text
    # Without Fn::Base64 the template must carry the script already encoded, as EC2 wants.
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise r.error(prop, "must be base64-encoded",
                      hint="wrap the script in Fn::Base64") from None


def auto_scaling_group(r: PropertyReader) -> s.AutoScalingGroupSpec:
    p = r.allow(r.props, honoured=(
        "MinSize", "MaxSize", "DesiredCapacity", "HealthCheckType", "HealthCheckGracePeriod",
        "LaunchTemplate", "TargetGroupARNs", "VPCZoneIdentifier", "AutoScalingGroupName",
        "TerminationPolicies"), recorded=(
        "AvailabilityZones", "Cooldown", "MetricsCollection", "NotificationConfigurations",
        "CapacityRebalance", "ServiceLinkedRoleARN", "Context", *_TAGS))
    for required in ("MinSize", "MaxSize", "LaunchTemplate"):
        if required not in p:
            raise r.error(required, "is required by the local cloud")
    min_size = r.integer("MinSize", p["MinSize"], 0)
    max_size = r.integer("MaxSize", p["MaxSize"], 0)
    if min_size > max_size:
        raise r.error("MinSize", f"{min_size} is larger than MaxSize {max_size}")
    desired = r.integer("DesiredCapacity", p.get("DesiredCapacity", min_size), min_size, max_size)
    spec: dict[str, Any] = {
        "logical_id": r.resource.logical_id, "name": r.name(), "min_size": min_size,
        "max_size": max_size, "desired_capacity": desired,
        "health_check_type": r.choice("HealthCheckType", p.get("HealthCheckType", "EC2"),
                                      ("EC2", "ELB", "VPC_LATTICE", "EBS"),
                                      supported=("EC2", "ELB")),
        "health_check_grace_period_s": r.integer("HealthCheckGracePeriod",
                                                 p.get("HealthCheckGracePeriod", 0), 0),
        "launch_template": _launch_template_ref(r, p["LaunchTemplate"]),
        "target_groups": [r.link(f"TargetGroupARNs.{i}", arn, s.TARGET_GROUP,
                                 (None, "TargetGroupArn"))
                          for i, arn in enumerate(p.get("TargetGroupARNs") or [])],
        "vpc_zone_identifier": r.strings("VPCZoneIdentifier", p.get("VPCZoneIdentifier")),
        "termination_policies": r.strings("TerminationPolicies", p.get("TerminationPolicies")),
    }
    spec["creation_policy"] = _creation_policy(r)
    spec["rolling_update"] = _rolling_update(r, max_size)
    return s.AutoScalingGroupSpec(**spec)


def _launch_template_ref(r: PropertyReader, value: Any) -> s.LaunchTemplateRef:
    ref = r.allow(value, honoured=("LaunchTemplateId", "LaunchTemplateName", "Version"),
                  prefix="LaunchTemplate.")
    if ("LaunchTemplateId" in ref) == ("LaunchTemplateName" in ref):
        raise r.error("LaunchTemplate", "needs exactly one of LaunchTemplateId and "
                      "LaunchTemplateName")
    key = "LaunchTemplateId" if "LaunchTemplateId" in ref else "LaunchTemplateName"
    logical_id = r.link(f"LaunchTemplate.{key}", ref[key], s.LAUNCH_TEMPLATE,
                        (None, "LaunchTemplateId"))
    if "Version" not in ref:
        raise r.error("LaunchTemplate.Version", "is required",
                      hint=f"use !GetAtt {logical_id}.LatestVersionNumber")
    version = ref["Version"]
    if isinstance(version, Reference) and version.attribute in (
            "LatestVersionNumber", "DefaultVersionNumber"):
        if version.logical_id != logical_id:
            raise r.error("LaunchTemplate.Version", f"is a version of {version.logical_id}, "
                          f"but the group uses launch template {logical_id}")
        tracking = (s.VersionTracking.LATEST if version.attribute == "LatestVersionNumber"
                    else s.VersionTracking.DEFAULT)
        return s.LaunchTemplateRef(logical_id=logical_id, version=str(version), tracking=tracking)
    text = r.text("LaunchTemplate.Version", version)
    if not text.isdigit():
        raise r.error("LaunchTemplate.Version", f"{text!r} is not a version number "
                      "(CloudFormation does not accept $Latest or $Default)",
                      hint=f"use !GetAtt {logical_id}.LatestVersionNumber")
    return s.LaunchTemplateRef(logical_id=logical_id, version=text)


def _creation_policy(r: PropertyReader) -> s.CreationPolicySpec | None:
    policy = r.resource.creation_policy
    if policy is None:
        return None
    r.allow(policy, honoured=("ResourceSignal", "AutoScalingCreationPolicy"),
            prefix="CreationPolicy.")
    signal = r.allow(policy.get("ResourceSignal"), honoured=("Count", "Timeout"),
                     prefix="CreationPolicy.ResourceSignal.")
    scaling = r.allow(policy.get("AutoScalingCreationPolicy"),
                      honoured=("MinSuccessfulInstancesPercent",),
                      prefix="CreationPolicy.AutoScalingCreationPolicy.")
    return s.CreationPolicySpec(
        signal_count=r.integer("CreationPolicy.ResourceSignal.Count", signal.get("Count", 1), 0),
        signal_timeout_s=r.duration("CreationPolicy.ResourceSignal.Timeout",
                                    signal.get("Timeout", "PT5M"), 12 * 3600),
        min_successful_instances_percent=r.integer(
            "CreationPolicy.AutoScalingCreationPolicy.MinSuccessfulInstancesPercent",
            scaling.get("MinSuccessfulInstancesPercent", 100), 0, 100))


def _rolling_update(r: PropertyReader, max_size: int) -> s.RollingUpdatePolicy | None:
    policy = r.resource.update_policy
    if policy is None:
        return None
    r.allow(policy, honoured=("AutoScalingRollingUpdate",),
            recorded=("AutoScalingScheduledAction", "AutoScalingReplacingUpdate"),
            prefix="UpdatePolicy.")
    replacing = policy.get("AutoScalingReplacingUpdate") or {}
    if r.boolean("UpdatePolicy.AutoScalingReplacingUpdate.WillReplace",
                 replacing.get("WillReplace", False)):
        raise r.unsupported("UpdatePolicy.AutoScalingReplacingUpdate",
                            why="only rolling updates are emulated")
    if "AutoScalingRollingUpdate" not in policy:
        return None
    at = "UpdatePolicy.AutoScalingRollingUpdate."
    rolling = r.allow(policy["AutoScalingRollingUpdate"], honoured=(
        "MaxBatchSize", "MinInstancesInService", "MinSuccessfulInstancesPercent", "PauseTime",
        "WaitOnResourceSignals", "SuspendProcesses"), prefix=at)
    wait = r.boolean(at + "WaitOnResourceSignals", rolling.get("WaitOnResourceSignals", False))
    in_service = r.integer(at + "MinInstancesInService", rolling.get("MinInstancesInService", 0), 0)
    if in_service >= max_size:
        raise r.error(at + "MinInstancesInService",
                      f"{in_service} must be less than MaxSize ({max_size})")
    if "MinSuccessfulInstancesPercent" in rolling and not wait:
        raise r.error(at + "MinSuccessfulInstancesPercent", "needs WaitOnResourceSignals: true")
    suspend = r.strings(at + "SuspendProcesses", rolling.get("SuspendProcesses"))
    for process in suspend:
        if process not in s.SCALING_PROCESSES:
            raise r.error(at + "SuspendProcesses", f"{process!r} is not a scaling process "
                          f"({', '.join(sorted(s.SCALING_PROCESSES))})")
    return s.RollingUpdatePolicy(
        max_batch_size=r.integer(at + "MaxBatchSize", rolling.get("MaxBatchSize", 1), 1),
        min_instances_in_service=in_service,
        min_successful_instances_percent=r.integer(
            at + "MinSuccessfulInstancesPercent",
            rolling.get("MinSuccessfulInstancesPercent", 100), 0, 100),
        pause_time_s=r.duration(at + "PauseTime",
                                rolling.get("PauseTime", "PT5M" if wait else "PT0S"), 3600),
        wait_on_resource_signals=wait,
        suspend_processes=suspend)


_READERS: dict[str, tuple[str, Callable[[PropertyReader], Any]]] = {
    s.TARGET_GROUP: ("target_groups", target_group),
    s.LOAD_BALANCER: ("load_balancers", load_balancer),
    s.LISTENER: ("listeners", listener),
    s.LAUNCH_TEMPLATE: ("launch_templates", launch_template),
    s.AUTO_SCALING_GROUP: ("auto_scaling_groups", auto_scaling_group),
    s.CODEDEPLOY_APPLICATION: ("codedeploy_applications", codedeploy_application),
    s.DEPLOYMENT_GROUP: ("deployment_groups", deployment_group),
    s.DEPLOYMENT_CONFIG: ("deployment_configs", deployment_config),
    s.BUCKET: ("buckets", bucket),
    s.SSM_PARAMETER: ("ssm_parameters", ssm_parameter),
    s.DB_INSTANCE: ("databases", database),
    s.SECRET: ("secrets", secret),
}


def extract_specs(resources: dict[str, ResolvedResource], path: str) -> s.StackSpecs:
    """The typed specs of every supported resource (recorded types have none)."""
    stack = StackIndex(resources)
    found: dict[str, dict[str, Any]] = {field: {} for field in s.StackSpecs.model_fields}
    for logical_id, resource in resources.items():
        if resource.type not in _READERS:
            continue
        field, read = _READERS[resource.type]
        reader = PropertyReader(resource, path, stack)
        metadata = resource.metadata or {}
        if "AWS::CloudFormation::Init" in metadata:
            raise reader.unsupported("Metadata.AWS::CloudFormation::Init",
                                     why="cfn-init is not emulated; put the steps in UserData")
        found[field][logical_id] = read(reader)
    return s.StackSpecs(**found)

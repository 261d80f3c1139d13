"""Reading typed specs out of resolved resources: allow-lists, AWS defaults, AWS validation.

One function per supported type. Each states which properties it honours and which it only
records; :meth:`_Reader.allow` turns everything else into :class:`UnsupportedProperty`.
Errors name the resource, the property (dotted path) and the template line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from deployer.base.errors import ConfigError, UnsupportedProperty
from deployer.cfn import specs as s
from deployer.cfn.document import Mapping, line_of
from deployer.cfn.values import (
    Base64Text,
    Reference,
    ResolvedResource,
    missing_attributes,
    plain,
)

_SECRET_REF = re.compile(r"\{\{resolve:secretsmanager:(.+)\}\}")


class _Reader:
    """One resource's resolved properties, read with errors that say where."""

    def __init__(self, resource: ResolvedResource, path: str, stack: _Stack) -> None:
        self.resource = resource
        self.path = path
        self.stack = stack
        self.props = resource.properties

    # -- where, and what went wrong -------------------------------------------------------
    def location(self, prop: str) -> str:
        """``file:line`` of a dotted property path (``LaunchTemplateData.UserData``,
        ``UpdatePolicy.AutoScalingRollingUpdate.PauseTime``, ``DefaultActions.0.Type``)."""
        parts = prop.split(".")
        policies = {"UpdatePolicy": self.resource.update_policy,
                    "CreationPolicy": self.resource.creation_policy,
                    "Metadata": self.resource.metadata}
        if policies.get(parts[0]) is not None:
            node, parts = policies[parts[0]], parts[1:]
            line = line_of(node) or self.resource.line
        else:
            line = self.resource.property_lines.get(parts[0], self.resource.line)
            node, parts = self.props.get(parts[0]), parts[1:]
        for part in parts:
            if isinstance(node, Mapping) and part in node:
                line, node = node.line_of(part) or line, node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                line = line_of(node) or line
            else:
                break
        return f"{self.path}:{line}" if line else self.path

    def error(self, prop: str, message: str, hint: str | None = None, *,
              at: str | None = None) -> ConfigError:
        return ConfigError(f"resource {self.resource.logical_id}: property {prop}: {message}",
                           location=self.location(at or prop), hint=hint)

    def unsupported(self, prop: str, why: str = "", *,
                    at: str | None = None) -> UnsupportedProperty:
        return UnsupportedProperty(self.resource.logical_id, prop,
                                   location=self.location(at or prop), why=why)

    def allow(self, mapping: Any, honoured: Iterable[str], recorded: Iterable[str] = (),
              prefix: str = "") -> dict[str, Any]:
        if mapping is None:
            return {}
        if not isinstance(mapping, dict):
            raise self.error(prefix.rstrip(".") or "Properties", "must be a mapping")
        known = set(honoured) | set(recorded)
        for key in mapping:
            if key not in known:
                raise self.unsupported(prefix + key)
        return mapping

    # -- values ---------------------------------------------------------------------------
    def text(self, prop: str, value: Any) -> str:
        missing = missing_attributes(value)
        if missing:
            raise self.error(prop, f"uses {', '.join(missing)}, which the local cloud could not "
                             "resolve", hint="the local cloud's attribute resolver must supply it")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise self.error(prop, f"must be a string, not {type(value).__name__}")

    def integer(self, prop: str, value: Any, low: int | None = None,
                high: int | None = None) -> int:
        try:
            number = int(self.text(prop, value))
        except ValueError:
            raise self.error(prop, f"must be a whole number, not {value!r}") from None
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            raise self.error(prop, f"{number} is out of range ({bounds})")
        return number

    def boolean(self, prop: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        word = self.text(prop, value).lower()
        if word not in ("true", "false"):
            raise self.error(prop, f"must be true or false, not {value!r}")
        return word == "true"

    def choice(self, prop: str, value: Any, choices: Iterable[str], *,
               supported: Iterable[str] | None = None) -> str:
        """``value`` must be one of AWS's ``choices``; one the local cloud cannot honour
        (not in ``supported``) is an unsupported property, not a typo."""
        word = self.text(prop, value)
        choices = list(choices)
        if word not in choices:
            raise self.error(prop, f"{word!r} is not one of {', '.join(choices)}")
        if supported is not None and word not in supported:
            raise self.unsupported(prop, why=f"{word} is not emulated")
        return word

    def strings(self, prop: str, value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(prop, "must be a list")
        return [str(item) if isinstance(item, str) else self.text(prop, item) for item in value]

    def duration(self, prop: str, value: Any, maximum_s: int) -> int:
        try:
            seconds = s.parse_duration(self.text(prop, value))
        except ConfigError as exc:
            raise self.error(prop, exc.message) from None
        if seconds > maximum_s:
            raise self.error(prop, f"{value} is longer than the maximum PT{maximum_s // 3600}H")
        return seconds

    def link(self, prop: str, value: Any, resource_type: str,
             attributes: Iterable[str | None] = (None,)) -> str:
        """The logical id ``value`` refers to: a Ref/GetAtt, or the physical name of a
        resource of this stack. The local cloud cannot reach resources outside the stack."""
        if isinstance(value, Reference):
            target = self.stack.resources.get(value.logical_id)
            if target and target.type == resource_type and value.attribute in attributes:
                return value.logical_id
        elif isinstance(value, str):
            logical_id = self.stack.by_name.get((resource_type, str(value)))
            if logical_id:
                return logical_id
        kind = resource_type.rsplit("::", 1)[-1]
        raise self.error(prop, f"must refer to a {kind} of this stack, not {value!r}",
                         hint=f"use !Ref or !GetAtt on a {resource_type} resource")

    def name(self) -> str:
        return str(self.resource.physical_id)


class _Stack:
    """What readers need to know about the whole stack: its resources and their names."""

    def __init__(self, resources: dict[str, ResolvedResource]) -> None:
        self.resources = resources
        self.by_name: dict[tuple[str, str], str] = {}
        for logical_id, resource in resources.items():
            self.by_name[(resource.type, str(resource.physical_id))] = logical_id
            if resource.type in (s.TARGET_GROUP, s.LOAD_BALANCER, s.SECRET, s.LAUNCH_TEMPLATE):
                name_prop = {s.LAUNCH_TEMPLATE: "LaunchTemplateName"}.get(resource.type, "Name")
                name = resource.properties.get(name_prop)
                if isinstance(name, str):
                    self.by_name[(resource.type, str(name))] = logical_id


_TAGS = ("Tags",)


def _no_policies(r: _Reader) -> None:
    """CreationPolicy/UpdatePolicy mean something only on an Auto Scaling group here."""
    for attribute, policy in (("CreationPolicy", r.resource.creation_policy),
                              ("UpdatePolicy", r.resource.update_policy)):
        if policy is not None:
            raise r.unsupported(attribute, why="only Auto Scaling groups honour it")


def target_group(r: _Reader) -> s.TargetGroupSpec:
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
    _no_policies(r)
    return s.TargetGroupSpec(**spec)


def _target_group_attribute(r: _Reader, i: int, attribute: Any, spec: dict[str, Any]) -> None:
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


def load_balancer(r: _Reader) -> s.LoadBalancerSpec:
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
    _no_policies(r)
    return s.LoadBalancerSpec(**spec)


def listener(r: _Reader) -> s.ListenerSpec:
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
    _no_policies(r)
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


def launch_template(r: _Reader) -> s.LaunchTemplateSpec:
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
    _no_policies(r)
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


def _user_data(r: _Reader, value: Any) -> str:
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


def auto_scaling_group(r: _Reader) -> s.AutoScalingGroupSpec:
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


def _launch_template_ref(r: _Reader, value: Any) -> s.LaunchTemplateRef:
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


def _creation_policy(r: _Reader) -> s.CreationPolicySpec | None:
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


def _rolling_update(r: _Reader, max_size: int) -> s.RollingUpdatePolicy | None:
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


def codedeploy_application(r: _Reader) -> s.CodeDeployApplicationSpec:
    p = r.allow(r.props, honoured=("ApplicationName", "ComputePlatform"), recorded=_TAGS)
    _no_policies(r)
    return s.CodeDeployApplicationSpec(
        logical_id=r.resource.logical_id, name=r.name(),
        compute_platform=r.choice("ComputePlatform", p.get("ComputePlatform", "Server"),
                                  ("Server", "Lambda", "ECS"), supported=("Server",)))


def deployment_group(r: _Reader) -> s.DeploymentGroupSpec:
    p = r.allow(r.props, honoured=(
        "ApplicationName", "DeploymentGroupName", "DeploymentConfigName", "AutoScalingGroups",
        "LoadBalancerInfo", "DeploymentStyle", "AutoRollbackConfiguration",
        "AlarmConfiguration", "OutdatedInstancesStrategy"),
        recorded=("ServiceRoleArn", "TerminationHookEnabled", *_TAGS))
    if "ApplicationName" not in p:
        raise r.error("ApplicationName", "is required")
    application = r.link("ApplicationName", p["ApplicationName"], s.CODEDEPLOY_APPLICATION)
    spec: dict[str, Any] = {
        "logical_id": r.resource.logical_id, "name": r.name(), "application": application,
        "application_name": str(p["ApplicationName"]),
        "service_role": str(p.get("ServiceRoleArn", "")),
        "auto_scaling_groups": [r.link(f"AutoScalingGroups.{i}", group, s.AUTO_SCALING_GROUP)
                                for i, group in enumerate(p.get("AutoScalingGroups") or [])],
        "outdated_instances_strategy": r.choice(
            "OutdatedInstancesStrategy", p.get("OutdatedInstancesStrategy", "UPDATE"),
            ("UPDATE", "IGNORE")),
    }
    config = p.get("DeploymentConfigName", "CodeDeployDefault.OneAtATime")
    if isinstance(config, Reference) or str(config) not in s.BUILTIN_DEPLOYMENT_CONFIGS:
        if str(config).startswith("CodeDeployDefault."):
            raise r.unsupported("DeploymentConfigName", why=f"{config} is not emulated")
        spec["deployment_config"] = r.link("DeploymentConfigName", config, s.DEPLOYMENT_CONFIG)
    spec["deployment_config_name"] = str(config)

    info = r.allow(p.get("LoadBalancerInfo"), honoured=("TargetGroupInfoList",),
                   prefix="LoadBalancerInfo.")
    for i, group in enumerate(info.get("TargetGroupInfoList") or []):
        where = f"LoadBalancerInfo.TargetGroupInfoList.{i}"
        r.allow(group, honoured=("Name",), prefix=where + ".")
        spec["target_groups"] = [*spec.get("target_groups", []), r.link(
            where + ".Name", group.get("Name"), s.TARGET_GROUP, (None, "TargetGroupName"))]

    style = r.allow(p.get("DeploymentStyle"), honoured=("DeploymentType", "DeploymentOption"),
                    prefix="DeploymentStyle.")
    spec["deployment_type"] = r.choice("DeploymentStyle.DeploymentType",
                                       style.get("DeploymentType", "IN_PLACE"),
                                       ("IN_PLACE", "BLUE_GREEN"), supported=("IN_PLACE",))
    spec["deployment_option"] = r.choice(
        "DeploymentStyle.DeploymentOption",
        style.get("DeploymentOption", "WITHOUT_TRAFFIC_CONTROL"),
        ("WITH_TRAFFIC_CONTROL", "WITHOUT_TRAFFIC_CONTROL"))
    if spec["deployment_option"] == "WITH_TRAFFIC_CONTROL" and not spec.get("target_groups"):
        raise r.error("DeploymentStyle.DeploymentOption", "WITH_TRAFFIC_CONTROL needs "
                      "LoadBalancerInfo.TargetGroupInfoList")

    rollback = r.allow(p.get("AutoRollbackConfiguration"), honoured=("Enabled", "Events"),
                       prefix="AutoRollbackConfiguration.")
    events = r.strings("AutoRollbackConfiguration.Events", rollback.get("Events"))
    for event in events:
        r.choice("AutoRollbackConfiguration.Events", event, (
            "DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"))
    spec["auto_rollback"] = s.AutoRollbackSpec(
        enabled=r.boolean("AutoRollbackConfiguration.Enabled", rollback.get("Enabled", False)),
        events=events)

    alarms = r.allow(p.get("AlarmConfiguration"),
                     honoured=("Enabled", "Alarms", "IgnorePollAlarmFailure"),
                     prefix="AlarmConfiguration.")
    spec["alarm_configuration"] = s.AlarmConfigurationSpec(
        enabled=r.boolean("AlarmConfiguration.Enabled", alarms.get("Enabled", False)),
        alarms=[str(alarm.get("Name", "")) if isinstance(alarm, dict) else str(alarm)
                for alarm in alarms.get("Alarms") or []],
        ignore_poll_alarm_failure=r.boolean("AlarmConfiguration.IgnorePollAlarmFailure",
                                            alarms.get("IgnorePollAlarmFailure", False)))
    _no_policies(r)
    return s.DeploymentGroupSpec(**spec)


def deployment_config(r: _Reader) -> s.DeploymentConfigSpec:
    p = r.allow(r.props, honoured=("DeploymentConfigName", "ComputePlatform",
                                   "MinimumHealthyHosts"))
    r.choice("ComputePlatform", p.get("ComputePlatform", "Server"), ("Server", "Lambda", "ECS"),
             supported=("Server",))
    if "MinimumHealthyHosts" not in p:
        raise r.error("MinimumHealthyHosts", "is required for the Server compute platform")
    hosts = r.allow(p["MinimumHealthyHosts"], honoured=("Type", "Value"),
                    prefix="MinimumHealthyHosts.")
    kind = r.choice("MinimumHealthyHosts.Type", hosts.get("Type"), ("HOST_COUNT", "FLEET_PERCENT"))
    value = r.integer("MinimumHealthyHosts.Value", hosts.get("Value"), 0,
                      100 if kind == "FLEET_PERCENT" else None)
    _no_policies(r)
    return s.DeploymentConfigSpec(logical_id=r.resource.logical_id, name=r.name(),
                                  minimum_healthy_hosts_type=kind,
                                  minimum_healthy_hosts_value=value)


def bucket(r: _Reader) -> s.BucketSpec:
    p = r.allow(r.props, honoured=("BucketName", "VersioningConfiguration"), recorded=(
        "PublicAccessBlockConfiguration", "BucketEncryption", "OwnershipControls",
        "LifecycleConfiguration", "AccessControl", "CorsConfiguration", *_TAGS))
    versioning = r.allow(p.get("VersioningConfiguration"), honoured=("Status",),
                         prefix="VersioningConfiguration.")
    status = r.choice("VersioningConfiguration.Status", versioning.get("Status", "Suspended"),
                      ("Enabled", "Suspended"))
    _no_policies(r)
    return s.BucketSpec(logical_id=r.resource.logical_id, name=r.name(),
                        versioning=status == "Enabled")


def ssm_parameter(r: _Reader) -> s.SsmParameterSpec:
    p = r.allow(r.props, honoured=("Name", "Type", "Value", "AllowedPattern", "DataType"),
                recorded=("Description", "Tier", *_TAGS))
    if "Value" not in p:
        raise r.error("Value", "is required")
    kind = r.choice("Type", p.get("Type"), ("String", "StringList"))
    value = r.text("Value", p["Value"])
    if "AllowedPattern" in p and not re.fullmatch(r.text("AllowedPattern", p["AllowedPattern"]),
                                                  value):
        raise r.error("Value", "does not match AllowedPattern")
    _no_policies(r)
    return s.SsmParameterSpec(
        logical_id=r.resource.logical_id, name=r.name(), type=kind, value=value,
        data_type=r.choice("DataType", p.get("DataType", "text"), ("text", "aws:ec2:image")))


_DB_RECORDED = (
    "AllocatedStorage", "DBInstanceClass", "StorageType", "MultiAZ", "PubliclyAccessible",
    "VPCSecurityGroups", "DBSubnetGroupName", "BackupRetentionPeriod", "DeletionProtection",
    "StorageEncrypted", "AutoMinorVersionUpgrade", "AllowMajorVersionUpgrade",
    "PreferredBackupWindow", "PreferredMaintenanceWindow", "KmsKeyId", "CopyTagsToSnapshot",
    "DBParameterGroupName", "MonitoringInterval", "EnablePerformanceInsights",
    "AvailabilityZone", "MaxAllocatedStorage", "Iops", "StorageThroughput",
    "CACertificateIdentifier", "DeleteAutomatedBackups", "EnableCloudwatchLogsExports",
    "NetworkType", "ApplyImmediately", "MasterUserSecret", *_TAGS)


def database(r: _Reader) -> s.DatabaseSpec:
    p = r.allow(r.props, honoured=(
        "Engine", "EngineVersion", "DBName", "Port", "MasterUsername", "MasterUserPassword",
        "ManageMasterUserPassword", "DBInstanceIdentifier"), recorded=_DB_RECORDED)
    if "Engine" not in p:
        raise r.error("Engine", "is required")
    engine = s.DatabaseEngine(r.choice("Engine", p["Engine"], [e.value for e in s.DatabaseEngine]))
    if "MasterUsername" not in p:
        raise r.error("MasterUsername", "is required")
    managed = r.boolean("ManageMasterUserPassword", p.get("ManageMasterUserPassword", False))
    if managed == ("MasterUserPassword" in p):
        raise r.error("MasterUserPassword", "give exactly one of MasterUserPassword and "
                      "ManageMasterUserPassword: true")
    password = (None if managed else _credential(r, "MasterUserPassword", p["MasterUserPassword"]))
    username = _credential(r, "MasterUsername", p["MasterUsername"])
    _no_policies(r)
    return s.DatabaseSpec(
        logical_id=r.resource.logical_id, identifier=r.name(), engine=engine,
        engine_version=str(p["EngineVersion"]) if "EngineVersion" in p else None,
        db_name=r.text("DBName", p["DBName"]) if "DBName" in p else None,
        port=r.integer("Port", p.get("Port", engine.default_port), 1150, 65535),
        master_username=username if isinstance(username, s.SecretReference) else str(username),
        master_password=password, manage_master_user_password=managed)


def _credential(r: _Reader, prop: str, value: Any) -> Any:
    text = r.text(prop, value)
    match = _SECRET_REF.fullmatch(text)
    if not match:
        return text
    body = match.group(1)
    parts = body.split(":")
    split = 7 if body.startswith("arn:") else 1  # an ARN carries its own colons
    secret_id, rest = ":".join(parts[:split]), parts[split:]
    logical_id = r.stack.by_name.get((s.SECRET, secret_id))
    if logical_id is None:
        raise r.unsupported(prop, why=f"secret {secret_id} is not part of this stack")
    if rest and rest[0] != "SecretString":
        raise r.error(prop, f"dynamic reference must read SecretString, not {rest[0]}")
    if len(rest) > 2 and any(rest[2:]):
        raise r.unsupported(prop, why="secret version stages and ids are not emulated")
    return s.SecretReference(secret=logical_id, json_key=(rest[1] or None) if len(rest) > 1
                             else None)


def secret(r: _Reader) -> s.SecretSpec:
    p = r.allow(r.props, honoured=("Name", "SecretString", "GenerateSecretString"),
                recorded=("Description", "KmsKeyId", *_TAGS))
    if ("SecretString" in p) == ("GenerateSecretString" in p):
        raise r.error("SecretString", "give exactly one of SecretString and GenerateSecretString")
    _no_policies(r)
    if "SecretString" in p:
        return s.SecretSpec(logical_id=r.resource.logical_id, name=r.name(),
                            secret_string=r.text("SecretString", p["SecretString"]))
    at = "GenerateSecretString."
    rules = r.allow(p["GenerateSecretString"], honoured=(
        "SecretStringTemplate", "GenerateStringKey", "PasswordLength", "ExcludeCharacters",
        "ExcludeNumbers", "ExcludePunctuation", "ExcludeLowercase", "ExcludeUppercase",
        "IncludeSpace", "RequireEachIncludedType"), prefix=at)
    template, key = rules.get("SecretStringTemplate"), rules.get("GenerateStringKey")
    if (template is None) != (key is None):
        raise r.error(at + "SecretStringTemplate", "SecretStringTemplate and GenerateStringKey "
                      "go together")
    if template is not None:
        try:
            if not isinstance(json.loads(r.text(at + "SecretStringTemplate", template)), dict):
                raise ValueError
        except ValueError:
            raise r.error(at + "SecretStringTemplate", "must be a JSON object") from None
    def flag(name: str, default: bool = False) -> bool:
        return r.boolean(at + name, rules.get(name, default))

    return s.SecretSpec(
        logical_id=r.resource.logical_id, name=r.name(),
        generate=s.GenerateSecretSpec(
            secret_string_template=None if template is None else str(template),
            generate_string_key=None if key is None else r.text(at + "GenerateStringKey", key),
            password_length=r.integer(at + "PasswordLength", rules.get("PasswordLength", 32),
                                      1, 4096),
            exclude_characters=str(rules.get("ExcludeCharacters", "")),
            exclude_numbers=flag("ExcludeNumbers"), exclude_punctuation=flag("ExcludePunctuation"),
            exclude_lowercase=flag("ExcludeLowercase"), exclude_uppercase=flag("ExcludeUppercase"),
            include_space=flag("IncludeSpace"),
            require_each_included_type=flag("RequireEachIncludedType", True)))


_READERS: dict[str, tuple[str, Callable[[_Reader], Any]]] = {
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
    stack = _Stack(resources)
    found: dict[str, dict[str, Any]] = {field: {} for field in s.StackSpecs.model_fields}
    for logical_id, resource in resources.items():
        if resource.type not in _READERS:
            continue
        field, read = _READERS[resource.type]
        reader = _Reader(resource, path, stack)
        metadata = resource.metadata or {}
        if "AWS::CloudFormation::Init" in metadata:
            raise reader.unsupported("Metadata.AWS::CloudFormation::Init",
                                     why="cfn-init is not emulated; put the steps in UserData")
        found[field][logical_id] = read(reader)
    return s.StackSpecs(**found)

"""Readers for the services the fleet uses: CodeDeploy, S3, SSM, RDS and Secrets Manager.

The same rules as the fleet's readers in :mod:`deployer.cfn.extract`: each reader says which
properties it honours and which it only records, applies AWS's defaults and checks, and
names resource, property and line when something is wrong (:class:`PropertyReader`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from deployer.cfn import specs as s
from deployer.cfn.properties import PropertyReader
from deployer.cfn.values import Reference

_SECRET_REF = re.compile(r"\{\{resolve:secretsmanager:(.+)\}\}")
_TAGS = ("Tags",)


def codedeploy_application(r: PropertyReader) -> s.CodeDeployApplicationSpec:
    p = r.allow(r.props, honoured=("ApplicationName", "ComputePlatform"), recorded=_TAGS)
    r.no_policies()
    return s.CodeDeployApplicationSpec(
        logical_id=r.resource.logical_id, name=r.name(),
        compute_platform=r.choice("ComputePlatform", p.get("ComputePlatform", "Server"),
                                  ("Server", "Lambda", "ECS"), supported=("Server",)))


def deployment_group(r: PropertyReader) -> s.DeploymentGroupSpec:
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
    r.no_policies()
    return s.DeploymentGroupSpec(**spec)


def deployment_config(r: PropertyReader) -> s.DeploymentConfigSpec:
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
    r.no_policies()
    return s.DeploymentConfigSpec(logical_id=r.resource.logical_id, name=r.name(),
                                  minimum_healthy_hosts_type=kind,
                                  minimum_healthy_hosts_value=value)


def bucket(r: PropertyReader) -> s.BucketSpec:
    p = r.allow(r.props, honoured=("BucketName", "VersioningConfiguration"), recorded=(
        "PublicAccessBlockConfiguration", "BucketEncryption", "OwnershipControls",
        "LifecycleConfiguration", "AccessControl", "CorsConfiguration", *_TAGS))
    versioning = r.allow(p.get("VersioningConfiguration"), honoured=("Status",),
                         prefix="VersioningConfiguration.")
    status = r.choice("VersioningConfiguration.Status", versioning.get("Status", "Suspended"),
                      ("Enabled", "Suspended"))
    r.no_policies()
    return s.BucketSpec(logical_id=r.resource.logical_id, name=r.name(),
                        versioning=status == "Enabled")


def ssm_parameter(r: PropertyReader) -> s.SsmParameterSpec:
    p = r.allow(r.props, honoured=("Name", "Type", "Value", "AllowedPattern", "DataType"),
                recorded=("Description", "Tier", *_TAGS))
    if "Value" not in p:
        raise r.error("Value", "is required")
    kind = r.choice("Type", p.get("Type"), ("String", "StringList"))
    value = r.text("Value", p["Value"])
    if "AllowedPattern" in p and not re.fullmatch(r.text("AllowedPattern", p["AllowedPattern"]),
                                                  value):
        raise r.error("Value", "does not match AllowedPattern")
    r.no_policies()
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


def database(r: PropertyReader) -> s.DatabaseSpec:
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
    r.no_policies()
    return s.DatabaseSpec(
        logical_id=r.resource.logical_id, identifier=r.name(), engine=engine,
        engine_version=str(p["EngineVersion"]) if "EngineVersion" in p else None,
        db_name=r.text("DBName", p["DBName"]) if "DBName" in p else None,
        port=r.integer("Port", p.get("Port", engine.default_port), 1150, 65535),
        master_username=username if isinstance(username, s.SecretReference) else str(username),
        master_password=password, manage_master_user_password=managed)


def _credential(r: PropertyReader, prop: str, value: Any) -> Any:
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


def secret(r: PropertyReader) -> s.SecretSpec:
    p = r.allow(r.props, honoured=("Name", "SecretString", "GenerateSecretString"),
                recorded=("Description", "KmsKeyId", *_TAGS))
    if ("SecretString" in p) == ("GenerateSecretString" in p):
        raise r.error("SecretString", "give exactly one of SecretString and GenerateSecretString")
    r.no_policies()
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

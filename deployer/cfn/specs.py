"""What the local cloud builds from a stack: typed specs, one per supported resource type.

Each spec is read from a resolved resource with the AWS default for every property the
template leaves out (as AWS's resource reference documents it), and validated the way AWS
would. Every property of a supported type is either honoured or harmlessly recorded (tags,
subnets, security groups: the local cloud has no network to put them on); anything else raises
:class:`UnsupportedProperty`, because a template the local cloud silently half-runs would
rehearse something other than what ships.
"""

from __future__ import annotations

import re
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from deployer.base.errors import ConfigError

# Types the local cloud emulates, and types it accepts and only records (they have no
# effect on one machine: networks, roles, log groups, alarms).
TARGET_GROUP = "AWS::ElasticLoadBalancingV2::TargetGroup"
LOAD_BALANCER = "AWS::ElasticLoadBalancingV2::LoadBalancer"
LISTENER = "AWS::ElasticLoadBalancingV2::Listener"
LAUNCH_TEMPLATE = "AWS::EC2::LaunchTemplate"
AUTO_SCALING_GROUP = "AWS::AutoScaling::AutoScalingGroup"
CODEDEPLOY_APPLICATION = "AWS::CodeDeploy::Application"
DEPLOYMENT_GROUP = "AWS::CodeDeploy::DeploymentGroup"
DEPLOYMENT_CONFIG = "AWS::CodeDeploy::DeploymentConfig"
BUCKET = "AWS::S3::Bucket"
SSM_PARAMETER = "AWS::SSM::Parameter"
DB_INSTANCE = "AWS::RDS::DBInstance"
SECRET = "AWS::SecretsManager::Secret"

SUPPORTED_TYPES = frozenset({
    TARGET_GROUP, LOAD_BALANCER, LISTENER, LAUNCH_TEMPLATE, AUTO_SCALING_GROUP,
    CODEDEPLOY_APPLICATION, DEPLOYMENT_GROUP, DEPLOYMENT_CONFIG, BUCKET, SSM_PARAMETER,
    DB_INSTANCE, SECRET,
})
RECORDED_TYPES = frozenset({
    "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::SecurityGroup",
    "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress",
    "AWS::EC2::InternetGateway", "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::RouteTable",
    "AWS::EC2::Route", "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::EIP",
    "AWS::EC2::NatGateway", "AWS::IAM::Role", "AWS::IAM::InstanceProfile", "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy", "AWS::RDS::DBSubnetGroup", "AWS::Logs::LogGroup",
    "AWS::CloudWatch::Alarm",
})

# The property whose value `Ref` returns when the template sets it (otherwise the local
# cloud makes up a deterministic physical id).
NAME_PROPERTIES = {
    BUCKET: "BucketName",
    SSM_PARAMETER: "Name",
    DB_INSTANCE: "DBInstanceIdentifier",
    CODEDEPLOY_APPLICATION: "ApplicationName",
    DEPLOYMENT_GROUP: "DeploymentGroupName",
    DEPLOYMENT_CONFIG: "DeploymentConfigName",
    AUTO_SCALING_GROUP: "AutoScalingGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::Logs::LogGroup": "LogGroupName",
}

# Fn::GetAtt attributes of the supported types (from the CloudFormation resource schemas),
# so a typo fails at load time rather than as a placeholder deep inside user data.
ATTRIBUTES = {
    TARGET_GROUP: {"LoadBalancerArns", "TargetGroupArn", "TargetGroupFullName",
                   "TargetGroupName"},
    LOAD_BALANCER: {"CanonicalHostedZoneID", "DNSName", "LoadBalancerArn",
                    "LoadBalancerFullName", "LoadBalancerName", "SecurityGroups"},
    LISTENER: {"ListenerArn"},
    LAUNCH_TEMPLATE: {"DefaultVersionNumber", "LatestVersionNumber", "LaunchTemplateId"},
    AUTO_SCALING_GROUP: {"AutoScalingGroupARN"},
    CODEDEPLOY_APPLICATION: set(),
    DEPLOYMENT_GROUP: set(),
    DEPLOYMENT_CONFIG: set(),
    BUCKET: {"Arn", "DomainName", "DualStackDomainName", "RegionalDomainName", "WebsiteURL"},
    SSM_PARAMETER: {"Type", "Value"},
    DB_INSTANCE: {"Endpoint.Address", "Endpoint.Port", "Endpoint.HostedZoneId",
                  "DbiResourceId", "DBInstanceArn", "DBSystemId", "MasterUserSecret.SecretArn",
                  "CertificateDetails.CAIdentifier", "CertificateDetails.ValidTill"},
    SECRET: {"Id"},
}

BUILTIN_DEPLOYMENT_CONFIGS = frozenset({
    "CodeDeployDefault.OneAtATime", "CodeDeployDefault.HalfAtATime",
    "CodeDeployDefault.AllAtOnce",
})
SCALING_PROCESSES = frozenset({
    "Launch", "Terminate", "HealthCheck", "ReplaceUnhealthy", "AZRebalance",
    "AlarmNotification", "ScheduledActions", "AddToLoadBalancer", "InstanceRefresh",
})

_DURATION = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?")


def parse_duration(text: str) -> int:
    """Seconds in an ISO-8601 duration as CloudFormation writes them: PT5M, PT1H, PT1M30S."""
    match = _DURATION.fullmatch(str(text).strip())
    if not match or not any(match.groups()):
        raise ConfigError(f"{text!r} is not an ISO-8601 duration such as PT30S, PT5M or PT1H")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True)

    logical_id: str


class TargetGroupSpec(_Spec):
    name: str
    port: int | None
    protocol: str = "HTTP"
    target_type: str = "instance"
    health_check_enabled: bool = True
    health_check_protocol: str = "HTTP"
    health_check_path: str = "/"
    health_check_port: str = "traffic-port"
    health_check_interval_s: int = 30
    health_check_timeout_s: int = 5
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    matcher: str = "200"
    deregistration_delay_s: int = 300

    def matches(self, status: int) -> bool:
        """Whether an HTTP status passes the health check (Matcher: "200", "200,302", "200-299")."""
        return any(low <= status <= high for low, high in _matcher_ranges(self.matcher))


def _matcher_ranges(matcher: str) -> list[tuple[int, int]]:
    ranges = []
    for part in matcher.split(","):
        low, _, high = part.strip().partition("-")
        ranges.append((int(low), int(high or low)))
    return ranges


class LoadBalancerSpec(_Spec):
    name: str
    scheme: str = "internet-facing"
    idle_timeout_s: int = 60
    subnets: list[str] = Field(default_factory=list)
    security_groups: list[str] = Field(default_factory=list)


class ListenerSpec(_Spec):
    load_balancer: str  # logical id
    port: int
    protocol: str = "HTTP"
    default_target_group: str  # logical id: the default action forwards there


class LaunchTemplateSpec(_Spec):
    name: str
    image_id: str | None = None
    instance_type: str | None = None
    # The script text, decoded. Not in repr: it may carry NoEcho values.
    user_data: str | None = Field(default=None, repr=False)
    metadata_options: dict[str, str] = Field(default_factory=dict)
    iam_instance_profile: dict[str, str] = Field(default_factory=dict)
    security_groups: list[str] = Field(default_factory=list)
    # The whole LaunchTemplateData, plain: any change to it is a new template version.
    data: dict = Field(default_factory=dict, repr=False)


class HealthCheckType(str, Enum):
    EC2 = "EC2"
    ELB = "ELB"


class VersionTracking(str, Enum):
    """How a group names its launch template version: a fixed number, or via Fn::GetAtt
    LatestVersionNumber / DefaultVersionNumber (then every template change is a new value)."""

    FIXED = "fixed"
    LATEST = "latest"
    DEFAULT = "default"


class LaunchTemplateRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    logical_id: str
    version: str
    tracking: VersionTracking = VersionTracking.FIXED


class CreationPolicySpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    signal_count: int = 1
    signal_timeout_s: int = 300
    min_successful_instances_percent: int = 100


class RollingUpdatePolicy(BaseModel):
    """UpdatePolicy.AutoScalingRollingUpdate, with CloudFormation's defaults."""

    model_config = ConfigDict(frozen=True)

    max_batch_size: int = 1
    min_instances_in_service: int = 0
    min_successful_instances_percent: int = 100
    pause_time_s: int = 0
    wait_on_resource_signals: bool = False
    suspend_processes: list[str] = Field(default_factory=list)


class AutoScalingGroupSpec(_Spec):
    name: str
    min_size: int
    max_size: int
    desired_capacity: int
    health_check_type: HealthCheckType = HealthCheckType.EC2
    health_check_grace_period_s: int = 0
    launch_template: LaunchTemplateRef
    target_groups: list[str] = Field(default_factory=list)  # logical ids
    vpc_zone_identifier: list[str] = Field(default_factory=list)
    termination_policies: list[str] = Field(default_factory=list)
    creation_policy: CreationPolicySpec | None = None
    rolling_update: RollingUpdatePolicy | None = None


class CodeDeployApplicationSpec(_Spec):
    name: str
    compute_platform: str = "Server"


class AutoRollbackSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    enabled: bool = False
    events: list[str] = Field(default_factory=list)


class AlarmConfigurationSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    enabled: bool = False
    alarms: list[str] = Field(default_factory=list)
    ignore_poll_alarm_failure: bool = False


class DeploymentGroupSpec(_Spec):
    name: str
    application: str  # logical id
    application_name: str
    deployment_config_name: str = "CodeDeployDefault.OneAtATime"
    deployment_config: str | None = None  # logical id, when the config is in this stack
    auto_scaling_groups: list[str] = Field(default_factory=list)  # logical ids
    target_groups: list[str] = Field(default_factory=list)  # logical ids
    deployment_type: str = "IN_PLACE"
    deployment_option: str = "WITHOUT_TRAFFIC_CONTROL"
    auto_rollback: AutoRollbackSpec = AutoRollbackSpec()
    alarm_configuration: AlarmConfigurationSpec = AlarmConfigurationSpec()
    outdated_instances_strategy: str = "UPDATE"
    service_role: str = ""

    @property
    def with_traffic_control(self) -> bool:
        return self.deployment_option == "WITH_TRAFFIC_CONTROL"


class MinimumHealthyHostsType(str, Enum):
    HOST_COUNT = "HOST_COUNT"
    FLEET_PERCENT = "FLEET_PERCENT"


class DeploymentConfigSpec(_Spec):
    name: str
    minimum_healthy_hosts_type: MinimumHealthyHostsType
    minimum_healthy_hosts_value: int


class BucketSpec(_Spec):
    name: str
    versioning: bool = False


class SsmParameterSpec(_Spec):
    name: str
    type: str = "String"
    value: str
    data_type: str = "text"


class DatabaseEngine(str, Enum):
    POSTGRES = "postgres"
    MYSQL = "mysql"
    MARIADB = "mariadb"

    @property
    def default_port(self) -> int:
        return 5432 if self is DatabaseEngine.POSTGRES else 3306


class SecretReference(BaseModel):
    """``{{resolve:secretsmanager:<secret>:SecretString:<json key>}}`` to a secret of this stack."""

    model_config = ConfigDict(frozen=True)

    secret: str  # logical id
    json_key: str | None = None


class DatabaseSpec(_Spec):
    identifier: str
    engine: DatabaseEngine
    engine_version: str | None = None
    db_name: str | None = None
    port: int
    master_username: str | SecretReference
    # None when RDS manages the password (ManageMasterUserPassword).
    master_password: SecretStr | SecretReference | None = None
    manage_master_user_password: bool = False


class GenerateSecretSpec(BaseModel):
    """GenerateSecretString: the local cloud generates the secret with these rules."""

    model_config = ConfigDict(frozen=True)

    secret_string_template: str | None = None
    generate_string_key: str | None = None
    password_length: int = 32
    exclude_characters: str = ""
    exclude_numbers: bool = False
    exclude_punctuation: bool = False
    exclude_lowercase: bool = False
    exclude_uppercase: bool = False
    include_space: bool = False
    require_each_included_type: bool = True


class SecretSpec(_Spec):
    name: str
    secret_string: SecretStr | None = None
    generate: GenerateSecretSpec | None = None


class StackSpecs(BaseModel):
    """The typed view of a stack, keyed by logical id."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    target_groups: dict[str, TargetGroupSpec] = Field(default_factory=dict)
    load_balancers: dict[str, LoadBalancerSpec] = Field(default_factory=dict)
    listeners: dict[str, ListenerSpec] = Field(default_factory=dict)
    launch_templates: dict[str, LaunchTemplateSpec] = Field(default_factory=dict)
    auto_scaling_groups: dict[str, AutoScalingGroupSpec] = Field(default_factory=dict)
    codedeploy_applications: dict[str, CodeDeployApplicationSpec] = Field(default_factory=dict)
    deployment_groups: dict[str, DeploymentGroupSpec] = Field(default_factory=dict)
    deployment_configs: dict[str, DeploymentConfigSpec] = Field(default_factory=dict)
    buckets: dict[str, BucketSpec] = Field(default_factory=dict)
    ssm_parameters: dict[str, SsmParameterSpec] = Field(default_factory=dict)
    databases: dict[str, DatabaseSpec] = Field(default_factory=dict)
    secrets: dict[str, SecretSpec] = Field(default_factory=dict)


def check_type(logical_id: str, resource_type: str, location: str) -> None:
    if resource_type not in SUPPORTED_TYPES and resource_type not in RECORDED_TYPES:
        raise ConfigError(
            f"resource {logical_id}: type {resource_type} is not supported by the local cloud",
            location=location, hint="remove it or run with --target aws")

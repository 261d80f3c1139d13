"""Stack parameters: declared types, defaults, constraints, NoEcho; and pseudo parameters.

Values arrive as strings, as they would through ``aws cloudformation create-stack``. List
types resolve to lists of strings; everything else stays a string (``Ref`` to a Number
parameter is a string in CloudFormation too).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from deployer.base.errors import ConfigError
from deployer.cfn.document import line_of

# AWS's public SSM parameters that name an image (ID resolved by AWS at stack operations).
PUBLIC_IMAGE_PARAMETERS = (
    "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
    "/aws/service/canonical/ubuntu/server/jammy/stable/current/amd64/hvm/ebs-gp2/ami-id",
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
)

ParameterValue = str | list[str]
SsmResolver = Callable[[str], "str | None"]

_KEYS = {"Type", "Default", "Description", "AllowedValues", "AllowedPattern",
         "ConstraintDescription", "MinLength", "MaxLength", "MinValue", "MaxValue", "NoEcho"}
# AWS-specific types whose values are ids or names of things in the account: plain strings
# here (the local cloud has its own ids), lists when wrapped in List<...>.
_AWS_TYPE = re.compile(r"AWS::EC2::(AvailabilityZone::Name|Image::Id|Instance::Id|KeyPair::KeyName"
                       r"|SecurityGroup::GroupName|SecurityGroup::Id|Subnet::Id|Volume::Id"
                       r"|VPC::Id)|AWS::Route53::HostedZone::Id|AWS::SSM::Parameter::Name")
_SSM_TYPE = re.compile(r"AWS::SSM::Parameter::Value<(.+)>")
_LIST_TYPE = re.compile(r"List<(.+)>")


def pseudo_parameters(stack_name: str, region: str, account_id: str) -> dict[str, Any]:
    partition = ("aws-cn" if region.startswith("cn-")
                 else "aws-us-gov" if region.startswith("us-gov-") else "aws")
    stack_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"{account_id}/{region}/{stack_name}")
    return {
        "AWS::StackName": stack_name,
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::Partition": partition,
        "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
        "AWS::StackId": f"arn:{partition}:cloudformation:{region}:{account_id}:stack/"
                        f"{stack_name}/{stack_uuid}",
        "AWS::NotificationARNs": [],
    }


class _Parameter:
    def __init__(self, name: str, declaration: Any, location: str) -> None:
        self.name = name
        self.declaration = declaration
        self.location = location
        if not isinstance(declaration, dict) or "Type" not in declaration:
            raise self.error("needs a Type")
        unknown = set(declaration) - _KEYS
        if unknown:
            raise self.error(f"unknown key {sorted(unknown)[0]}")
        self.type = str(declaration["Type"])
        self.noecho = str(declaration.get("NoEcho", False)).lower() == "true"

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"parameter {self.name}: {message}", location=self.location)

    def shown(self, value: str) -> str:
        return "****" if self.noecho else repr(value)

    def resolve(self, given: str | None, ssm_resolver: SsmResolver | None) -> ParameterValue:
        if given is None:
            if "Default" not in self.declaration:
                raise self.error("no value given and no Default")
            given = _text(self.declaration["Default"])
        ssm = _SSM_TYPE.fullmatch(self.type)
        if ssm:
            # The value is the name of an SSM parameter; its value is what the stack sees.
            if ssm_resolver is None:
                raise self.error(f"type {self.type} needs an SSM parameter store, and none "
                                 "was given")
            looked_up = ssm_resolver(given)
            if looked_up is None:
                raise self.error(f"SSM parameter {given} does not exist")
            return self._typed(ssm.group(1), _text(looked_up))
        return self._typed(self.type, given)

    def _typed(self, kind: str, value: str) -> ParameterValue:
        listed = _LIST_TYPE.fullmatch(kind)
        if kind == "CommaDelimitedList" or listed:
            items = [item.strip() for item in value.split(",")] if value else []
            member = listed.group(1) if listed else "String"
            for item in items:
                self._check(member, item)
            return items
        if kind not in ("String", "Number") and not _AWS_TYPE.fullmatch(kind):
            raise self.error(f"unknown type {kind}")
        self._check(kind, value)
        return value

    def _check(self, kind: str, value: str) -> None:
        d = self.declaration
        why = d.get("ConstraintDescription")
        allowed = d.get("AllowedValues")
        if allowed is not None and value not in [_text(v) for v in allowed]:
            raise self.error(why or f"{self.shown(value)} is not one of the AllowedValues")
        if kind == "Number":
            try:
                number = float(value)
            except ValueError:
                raise self.error(f"{self.shown(value)} is not a number") from None
            if "MinValue" in d and number < float(d["MinValue"]):
                raise self.error(why or f"{self.shown(value)} is below MinValue {d['MinValue']}")
            if "MaxValue" in d and number > float(d["MaxValue"]):
                raise self.error(why or f"{self.shown(value)} is above MaxValue {d['MaxValue']}")
            return
        if "AllowedPattern" in d and not re.fullmatch(str(d["AllowedPattern"]), value):
            raise self.error(why or f"{self.shown(value)} does not match AllowedPattern "
                             f"{d['AllowedPattern']}")
        if "MinLength" in d and len(value) < int(d["MinLength"]):
            raise self.error(why or f"is shorter than MinLength {d['MinLength']}")
        if "MaxLength" in d and len(value) > int(d["MaxLength"]):
            raise self.error(why or f"is longer than MaxLength {d['MaxLength']}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)


def resolve_parameters(declared: Any, given: dict[str, Any], path: str,
                       ssm_resolver: SsmResolver | None = None
                       ) -> tuple[dict[str, ParameterValue], frozenset[str]]:
    """The value of every declared parameter, and the names of the NoEcho ones."""
    if declared is None:
        declared = {}
    if not isinstance(declared, dict):
        raise ConfigError("Parameters must be a mapping", location=path)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(f"parameter {unknown[0]} is not declared in the template "
                          f"(declared: {', '.join(declared) or 'none'})", location=path)
    values: dict[str, ParameterValue] = {}
    noecho: set[str] = set()
    for name, declaration in declared.items():
        line = line_of(declared, name)
        parameter = _Parameter(name, declaration, f"{path}:{line}" if line else path)
        raw = given.get(name)
        values[name] = parameter.resolve(None if raw is None else _text(raw), ssm_resolver)
        if parameter.noecho:
            noecho.add(name)
    return values, frozenset(noecho)

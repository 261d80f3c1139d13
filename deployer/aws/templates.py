"""What the adapter needs to know about a CloudFormation template before sending it."""

from __future__ import annotations

from typing import Any

import yaml

from deployer.base.errors import ConfigError

# CloudFormation takes a template body up to this size; larger ones must come from S3.
TEMPLATE_BODY_LIMIT = 51_200

# IAM resources whose explicit name makes CloudFormation ask for CAPABILITY_NAMED_IAM.
_IAM_NAME_PROPERTIES = {
    "AWS::IAM::Role": "RoleName", "AWS::IAM::User": "UserName", "AWS::IAM::Group": "GroupName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
}


class _AnyTagLoader(yaml.SafeLoader):
    """Reads short-form intrinsics (!Ref, !Sub …) as plain values: only the shape matters here."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


_AnyTagLoader.add_multi_constructor("!", _any_tag)


def parse(text: str, where: str) -> dict[str, Any]:
    try:
        document = yaml.load(text, Loader=_AnyTagLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not a CloudFormation template: {exc}", location=where) from exc
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise ConfigError("not a CloudFormation template (no Resources)", location=where)
    return document


def capabilities(document: dict[str, Any]) -> list[str]:
    """The capabilities CloudFormation will insist on for this template."""
    needed: list[str] = []
    for resource in document["Resources"].values():
        kind = str((resource or {}).get("Type", ""))
        if kind.startswith("AWS::IAM::") and "CAPABILITY_IAM" not in needed:
            needed.append("CAPABILITY_IAM")
        name_prop = _IAM_NAME_PROPERTIES.get(kind)
        if name_prop and name_prop in ((resource or {}).get("Properties") or {}):
            if "CAPABILITY_NAMED_IAM" not in needed:
                needed.append("CAPABILITY_NAMED_IAM")
    if document.get("Transform"):
        needed.append("CAPABILITY_AUTO_EXPAND")
    return needed


def parameter_names(document: dict[str, Any]) -> list[str]:
    return list((document.get("Parameters") or {}).keys())

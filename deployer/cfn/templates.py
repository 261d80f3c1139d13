"""The local cloud's CloudFormation reader: the very templates that ship to AWS, resolved.

``load_stack(path, parameters, stack_name=...)`` reads a template (YAML with the short
forms, or JSON), resolves parameters, pseudo parameters, mappings, conditions and the
intrinsic functions, and returns a :class:`StackModel`: every active resource with its
properties resolved, the outputs, and typed specs of what the local cloud builds (target
groups, launch templates, Auto Scaling groups, CodeDeploy groups...).

References keep their target: ``!Ref Group`` resolves to the group's physical id
(deterministic here: ``{stack}-{logical id}`` unless the template names it), marked as a
reference to ``Group``. ``Fn::GetAtt`` asks the caller's ``attribute_resolver`` (only the
running local cloud knows a load balancer's port); what nobody can answer becomes the
placeholder ``Logical.Attribute``, fine in a recorded resource or an output but refused
wherever the local cloud would act on it. Errors are :class:`ConfigError` naming the
resource or parameter, the property and ``file:line``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ConfigDict, Field

from deployer.base.errors import ConfigError
from deployer.cfn import specs
from deployer.cfn.document import load_document
from deployer.cfn.extract import extract_specs
from deployer.cfn.parameters import (
    ParameterValue,
    SsmResolver,
    pseudo_parameters,
    resolve_parameters,
)
from deployer.cfn.resolver import AttributeResolver, Resolver, where
from deployer.cfn.values import ResolvedResource

_SECTIONS = {"AWSTemplateFormatVersion", "Description", "Metadata", "Parameters", "Mappings",
             "Conditions", "Resources", "Outputs"}
_LOGICAL_ID = re.compile(r"[A-Za-z0-9]+")
_STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")


class StackModel(specs.StackSpecs):
    """A template resolved for one stack: what the local cloud builds and reports."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: str
    stack_name: str
    region: str
    account_id: str
    description: str | None = None
    # NoEcho values live here: never print them (displayed_parameters() masks them).
    parameters: dict[str, ParameterValue] = Field(default_factory=dict, repr=False)
    noecho_parameters: frozenset[str] = frozenset()
    conditions: dict[str, bool] = Field(default_factory=dict)
    resources: dict[str, ResolvedResource] = Field(default_factory=dict, repr=False)
    skipped: dict[str, str] = Field(default_factory=dict)  # logical id → the false condition
    recorded: list[ResolvedResource] = Field(default_factory=list, repr=False)
    outputs: dict[str, str] = Field(default_factory=dict)
    # Outputs that still hold a Logical.Attribute placeholder, with the attributes missing.
    unresolved_outputs: dict[str, list[str]] = Field(default_factory=dict)

    def __repr__(self) -> str:
        return self.redact(super().__repr__())

    def __str__(self) -> str:
        return self.redact(super().__str__())

    def displayed_parameters(self) -> dict[str, str]:
        """Parameters as a status line may show them: NoEcho values masked, as AWS does."""
        return {name: "****" if name in self.noecho_parameters else
                (",".join(value) if isinstance(value, list) else value)
                for name, value in self.parameters.items()}

    def redact(self, text: str) -> str:
        """``text`` with every NoEcho value masked (for logs of user data, hook output...)."""
        for name in self.noecho_parameters:
            value = self.parameters.get(name)
            for secret in (value if isinstance(value, list) else [value]):
                if secret:
                    text = text.replace(secret, "****")
        return text


def load_stack(path: Path | str, parameters: dict[str, str] | None = None, *, stack_name: str,
               region: str = "us-east-1", account_id: str = "123456789012",
               attribute_resolver: AttributeResolver | None = None,
               ssm_resolver: SsmResolver | None = None) -> StackModel:
    """Read and resolve the template at ``path`` for the stack ``stack_name``."""
    try:
        return _load_stack(Path(path), parameters, stack_name=stack_name, region=region,
                           account_id=account_id, attribute_resolver=attribute_resolver,
                           ssm_resolver=ssm_resolver)
    except RecursionError:
        # Thousands of nested lists or functions: no template needs that, and Python's
        # stack would otherwise end the program with a traceback.
        raise ConfigError("the template nests values too deeply to read",
                          location=str(path), hint="flatten the nesting") from None


def _load_stack(path: Path, parameters: dict[str, str] | None, *, stack_name: str,
                region: str, account_id: str, attribute_resolver: AttributeResolver | None,
                ssm_resolver: SsmResolver | None) -> StackModel:
    if not _STACK_NAME.fullmatch(stack_name):
        raise ConfigError(f"stack name {stack_name!r} must start with a letter and contain only "
                          "letters, digits and hyphens (at most 128)")
    document = load_document(path)
    unknown = sorted(set(document) - _SECTIONS)
    if unknown:
        why = {"Transform": "macros and transforms are not run by the local cloud",
               "Rules": "parameter rules are not evaluated by the local cloud"}
        raise ConfigError(f"section {unknown[0]} is not supported"
                          + (f": {why[unknown[0]]}" if unknown[0] in why else ""),
                          location=where(path, document, unknown[0]))
    for section in ("Parameters", "Mappings", "Conditions", "Resources", "Outputs"):
        if document.get(section) is not None and not isinstance(document[section], dict):
            raise ConfigError(f"section {section} must be a mapping of names to "
                              f"definitions, not {type(document[section]).__name__}",
                              location=where(path, document, section))
    for section in ("Parameters", "Resources", "Outputs"):
        for name in document.get(section) or {}:
            if not _LOGICAL_ID.fullmatch(name):
                raise ConfigError(f"{section}: {name!r} is not alphanumeric",
                                  location=where(path, document[section], name))
    values, noecho = resolve_parameters(document.get("Parameters"), parameters or {}, str(path),
                                        ssm_resolver)
    resolver = Resolver(document, path, values, pseudo_parameters(stack_name, region, account_id),
                         stack_name, attribute_resolver, ssm_resolver)
    resources = resolver.resources()
    outputs, unresolved = resolver.outputs()
    typed = extract_specs(resources, str(path))
    return StackModel(
        path=str(path), stack_name=stack_name, region=region, account_id=account_id,
        description=document.get("Description"), parameters=values, noecho_parameters=noecho,
        conditions=dict(resolver.condition_values), resources=resources,
        skipped=resolver.skipped, outputs=outputs, unresolved_outputs=unresolved,
        recorded=[r for r in resources.values() if r.type in specs.RECORDED_TYPES],
        **{field: getattr(typed, field) for field in specs.StackSpecs.model_fields})


def rolling_update_triggers(old: StackModel, new: StackModel) -> dict[str, list[str]]:
    """Auto Scaling groups whose instances an update from ``old`` to ``new`` replaces, each
    with the reasons. CloudFormation replaces instances (AutoScalingRollingUpdate) when a
    group's launch template (or launch configuration) or VPCZoneIdentifier changes; a
    group that names its version through Fn::GetAtt ...LatestVersionNumber sees a new
    version whenever the template's LaunchTemplateData changes."""
    triggers: dict[str, list[str]] = {}
    for logical_id, group in new.auto_scaling_groups.items():
        before = old.auto_scaling_groups.get(logical_id)
        if before is None:
            continue  # a new group is created, not updated
        reasons = []
        ref, old_ref = group.launch_template, before.launch_template
        if ref.logical_id != old_ref.logical_id:
            reasons.append(f"launch template is now {ref.logical_id} (was {old_ref.logical_id})")
        elif ref.tracking != old_ref.tracking or (
                ref.tracking is specs.VersionTracking.FIXED and ref.version != old_ref.version):
            reasons.append(f"launch template version is now {ref.version} "
                           f"(was {old_ref.version})")
        elif ref.tracking is not specs.VersionTracking.FIXED:
            template = new.launch_templates[ref.logical_id]
            old_template = old.launch_templates[ref.logical_id]
            changed = sorted(key for key in set(template.data) | set(old_template.data)
                             if template.data.get(key) != old_template.data.get(key))
            if changed:
                reasons.append(f"launch template {ref.logical_id} changed: "
                               + ", ".join(f"LaunchTemplateData.{key}" for key in changed))
            if template.name != old_template.name:
                reasons.append(f"launch template {ref.logical_id} is replaced (new name)")
        if group.vpc_zone_identifier != before.vpc_zone_identifier:
            reasons.append("VPCZoneIdentifier changed")
        if reasons:
            triggers[logical_id] = reasons
    return triggers

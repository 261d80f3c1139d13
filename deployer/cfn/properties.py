"""Reading one resource's resolved properties: where each was written, and what it may be.

:class:`PropertyReader` is the toolkit every type reader in :mod:`deployer.cfn.extract`
uses: a dotted property path back to ``file:line`` (through UpdatePolicy, CreationPolicy and
lists), the errors that name resource, property and line, the allow-list that turns an
unknown property into :class:`~deployer.base.errors.UnsupportedProperty`, and the value
readers (text, whole numbers in range, booleans, choices, durations, links to other
resources of the stack). It knows CloudFormation's value rules, not any resource type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deployer.base.errors import ConfigError, UnsupportedProperty
from deployer.cfn import specs as s
from deployer.cfn.document import Mapping, line_of
from deployer.cfn.values import Reference, ResolvedResource, missing_attributes


class PropertyReader:
    """One resource's resolved properties, read with errors that say where."""

    def __init__(self, resource: ResolvedResource, path: str, stack: StackIndex) -> None:
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

    def no_policies(self) -> None:
        """CreationPolicy/UpdatePolicy mean something only on an Auto Scaling group here."""
        for attribute, policy in (("CreationPolicy", self.resource.creation_policy),
                                  ("UpdatePolicy", self.resource.update_policy)):
            if policy is not None:
                raise self.unsupported(attribute, why="only Auto Scaling groups honour it")

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


class StackIndex:
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

"""Resolving a template: conditions, intrinsic functions, references, dynamic references.

Every condition and every resource property is evaluated at most once; a property can be
needed early (``Ref`` to a bucket returns its ``BucketName``), so properties resolve on
demand with a guard against cycles. ``Ref`` and ``Fn::GetAtt`` results are
:class:`~deployer.cfn.values.Reference` strings that remember their target.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deployer.base.errors import ConfigError, UnsupportedProperty
from deployer.cfn import specs
from deployer.cfn.document import Mapping, line_of
from deployer.cfn.parameters import ParameterValue, SsmResolver
from deployer.cfn.values import (
    Base64Text,
    Reference,
    ResolvedResource,
    Unresolved,
    missing_attributes,
    plain,
)

AttributeResolver = Callable[[str, str], "str | None"]

_RESOURCE_KEYS = {"Type", "Properties", "Condition", "DependsOn", "Metadata", "CreationPolicy",
                  "UpdatePolicy", "DeletionPolicy", "UpdateReplacePolicy"}
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_SSM_REF = re.compile(r"\{\{resolve:(ssm|ssm-secure|secretsmanager):([^}]*)\}\}")
# Only these properties may hold a secretsmanager dynamic reference: the local cloud's
# database reads the credentials from its secret; elsewhere nothing would resolve it.
_SECRET_PROPERTIES = {(specs.DB_INSTANCE, "MasterUsername"),
                      (specs.DB_INSTANCE, "MasterUserPassword")}
_NO_VALUE = object()  # Ref AWS::NoValue: the key (or list item) disappears


def where(path: Path, node: Any, key: str | None = None) -> str:
    line = line_of(node, key)
    return f"{path}:{line}" if line else str(path)


class _At:
    """Where the resolver is: what to name in an error, and the nearest known line."""

    def __init__(self, path: Path, label: str, line: int | None, *,
                 resource: str | None = None, kind: str | None = None,
                 prop: str | None = None) -> None:
        self.path, self.label, self.line = path, label, line
        self.resource, self.kind, self.prop = resource, kind, prop

    def inside(self, node: Any, key: str | None = None) -> _At:
        line = line_of(node, key) or self.line
        if line == self.line:
            return self
        return _At(self.path, self.label, line, resource=self.resource, kind=self.kind,
                   prop=self.prop)

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)

    def error(self, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{self.label}: {message}", location=self.location, hint=hint)


class Resolver:
    """Evaluates one template's conditions and intrinsic functions, each at most once."""

    def __init__(self, document: dict, path: Path, parameters: dict[str, ParameterValue],
                 pseudo: dict[str, Any], stack_name: str,
                 attribute_resolver: AttributeResolver | None,
                 ssm_resolver: SsmResolver | None) -> None:
        self.path = path
        self.document = document
        self.parameters = parameters
        self.pseudo = pseudo
        self.stack_name = stack_name
        self.attribute_resolver = attribute_resolver
        self.ssm_resolver = ssm_resolver
        for section in ("Mappings", "Conditions"):
            if not isinstance(document.get(section) or {}, dict):
                raise ConfigError(f"{section} must be a mapping",
                                  location=where(path, document, section))
        self.mappings = document.get("Mappings") or {}
        self.condition_defs = document.get("Conditions") or {}
        self.condition_values: dict[str, bool] = {}
        raw = document.get("Resources")
        if not isinstance(raw, dict) or not raw:
            raise ConfigError("a template needs a non-empty Resources section",
                              location=where(path, document, "Resources"))
        self.raw: dict[str, Any] = raw
        self.skipped: dict[str, str] = {}
        self._properties: dict[tuple[str, str], Any] = {}
        self._physical_ids: dict[str, str] = {}
        self._in_progress: set[tuple[str, str]] = set()  # (logical id, property)
        self._conditions_in_progress: set[str] = set()
        for name in self.condition_defs:
            self.condition(name, _At(path, f"condition {name}", line_of(self.condition_defs, name)))
        for logical_id, raw in self.raw.items():
            self._check_resource(logical_id, raw)

    # -- resources ------------------------------------------------------------------------
    def _check_resource(self, logical_id: str, raw: Any) -> None:
        at = _At(self.path, f"resource {logical_id}", line_of(self.raw, logical_id))
        if not isinstance(raw, dict) or not isinstance(raw.get("Type"), str):
            raise at.error("needs a Type")
        unknown = sorted(set(raw) - _RESOURCE_KEYS)
        if unknown:
            raise at.inside(raw, unknown[0]).error(f"unknown resource attribute {unknown[0]}")
        if "Condition" in raw and not self.condition(str(raw["Condition"]),
                                                      at.inside(raw, "Condition")):
            # Switched off, it does not exist: its type does not matter here.
            self.skipped[logical_id] = str(raw["Condition"])
            return
        specs.check_type(logical_id, raw["Type"], at.location)
        if not isinstance(raw.get("Properties", {}), dict):
            raise at.inside(raw, "Properties").error("Properties must be a mapping")

    def resources(self) -> dict[str, ResolvedResource]:
        resolved = {}
        for logical_id, raw in self.raw.items():
            if logical_id in self.skipped:
                continue
            at = _At(self.path, f"resource {logical_id}", line_of(self.raw, logical_id))
            properties = {name: self.property(logical_id, name)
                          for name in raw.get("Properties") or {}}
            resolved[logical_id] = ResolvedResource(
                logical_id=logical_id, type=raw["Type"],
                physical_id=self.physical_id(logical_id, at),
                properties={k: v for k, v in properties.items() if v is not _NO_VALUE},
                depends_on=self._depends_on(raw, at),
                creation_policy=self._attribute(raw, "CreationPolicy", at),
                update_policy=self._attribute(raw, "UpdatePolicy", at),
                metadata=self._attribute(raw, "Metadata", at),
                deletion_policy=raw.get("DeletionPolicy"),
                update_replace_policy=raw.get("UpdateReplacePolicy"),
                line=at.line,
                property_lines=dict(getattr(raw.get("Properties"), "key_lines", {})))
        return resolved

    def _attribute(self, raw: dict, name: str, at: _At) -> Any:
        if name not in raw:
            return None
        value = self.resolve(raw[name], at.inside(raw, name))
        return None if value is _NO_VALUE else value

    def _depends_on(self, raw: dict, at: _At) -> list[str]:
        names = raw.get("DependsOn", [])
        names = [names] if isinstance(names, str) else names
        at = at.inside(raw, "DependsOn")
        if not isinstance(names, list):
            raise at.error("DependsOn must be a resource name or a list of them")
        for name in names:
            if name not in self.raw:
                raise at.error(f"DependsOn names {name}, which is not a resource of this template")
        # A dependency on a resource switched off by its condition is simply not there.
        return [name for name in names if name not in self.skipped]

    def property(self, logical_id: str, name: str) -> Any:
        """One resolved property, computed once (a physical name may be needed early)."""
        key = (logical_id, name)
        if key in self._properties:
            return self._properties[key]
        raw_properties = self.raw[logical_id].get("Properties") or {}
        at = _At(self.path, f"resource {logical_id}: property {name}",
                 line_of(raw_properties, name), resource=logical_id,
                 kind=self.raw[logical_id]["Type"], prop=name)
        if key in self._in_progress:
            raise at.error("circular reference (a name that refers back to itself)")
        self._in_progress.add(key)
        try:
            value = self._dynamic_references(self.resolve(raw_properties[name], at), at)
        finally:
            self._in_progress.discard(key)
        self._properties[key] = value
        return value

    def physical_id(self, logical_id: str, at: _At) -> str:
        """What ``Ref`` returns: the template's own name for it, else a deterministic id."""
        if logical_id not in self._physical_ids:
            kind = self.raw[logical_id]["Type"]
            name_property = specs.NAME_PROPERTIES.get(kind)
            raw_properties = self.raw[logical_id].get("Properties") or {}
            name = (self.property(logical_id, name_property)
                    if name_property is not None and name_property in raw_properties
                    else _NO_VALUE)
            if name is not _NO_VALUE:
                physical = self._text(name, at, f"{logical_id}.{name_property}")
            else:
                physical = f"{self.stack_name}-{logical_id}"
                if kind == specs.BUCKET:  # bucket names are lowercase
                    physical = physical.lower()
            self._physical_ids[logical_id] = physical
        return self._physical_ids[logical_id]

    # -- conditions -----------------------------------------------------------------------
    def condition(self, name: str, at: _At) -> bool:
        if name in self.condition_values:
            return self.condition_values[name]
        if name not in self.condition_defs:
            raise at.error(f"condition {name} is not defined in Conditions")
        if name in self._conditions_in_progress:
            raise at.error(f"condition {name} depends on itself")
        self._conditions_in_progress.add(name)
        try:
            value = self._evaluate(self.condition_defs[name],
                                   _At(self.path, f"condition {name}",
                                       line_of(self.condition_defs, name)))
        finally:
            self._conditions_in_progress.discard(name)
        self.condition_values[name] = value
        return value

    def _evaluate(self, node: Any, at: _At) -> bool:
        at = at.inside(node)
        if not isinstance(node, dict) or len(node) != 1:
            raise at.error("a condition must be Fn::Equals, Fn::And, Fn::Or, Fn::Not or Condition")
        function, arg = next(iter(node.items()))
        if function == "Condition":
            return self.condition(str(arg), at)
        if function == "Fn::Equals":
            left, right = self._args(function, arg, 2, at)
            return (plain(self._comparable(self.resolve(left, at)))
                    == plain(self._comparable(self.resolve(right, at))))
        if function == "Fn::Not":
            (inner,) = self._args(function, arg, 1, at)
            return not self._evaluate(inner, at)
        if function in ("Fn::And", "Fn::Or"):
            if not isinstance(arg, list) or not 2 <= len(arg) <= 10:
                raise at.error(f"{function} takes a list of 2 to 10 conditions")
            results = (self._evaluate(item, at) for item in arg)
            return all(results) if function == "Fn::And" else any(results)
        raise at.error(f"{function} cannot be used as a condition (use Fn::Equals, Fn::And, "
                       "Fn::Or, Fn::Not or Condition)")

    def _comparable(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._comparable(item) for item in value]
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, (int, float)) else value

    # -- intrinsic functions --------------------------------------------------------------
    def resolve(self, node: Any, at: _At) -> Any:
        if isinstance(node, dict):
            at = at.inside(node)
            if len(node) == 1:
                (key, arg), = node.items()
                if key == "Ref" or key.startswith("Fn::"):
                    return self._function(key, arg, at)
            resolved = Mapping(line=line_of(node))
            for key, value in node.items():
                value = self.resolve(value, at.inside(node, key))
                if value is not _NO_VALUE:
                    resolved[key] = value
                    if isinstance(node, Mapping) and key in node.key_lines:
                        resolved.key_lines[key] = node.key_lines[key]
            return resolved
        if isinstance(node, list):
            items = (self.resolve(item, at) for item in node)
            return [item for item in items if item is not _NO_VALUE]
        return node

    def _function(self, function: str, arg: Any, at: _At) -> Any:
        handler = {
            "Ref": self._ref, "Fn::GetAtt": self._get_att, "Fn::Sub": self._sub,
            "Fn::Join": self._join, "Fn::Split": self._split, "Fn::Select": self._select,
            "Fn::FindInMap": self._find_in_map, "Fn::If": self._if, "Fn::Base64": self._base64,
            "Fn::GetAZs": self._get_azs, "Fn::Cidr": self._cidr,
        }.get(function)
        if handler is not None:
            return handler(arg, at)
        if function in ("Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not"):
            raise at.error(f"{function} belongs in Conditions; use Fn::If with a condition here")
        if function == "Fn::ImportValue":
            raise at.error("Fn::ImportValue is not supported by the local cloud (it has no "
                           "cross-stack exports)", hint="pass the value as a parameter")
        raise at.error(f"{function} is not supported by the local cloud")

    def _args(self, function: str, arg: Any, count: int, at: _At) -> list[Any]:
        if not isinstance(arg, list) or len(arg) != count:
            raise at.error(f"{function} takes a list of {count}")
        return arg

    def _ref(self, name: Any, at: _At) -> Any:
        if not isinstance(name, str):
            raise at.error("Ref takes a name")
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return Reference(self.physical_id(self._resource(name, "Ref", at), at), name)

    def _resource(self, name: str, function: str, at: _At) -> str:
        if name in self.skipped:
            raise at.error(f"{function} to {name}, which condition {self.skipped[name]} "
                           "switched off")
        if name not in self.raw:
            raise at.error(f"{function} to {name}: no such parameter or resource")
        if self._conditions_in_progress:
            raise at.error(f"conditions cannot refer to resources ({name})")
        return name

    def _get_att(self, arg: Any, at: _At) -> Reference:
        if isinstance(arg, str):
            arg = list(arg.partition(".")[::2])
        logical_id, attribute = self._args("Fn::GetAtt", arg, 2, at)
        attribute = self._text(self.resolve(attribute, at), at, "Fn::GetAtt attribute")
        self._resource(str(logical_id), "Fn::GetAtt", at)
        kind = self.raw[logical_id]["Type"]
        known = specs.ATTRIBUTES.get(kind)
        if known is not None and attribute not in known:
            raise at.error(f"{kind} has no attribute {attribute!r} "
                           f"(it has: {', '.join(sorted(known)) or 'none'})")
        value = self.attribute_resolver(logical_id, attribute) if self.attribute_resolver else None
        if value is None:
            value = self._template_attribute(logical_id, kind, attribute, at)
        if value is None:
            return Reference(f"{logical_id}.{attribute}", logical_id, attribute, resolved=False)
        return Reference(str(value), logical_id, attribute)

    def _template_attribute(self, logical_id: str, kind: str, attribute: str, at: _At) -> Any:
        """Attributes the template itself determines, when the caller has no better answer."""
        if attribute in ("TargetGroupArn", "LoadBalancerArn", "ListenerArn", "LaunchTemplateId"):
            return self.physical_id(logical_id, at)
        if (kind, attribute) in ((specs.TARGET_GROUP, "TargetGroupName"),
                                 (specs.LOAD_BALANCER, "LoadBalancerName")):
            if "Name" in (self.raw[logical_id].get("Properties") or {}):
                return self.property(logical_id, "Name")
            return self.physical_id(logical_id, at)
        if ((kind == specs.SSM_PARAMETER and attribute in ("Type", "Value"))
                or (kind == "AWS::EC2::VPC" and attribute == "CidrBlock")):
            properties = self.raw[logical_id].get("Properties") or {}
            return self.property(logical_id, attribute) if attribute in properties else None
        if kind == specs.BUCKET and attribute == "Arn":
            return f"arn:{self.pseudo['AWS::Partition']}:s3:::{self.physical_id(logical_id, at)}"
        return None

    def _sub(self, arg: Any, at: _At) -> str:
        variables: dict[str, Any] = {}
        template = arg
        if isinstance(arg, list):
            template, raw_variables = self._args("Fn::Sub", arg, 2, at)
            if not isinstance(raw_variables, dict):
                raise at.error("Fn::Sub variables must be a mapping")
            variables = {k: self.resolve(v, at.inside(raw_variables, k))
                         for k, v in raw_variables.items()}
        if not isinstance(template, str):
            raise at.error("Fn::Sub takes a string (or [string, variables])")
        missing: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} writes ${Literal}
                return "${" + name[1:] + "}"
            value = self._sub_variable(name.strip(), variables, at)
            missing.extend(missing_attributes(value))
            return self._text(value, at, f"${{{name}}}")

        whole = _SUB_VARIABLE.fullmatch(template)
        if whole and not whole.group(1).startswith("!"):
            value = self._sub_variable(whole.group(1).strip(), variables, at)
            if isinstance(value, Reference):  # "${Group}" is still a reference to Group
                return value
        text = _SUB_VARIABLE.sub(substitute, template)
        return Unresolved(text, tuple(missing)) if missing else text

    def _sub_variable(self, name: str, variables: dict[str, Any], at: _At) -> Any:
        if name in variables:
            return variables[name]
        if name in self.pseudo or name in self.parameters or name in self.raw:
            return self._ref(name, at)
        if "." in name:
            return self._get_att(name, at)
        raise at.error(f"Fn::Sub names ${{{name}}}, which is not a parameter, resource or "
                       "variable")

    def _join(self, arg: Any, at: _At) -> str:
        delimiter, items = self._args("Fn::Join", arg, 2, at)
        items = self.resolve(items, at)
        if not isinstance(delimiter, str) or not isinstance(items, list):
            raise at.error("Fn::Join takes [delimiter, [values...]]")
        text = str(delimiter).join(self._text(item, at, "Fn::Join value") for item in items)
        missing = missing_attributes(items)
        return Unresolved(text, missing) if missing else text

    def _split(self, arg: Any, at: _At) -> list[str]:
        delimiter, source = self._args("Fn::Split", arg, 2, at)
        value = self.resolve(source, at)
        text = self._text(value, at, "Fn::Split source")
        missing = missing_attributes(value)
        return [Unresolved(piece, missing) if missing else piece
                for piece in text.split(str(delimiter))]

    def _select(self, arg: Any, at: _At) -> Any:
        index, items = self._args("Fn::Select", arg, 2, at)
        index_text = self._text(self.resolve(index, at), at, "Fn::Select index")
        items = self.resolve(items, at)
        if not index_text.isdigit() or not isinstance(items, list):
            raise at.error("Fn::Select takes [index, [values...]]")
        if int(index_text) >= len(items):
            raise at.error(f"Fn::Select index {index_text} is out of range ({len(items)} values)")
        return items[int(index_text)]

    def _find_in_map(self, arg: Any, at: _At) -> Any:
        names = [self._text(self.resolve(part, at), at, "Fn::FindInMap key")
                 for part in self._args("Fn::FindInMap", arg, 3, at)]
        node: Any = self.mappings
        for depth, name in enumerate(names):
            if not isinstance(node, dict) or name not in node:
                what = ("mapping", "top-level key", "second-level key")[depth]
                raise at.error(f"Fn::FindInMap: no {what} {name!r} in "
                               + ("Mappings" if depth == 0 else "/".join(names[:depth])))
            node = node[name]
        return self.resolve(node, at)

    def _if(self, arg: Any, at: _At) -> Any:
        name, if_true, if_false = self._args("Fn::If", arg, 3, at)
        return self.resolve(if_true if self.condition(str(name), at) else if_false, at)

    def _base64(self, arg: Any, at: _At) -> Base64Text:
        value = self.resolve(arg, at)
        return Base64Text(self._text(value, at, "Fn::Base64 value"), missing_attributes(value))

    def _get_azs(self, arg: Any, at: _At) -> list[str]:
        region = self._text(self.resolve(arg, at), at, "Fn::GetAZs region") or \
            self.pseudo["AWS::Region"]
        return [f"{region}{zone}" for zone in "abc"]

    def _cidr(self, arg: Any, at: _At) -> list[str]:
        values = [self.resolve(part, at) for part in self._args("Fn::Cidr", arg, 3, at)]
        block, count, bits = (self._text(value, at, "Fn::Cidr argument") for value in values)
        missing = missing_attributes(values)
        if missing:  # placeholders in, placeholders out: only an error where consumed
            return [Unresolved(f"Fn::Cidr[{block},{i}]", missing) for i in range(int(count))]
        try:
            network = ipaddress.ip_network(block)
            subnets = network.subnets(new_prefix=network.max_prefixlen - int(bits))
            return [str(next(subnets)) for _ in range(int(count))]
        except (ValueError, StopIteration):
            raise at.error(f"Fn::Cidr cannot cut {count} blocks of {bits} host bits out of "
                           f"{block}") from None

    def _text(self, value: Any, at: _At, what: str) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return value if isinstance(value, str) else str(value)
        raise at.error(f"{what} must be a string, not a {type(value).__name__}")

    def _dynamic_references(self, value: Any, at: _At) -> Any:
        """``{{resolve:ssm:name}}`` is looked up now, as CloudFormation does at deploy time."""
        if isinstance(value, dict):
            for key in list(value):
                value[key] = self._dynamic_references(value[key], at)
            return value
        if isinstance(value, list):
            return [self._dynamic_references(item, at) for item in value]
        if not isinstance(value, str) or "{{resolve:" not in value:
            return value

        def lookup(match: re.Match[str]) -> str:
            service, reference = match.groups()
            if service == "secretsmanager" and (at.kind, at.prop) in _SECRET_PROPERTIES:
                return match.group(0)  # the database reads it from its secret
            if service != "ssm":
                raise UnsupportedProperty(at.resource or "?", at.prop or "?",
                                          location=at.location,
                                          why=f"{service} dynamic references are not resolved")
            name, _, version = reference.rpartition(":")
            if not version.isdigit():  # {{resolve:ssm:name}} or {{resolve:ssm:name:3}}
                name = reference
            looked_up = self.ssm_resolver(name) if self.ssm_resolver else None
            if looked_up is None:
                raise at.error(f"SSM parameter {name} (in a dynamic reference) does not exist")
            return str(looked_up)

        text = _SSM_REF.sub(lookup, value)
        if isinstance(value, (Base64Text, Unresolved)):
            return type(value)(text, value.missing)
        return text

    # -- outputs --------------------------------------------------------------------------
    def outputs(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        values, unresolved = {}, {}
        declared = self.document.get("Outputs") or {}
        for name, output in declared.items():
            at = _At(self.path, f"output {name}", line_of(declared, name))
            if not isinstance(output, dict) or "Value" not in output:
                raise at.error("needs a Value")
            unknown = sorted(set(output) - {"Value", "Description", "Export", "Condition"})
            if unknown:
                raise at.inside(output, unknown[0]).error(f"unknown key {unknown[0]}")
            if "Condition" in output and not self.condition(str(output["Condition"]), at):
                continue
            value = self.resolve(output["Value"], at.inside(output, "Value"))
            values[name] = str(self._text(value, at, "an output value"))
            if missing_attributes(value):
                unresolved[name] = list(missing_attributes(value))
        return values, unresolved

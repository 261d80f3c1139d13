"""Reading CloudFormation template files: YAML with the short-form tags, or JSON.

Short forms (``!Ref X``, ``!GetAtt A.B``, ``!Sub ...``) become the long forms CloudFormation
itself works with (``{"Ref": "X"}``, ``{"Fn::GetAtt": ["A", "B"]}``), so the resolver only
knows one spelling. Every mapping remembers the line it starts on and the line of each key,
so an error found much later, while resolving, can still name ``file:line``.

Why a loader of our own and not ``cfnlint.decode`` (weighed for issue 10, cfn-lint 1.58):
cfn-lint's loader is built for a linter, which reads everything and reports later. It
resolves YAML aliases (CloudFormation refuses them), turns any unknown ``!Tag`` into
``Fn::Tag`` without a word, keeps ``2010-09-09`` as a date, and speaks libyaml's wording
(``!Base64 !Sub`` becomes "did not find expected key"), so keeping this reader's contract (a
:class:`~deployer.base.errors.ConfigError` at ``file:line`` that says what is wrong) would
take about as much code as this module, written against cfn-lint's internals. And it is
costly to reach: importing it took 0.83–1.13 s and 1,010 more modules (it loads cfn-lint's
whole rule engine), against 0.06 s for this module, and it would make cfn-lint with sympy
and networkx (about 140 MB) a runtime dependency of every command that reads a stack. It
parses faster (the three stacks in 17–24 ms, warm, against 105–125 ms here) only because it
uses libyaml; that speed is not worth its messages while a stack is read a few times a run.
cfn-lint stays what it is here: the linter ``deployer validate`` runs when it is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from deployer.base.errors import ConfigError

# Short-form tag → long-form key. !GetAtt and !Ref have their own constructors.
_FUNCTION_TAGS = {
    "!Sub": "Fn::Sub",
    "!FindInMap": "Fn::FindInMap",
    "!Select": "Fn::Select",
    "!Join": "Fn::Join",
    "!Split": "Fn::Split",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!Base64": "Fn::Base64",
    "!GetAZs": "Fn::GetAZs",
    "!Cidr": "Fn::Cidr",
    "!ImportValue": "Fn::ImportValue",
    "!Condition": "Condition",
}
KNOWN_TAGS = ("!Ref", "!GetAtt", *_FUNCTION_TAGS)


class Mapping(dict):
    """A template mapping that knows where it was written (1-based lines; None from JSON)."""

    line: int | None = None
    key_lines: dict[str, int]

    def __init__(self, *args: Any, line: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = line
        self.key_lines = {}

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key, self.line)


def line_of(value: Any, key: str | None = None) -> int | None:
    """Where ``value`` (or its ``key``) was written, if it is a mapping read from YAML."""
    if isinstance(value, Mapping):
        return value.line_of(key) if key is not None else value.line
    return None


class _Loader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's rules: short-form tags, no aliases, no duplicate keys."""

    path = "<template>"

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError("YAML aliases (*name) are not allowed in CloudFormation templates",
                              location=f"{self.path}:{mark.line + 1}")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {node.id}", node.start_mark)
        self.flatten_mapping(node)
        mapping = Mapping(line=node.start_mark.line + 1)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                key = str(key)
            if key in mapping:
                raise ConfigError(f"duplicate key {key!r}",
                                  location=f"{self.path}:{key_node.start_mark.line + 1}")
            mapping[key] = self.construct_object(value_node, deep=deep)
            mapping.key_lines[key] = key_node.start_mark.line + 1
        return mapping

    def construct_tag_value(self, node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return self.construct_sequence(node, deep=True)
        return self.construct_mapping(node, deep=True)


def _intrinsic(node, key: str, value: Any) -> Mapping:
    return Mapping({key: value}, line=node.start_mark.line + 1)


def _construct_map(loader: _Loader, node) -> Mapping:
    return loader.construct_mapping(node, deep=True)


def _construct_ref(loader: _Loader, node) -> Mapping:
    return _intrinsic(node, "Ref", loader.construct_tag_value(node))


def _construct_getatt(loader: _Loader, node) -> Mapping:
    value = loader.construct_tag_value(node)
    if isinstance(value, str):
        # "Db.Endpoint.Address": the logical id never has a dot, the attribute may.
        logical, _, attribute = value.partition(".")
        value = [logical, attribute]
    return _intrinsic(node, "Fn::GetAtt", value)


def _function_constructor(key: str):
    def construct(loader: _Loader, node) -> Mapping:
        return _intrinsic(node, key, loader.construct_tag_value(node))
    return construct


def _unknown_tag(loader: _Loader, suffix: str, node) -> Any:
    raise ConfigError(f"unknown tag !{suffix} (known: {', '.join(KNOWN_TAGS)})",
                      location=f"{loader.path}:{node.start_mark.line + 1}")


# CloudFormation keeps dates as text (AWSTemplateFormatVersion: 2010-09-09 is a string).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("!Ref", _construct_ref)
_Loader.add_constructor("!GetAtt", _construct_getatt)
for _tag, _key in _FUNCTION_TAGS.items():
    _Loader.add_constructor(_tag, _function_constructor(_key))
_Loader.add_multi_constructor("!", _unknown_tag)


def load_document(path: Path) -> dict[str, Any]:
    """Parse a template file into long-form CloudFormation. Errors name ``file:line``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"template {path} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read template: {exc}", location=str(path)) from exc
    if path.suffix.lower() == ".json":
        document = _load_json(text, path)
    else:
        document = _load_yaml(text, path)
    if not isinstance(document, dict):
        raise ConfigError("a template must be a mapping of sections (Resources, ...)",
                          location=str(path))
    return document


def _load_yaml(text: str, path: Path) -> Any:
    try:
        loader = _Loader(text)  # the reader refuses control characters right here
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {_one_line(exc)}", location=str(path)) from exc
    loader.path = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        hint = None
        if "found '<tag>'" in (exc.problem or ""):
            # "!Base64 !Sub ..." is the classic: YAML allows one tag per node.
            hint = "short forms cannot be nested directly; write e.g. Fn::Base64: !Sub ..."
        raise ConfigError(f"invalid YAML: {problem}", location=location, hint=hint) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {_one_line(exc)}", location=str(path)) from exc
    finally:
        loader.dispose()


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _load_json(text: str, path: Path) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        for key in keys:
            if keys.count(key) > 1:
                raise ConfigError(f"duplicate key {key!r}", location=str(path))
        return dict(pairs)

    try:
        document = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", location=f"{path}:{exc.lineno}") from exc
    # JSON is (nearly) YAML: reading it again through the loader gains line numbers. A few
    # JSON files (tabs for indentation) are not YAML; they simply go without lines.
    try:
        return _load_yaml(text, path)
    except ConfigError:
        return document

"""Reading a Packer HCL2 template as ``packer build`` would, into a :class:`PackerTemplate`.

:func:`load_packer_template` reads a ``.pkr.hcl`` file with python-hcl2, resolves variables
the way ``packer build`` does (declared defaults, then ``-var-file`` files in order, then
``-var`` flags), evaluates locals and every attribute of the ``source`` and ``build``
blocks, and returns a :class:`~deployer.packer.model.PackerTemplate`. Mistakes come back as
:class:`~deployer.base.errors.ConfigError` naming the file and block, with Packer's own wording
where Packer has one, so that a template rejected here would be rejected by Packer too.

Both clouds consume the result: the AWS adapter hands the file to the ``packer`` binary and
reads the image id back (:mod:`deployer.packer.manifest`); the local cloud runs the
provisioners itself (``deployer.localcloud.images.builder``) and writes the same manifest.
Expressions are evaluated by :mod:`deployer.packer.expressions` (which says why not by the
``packer`` binary); variables' types are :mod:`deployer.packer.variables`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hcl2
from pydantic import BaseModel, ValidationError

from deployer.base import logs
from deployer.base.errors import ConfigError
from deployer.packer.expressions import evaluate_template, references
from deployer.packer.model import (
    AMI_NAME,
    Build,
    FileProvisioner,
    ManifestPostProcessor,
    OtherPostProcessor,
    OtherProvisioner,
    PackerTemplate,
    PostProcessor,
    Provisioner,
    RequiredPlugin,
    ShellProvisioner,
    Source,
    Validation,
    Variable,
)
from deployer.packer.values import (
    DeferredRoot,
    ExpressionError,
    Scope,
    UnsupportedExpression,
    template_string,
)
from deployer.packer.variables import command_line_value, convert, type_expression

log = logs.get_logger(component="packer-template")

# --- reading HCL --------------------------------------------------------------------------

def _parse_hcl(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read Packer template: {err.strerror}",
                          location=str(path)) from err
    try:
        options = getattr(hcl2, "SerializationOptions", None)
        if options is None:  # python-hcl2 < 8 already strips quotes and has no markers
            data = hcl2.loads(text)
        else:
            data = hcl2.loads(text, serialization_options=options(
                strip_string_quotes=True, with_comments=False, explicit_blocks=True,
                preserve_heredocs=True))
    except Exception as err:  # lark's exceptions carry line/column; hcl2 raises several kinds
        line, column = getattr(err, "line", None), getattr(err, "column", None)
        where = f"{path}:{line}:{column}" if line and line > 0 else str(path)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"invalid HCL: {first_line}", location=where) from err
    return _clean(data)


_HEREDOC = re.compile(r"^<<(-?)([A-Za-z_]\w*)\n(.*?)\n?[ \t]*\2$", re.DOTALL)


def _clean(value: Any) -> Any:
    """Drop python-hcl2's markers and turn heredocs into the strings HCL makes of them."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()
                if not (k.startswith("__") and k.endswith("__"))}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        heredoc = _HEREDOC.match(value)
        if heredoc:
            body = heredoc.group(3)
            lines = body.split("\n") if body else []
            if heredoc.group(1) == "-":  # <<- strips the common leading whitespace
                indents = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]
                cut = min(indents, default=0)
                lines = [ln[cut:] for ln in lines]
            return "".join(ln + "\n" for ln in lines)
    return value


def _labelled(blocks: Any, labels: int, kind: str, where: str) -> Iterator[tuple[list[str], dict]]:
    """Yield (labels, body) for each block of a kind, however many labels it has."""
    for block in blocks or []:
        found: list[str] = []
        body = block
        for _ in range(labels):
            if not isinstance(body, dict) or len(body) != 1:
                raise ConfigError(f'a {kind} block needs {labels} label(s)', location=where)
            (label, body), = body.items()
            found.append(label)
        if not isinstance(body, dict):
            raise ConfigError(f"{kind} {' '.join(found)}: expected a block", location=where)
        yield found, body


def _line_of(path: Path, pattern: str) -> str:
    """file:line of a block header, for messages: python-hcl2 does not keep positions."""
    try:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(pattern, line.strip()):
                return f"{path}:{number}"
    except OSError:
        pass
    return str(path)


def _read_var_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read variables file: {err}", location=str(path)) from err
        if not isinstance(data, dict):
            raise ConfigError("a JSON variables file holds one object", location=str(path))
        return data
    scope = Scope({}, datetime.now(UTC))
    values: dict[str, Any] = {}
    for name, raw in _parse_hcl(path).items():
        try:
            values[name] = _evaluate(raw, scope)
        except ExpressionError as err:
            # A variables file holds values only: no references, no functions.
            raise ConfigError(f"{name}: {err}", location=str(path)) from err
    return values


# --- evaluation ---------------------------------------------------------------------------

def _evaluate(value: Any, scope: Scope) -> Any:
    if isinstance(value, str):
        return evaluate_template(value, scope)
    if isinstance(value, list):
        return [_evaluate(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: _evaluate(v, scope) for k, v in value.items()}
    return value


class _Locals(Mapping[str, Any]):
    """Locals evaluated on first use, in whatever order they reference each other."""

    def __init__(self, raw: dict[str, Any], path: Path) -> None:
        self.raw = raw
        self.path = path
        self.evaluated: dict[str, Any] = {}  # not .values: Mapping.values() is a method
        self.resolving: list[str] = []
        self.scope: Scope | None = None

    def __getitem__(self, name: str) -> Any:
        if name in self.evaluated:
            return self.evaluated[name]
        if name not in self.raw:
            raise ExpressionError(f'local.{name} is not declared')
        if name in self.resolving:
            cycle = " -> ".join([*self.resolving, name])
            raise ConfigError(f"locals refer to each other in a cycle: {cycle}",
                              location=str(self.path))
        self.resolving.append(name)
        try:
            assert self.scope is not None
            self.evaluated[name] = _evaluate(self.raw[name], self.scope)
        except ExpressionError as err:
            raise ConfigError(f"local.{name}: {err}", location=str(self.path)) from err
        finally:
            self.resolving.pop()
        return self.evaluated[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


class _Variables(Mapping[str, Any]):
    def __init__(self, values: dict[str, Any]) -> None:
        # Not ``self.values``: that would shadow Mapping.values().
        self.known = values

    def __getitem__(self, name: str) -> Any:
        if name not in self.known:
            raise ExpressionError(
                f'An input variable with the name "{name}" has not been declared.')
        return self.known[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.known)

    def __len__(self) -> int:
        return len(self.known)


def _evaluate_block(body: dict[str, Any], scope: Scope, where: str) -> dict[str, Any]:
    try:
        return _evaluate(body, scope)
    except ConfigError:
        raise
    except UnsupportedExpression as err:
        raise ConfigError(str(err), location=where) from err
    except ExpressionError as err:
        raise ConfigError(str(err), location=where) from err


def _model(cls: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        problems = []
        for problem in err.errors():
            field = ".".join(str(p) for p in problem["loc"])
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] == "extra_forbidden":
                message = f'An argument named "{field}" is not expected here.'
            elif field:
                message = f"{field}: {message}"
            problems.append(message)
        raise ConfigError("; ".join(problems), location=where) from err


# --- the loader ---------------------------------------------------------------------------

def load_packer_template(path: Path, variables: dict[str, str] | None = None,
                         var_files: Iterable[Path] = (), *,
                         now: datetime | None = None) -> PackerTemplate:
    """Read a Packer HCL2 template as ``packer build -var-file ... -var ...`` would.

    ``now`` is what ``timestamp()`` returns (one instant for the whole template, as in a
    Packer run); tests pass a fixed one.
    """
    try:
        return _load_packer_template(Path(path).absolute(), variables, var_files, now=now)
    except RecursionError:
        raise ConfigError("the template nests expressions too deeply to read",
                          location=str(path), hint="flatten the nesting") from None


def _load_packer_template(path: Path, variables: dict[str, str] | None,
                          var_files: Iterable[Path], *, now: datetime | None
                          ) -> PackerTemplate:
    data = _parse_hcl(path)
    where = str(path)
    now = now or datetime.now(UTC)

    unknown_blocks = set(data) - {"packer", "variable", "variables", "locals", "local", "source",
                                  "build"}
    if "variables" in data:
        raise ConfigError("a variables block is not supported: declare each variable in a "
                          "variable block", location=where)
    if unknown_blocks:
        raise ConfigError(f'Unsupported block type "{min(unknown_blocks)}"', location=where)

    required_version, plugins = _packer_block(data.get("packer"), path)

    declared: dict[str, dict[str, Any]] = {}
    for (name,), body in _labelled(data.get("variable"), 1, "variable", where):
        if name in declared:
            raise ConfigError(f'Duplicate variable "{name}"',
                              location=_line_of(path, rf'variable\s+"{re.escape(name)}"'))
        declared[name] = body

    # Defaults first, then variables files in order, then -var flags: the last one wins.
    literal_scope = Scope({}, now)
    given: dict[str, tuple[Any, str]] = {}
    for var_file in var_files:
        for name, value in _read_var_file(Path(var_file)).items():
            if name not in declared:
                log.warning("undeclared variable in variables file", variable=name,
                            file=str(var_file))
                continue
            given[name] = (value, "file")
    for name, value in (variables or {}).items():
        if name not in declared:
            raise ConfigError(
                f'Undefined -var variable: A "{name}" variable was passed in the command line '
                "but was not found in known variables.",
                location=where, hint=f'declare variable "{name}" in the template or drop the -var')
        given[name] = (value, "flag")

    resolved: dict[str, Variable] = {}
    for name, body in declared.items():
        vwhere = _line_of(path, rf'variable\s+"{re.escape(name)}"')
        type_ = type_expression(body.get("type", "any"), vwhere)
        unknown = set(body) - {"type", "default", "description", "sensitive", "validation"}
        if unknown:
            raise ConfigError(f'variable "{name}": An argument named "{min(unknown)}" '
                              "is not expected here.", location=vwhere)
        has_default = "default" in body
        try:
            default = convert(_evaluate(body["default"], literal_scope), type_,
                               f'variable "{name}" default') if has_default else None
        except ExpressionError as err:
            raise ConfigError(f'variable "{name}" default: {err}', location=vwhere) from err
        if name in given:
            raw, origin = given[name]
            if origin == "flag":
                raw = command_line_value(raw, type_, literal_scope)
            value = convert(raw, type_, f'variable "{name}"')
        elif has_default:
            value = default
        else:
            raise ConfigError(f'Unset variable "{name}": A used variable must be set or have a '
                              "default value.", location=vwhere,
                              hint=f"pass -var {name}=... or give it a default")
        resolved[name] = Variable(
            name=name, type=type_, description=str(body.get("description", "")),
            sensitive=convert(body.get("sensitive", False), "bool", f'variable "{name}" sensitive'),
            has_default=has_default, default=default, value=value)

    var_scope = _Variables({n: v.value for n, v in resolved.items()})
    for name, body in declared.items():
        checks = _validations(name, body.get("validation"), var_scope, now, path)
        resolved[name] = resolved[name].model_copy(update={"validations": checks})

    raw_locals: dict[str, Any] = {}
    for block in data.get("locals") or []:
        for name, value in block.items():
            if name in raw_locals:
                raise ConfigError(f'Duplicate local value "{name}"', location=where)
            raw_locals[name] = value
    for (name,), body in _labelled(data.get("local"), 1, "local", where):
        if "expression" not in body:
            raise ConfigError(f'local "{name}": the "expression" argument is required',
                              location=where)
        if name in raw_locals:
            raise ConfigError(f'Duplicate local value "{name}"', location=where)
        raw_locals[name] = body["expression"]

    local_values = _Locals(raw_locals, path)
    roots: dict[str, Any] = {
        "var": var_scope,
        "local": local_values,
        "path": {"root": str(path.parent), "cwd": os.getcwd()},
        "build": DeferredRoot("build"),
    }
    scope = Scope(roots, now)
    local_values.scope = scope
    try:
        evaluated_locals = {name: local_values[name] for name in raw_locals}
    except ExpressionError as err:
        raise ConfigError(f"locals: {err}", location=where) from err

    sources: dict[str, Source] = {}
    for (type_, name), body in _labelled(data.get("source"), 2, "source", where):
        swhere = _line_of(path, rf'source\s+"{re.escape(type_)}"\s+"{re.escape(name)}"')
        if f"{type_}.{name}" in sources:
            raise ConfigError(f'Duplicate source "{type_}.{name}"', location=swhere)
        source_scope = Scope({**roots, "source": {"type": type_, "name": name}}, now)
        attributes = _evaluate_block(body, source_scope, swhere)
        source = Source(type=type_, name=name, attributes=attributes)
        _check_source(source, swhere)
        sources[source.key] = source

    builds = [_build(body, roots, sources, now, path) for body in data.get("build") or []]
    if not builds:
        raise ConfigError("the template has no build block", location=where)

    return PackerTemplate(path=path, required_version=required_version, required_plugins=plugins,
                          variables=resolved, locals=evaluated_locals, sources=sources,
                          builds=builds)


def _packer_block(blocks: Any, path: Path) -> tuple[str | None, dict[str, RequiredPlugin]]:
    where = _line_of(path, r"packer\s*\{")
    required_version = None
    plugins: dict[str, RequiredPlugin] = {}
    for block in blocks or []:
        unknown = set(block) - {"required_version", "required_plugins"}
        if unknown:
            raise ConfigError(f'packer: An argument named "{min(unknown)}" is not expected here.',
                              location=where)
        if "required_version" in block:
            required_version = str(block["required_version"])
        for plugins_block in block.get("required_plugins") or []:
            for name, spec in plugins_block.items():
                if not isinstance(spec, dict):
                    raise ConfigError(f"required_plugins.{name}: expected {{ version, source }}",
                                      location=where)
                plugins[name] = _model(RequiredPlugin, spec, f"{where} required_plugins.{name}")
    return required_version, plugins


def _validations(name: str, blocks: Any, variables: _Variables, now: datetime,
                 path: Path) -> list[Validation]:
    where = _line_of(path, rf'variable\s+"{re.escape(name)}"')
    checks = []
    for block in blocks or []:
        condition, message = block.get("condition"), block.get("error_message")
        if isinstance(condition, bool | int | float):  # a literal came back typed
            condition = template_string(condition)
        if not isinstance(condition, str) or not isinstance(message, str):
            raise ConfigError(f'variable "{name}": a validation block needs condition and '
                              "error_message", location=where)
        if f"var.{name}" not in references(condition):
            raise ConfigError(f'Invalid variable validation condition: The condition for '
                              f'variable "{name}" must refer to var.{name} in order to test '
                              'incoming values.', location=where)
        try:
            passed = evaluate_template(condition, Scope({"var": variables}, now))
        except UnsupportedExpression as err:
            log.info("validation not checked here", variable=name, why=str(err))
            checks.append(Validation(condition=condition, error_message=message, checked=False))
            continue
        except ExpressionError as err:
            passed = False  # Packer treats a condition that errors as a failed check
            log.info("validation condition failed to evaluate", variable=name, why=str(err))
        if passed is not True:
            raise ConfigError(f'Invalid value for variable "{name}": {message}', location=where)
        checks.append(Validation(condition=condition, error_message=message, checked=True))
    return checks


def _check_source(source: Source, where: str) -> None:
    if source.type != "amazon-ebs":
        return
    missing = [f for f in ("ami_name", "instance_type", "region") if not source.get(f)]
    if not source.source_ami and not source.source_ami_filter:
        missing.append("source_ami or source_ami_filter")
    if source.get("communicator", "ssh") == "ssh" and not source.get("ssh_username"):
        missing.append("ssh_username")
    if missing:
        raise ConfigError(f"source {source.key}: missing {', '.join(missing)}", location=where)
    for field in ("ami_name", "instance_type", "region", "source_ami", "ssh_username",
                  "ami_description"):
        value = source.get(field)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"source {source.key}: {field} must be a string", location=where)
    if not AMI_NAME.match(source.ami_name or ""):
        raise ConfigError(
            f"source {source.key}: ami_name {source.ami_name!r} should only contain alphanumeric "
            "characters, parentheses (()), square brackets ([]), spaces ( ), periods (.), "
            "slashes (/), dashes (-), single quotes ('), at-signs (@), or underscores (_), "
            "3 to 128 of them", location=where)
    tags = source.get("tags")
    if tags is not None and not (isinstance(tags, dict)
                                 and all(isinstance(v, str) for v in tags.values())):
        raise ConfigError(f"source {source.key}: tags must be a map of strings", location=where)


def _build(body: dict[str, Any], roots: dict[str, Any], sources: dict[str, Source], now: datetime,
           path: Path) -> Build:
    where = _line_of(path, r"build\s*\{")
    unknown = set(body) - {"name", "description", "sources", "source", "provisioner",
                           "post-processor", "post-processors"}
    if unknown:
        raise ConfigError(f'build: Unsupported argument or block "{min(unknown)}"', location=where)
    if "source" in body:
        raise ConfigError("build: source blocks inside a build are not supported; "
                          "reference top-level sources in sources = [...]", location=where)
    refs = body.get("sources")
    if not isinstance(refs, list) or not refs:
        raise ConfigError('build: sources = ["source.<type>.<name>", ...] is required',
                          location=where)
    keys = []
    for ref in refs:
        key = str(ref).removeprefix("source.")
        if key not in sources:
            raise ConfigError(f'build: Unknown source "{ref}": no source block {key}',
                              location=where)
        keys.append(key)
    # source.name / source.type have one value only when the build has one source.
    scope_roots = dict(roots)
    if len(keys) == 1:
        only = sources[keys[0]]
        scope_roots["source"] = {"type": only.type, "name": only.name}
    scope = Scope(scope_roots, now)

    provisioners: list[Provisioner] = []
    blocks = _labelled(body.get("provisioner"), 1, "provisioner", where)
    for index, ((type_,), raw) in enumerate(blocks):
        pwhere = f"{where} provisioner {index} ({type_})"
        attributes = _evaluate_block(raw, scope, pwhere)
        provisioners.append(_provisioner(index, type_, attributes, pwhere))

    post_processors: list[PostProcessor] = []
    if body.get("post-processors"):
        raise ConfigError("build: post-processors chains are not supported; use post-processor "
                          "blocks", location=where)
    blocks = _labelled(body.get("post-processor"), 1, "post-processor", where)
    for index, ((type_,), raw) in enumerate(blocks):
        pwhere = f"{where} post-processor {index} ({type_})"
        attributes = _evaluate_block(raw, scope, pwhere)
        if type_ == "manifest":
            post_processors.append(_model(ManifestPostProcessor, {**attributes, "index": index},
                                          pwhere))
        else:
            post_processors.append(_model(OtherPostProcessor, {
                "index": index, "type": type_, "only": attributes.pop("only", []),
                "except": attributes.pop("except", []), "attributes": attributes}, pwhere))

    name = body.get("name")
    return Build(name=str(name) if name is not None else None, sources=keys,
                 provisioners=provisioners, post_processors=post_processors)


def _provisioner(index: int, type_: str, attributes: dict[str, Any], where: str) -> Provisioner:
    for field in ("only", "except"):
        if field in attributes:
            attributes[field] = [str(v).removeprefix("source.") for v in attributes[field]]
    if type_ == "shell":
        return _model(ShellProvisioner, {**attributes, "index": index}, where)
    if type_ == "file":
        return _model(FileProvisioner, {**attributes, "index": index}, where)
    return _model(OtherProvisioner, {
        "index": index, "type": type_, "only": attributes.pop("only", []),
        "except": attributes.pop("except", []), "attributes": attributes}, where)

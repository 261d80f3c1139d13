"""Packer HCL2 templates as data, and the manifest Packer writes after a build.

:func:`load_packer_template` reads a ``.pkr.hcl`` file with python-hcl2, resolves variables
the way ``packer build`` does (declared defaults, then ``-var-file`` files in order, then
``-var`` flags), evaluates locals and every attribute of the ``source`` and ``build``
blocks, and returns a :class:`PackerTemplate`. Mistakes come back as
:class:`~deployer.base.errors.ConfigError` naming the file and block, with Packer's own wording
where Packer has one, so that a template rejected here would be rejected by Packer too.

Both clouds consume the result: the AWS adapter hands the file to the ``packer`` binary and
reads the image id back with :func:`read_manifest_artifact` (or, failing that,
:func:`parse_machine_readable_artifact`); the local cloud runs the provisioners itself
(``deployer.localcloud.images.builder``) and writes the same manifest with
:func:`write_manifest`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import hcl2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deployer.base import logs
from deployer.base.errors import CloudError, ConfigError
from deployer.packer.expressions import (
    DeferredRoot,
    ExpressionError,
    Scope,
    UnsupportedExpression,
    evaluate_expression,
    evaluate_template,
    references,
    template_string,
)

log = logs.get_logger(component="packer-template")

MANIFEST_DEFAULT_OUTPUT = "packer-manifest.json"
SHELL_DEFAULT_EXECUTE_COMMAND = "chmod +x {{.Path}}; {{.Vars}} {{.Path}}"
SHELL_DEFAULT_INLINE_SHEBANG = "/bin/sh -e"
# Packer's check on ami_name: anything else is refused by EC2 at registration.
AMI_NAME = re.compile(r"^[\w().\-/ '@\[\]]{3,128}$")


# --- the model ----------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RequiredPlugin(_Model):
    version: str | None = None
    source: str | None = None


class Validation(_Model):
    """A variable's ``validation`` block and whether the value passed it here."""

    condition: str
    error_message: str
    checked: bool  # False when the condition uses something this reader cannot evaluate


class Variable(_Model):
    name: str
    type: str = "any"
    description: str = ""
    sensitive: bool = False
    has_default: bool = False
    default: Any = None
    value: Any = None
    validations: list[Validation] = Field(default_factory=list)

    def __repr_args__(self):  # a sensitive value must not reach logs through a repr
        for name, value in super().__repr_args__():
            yield name, "<sensitive>" if self.sensitive and name in ("default", "value") else value


class Source(_Model):
    """A ``source "<type>" "<name>"`` block, every attribute evaluated.

    Nested blocks (``source_ami_filter``, ``launch_block_device_mappings``) are lists of
    dicts because HCL lets blocks repeat; attributes (``tags = {...}``) are plain values.
    """

    type: str
    name: str
    attributes: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.type}.{self.name}"

    def get(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    @property
    def ami_name(self) -> str | None:
        return self.get("ami_name")

    @property
    def region(self) -> str | None:
        return self.get("region")

    @property
    def instance_type(self) -> str | None:
        return self.get("instance_type")

    @property
    def source_ami(self) -> str | None:
        return self.get("source_ami")

    @property
    def source_ami_filter(self) -> dict[str, Any] | None:
        blocks = self.get("source_ami_filter")
        return blocks[0] if blocks else None

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.get("tags") or {})


class _Filtered(_Model):
    """``only`` / ``except``: which of a build's sources a provisioner runs for."""

    index: int
    only: list[str] = Field(default_factory=list)
    except_: list[str] = Field(default_factory=list, alias="except")

    def applies_to(self, source_key: str) -> bool:
        if self.only and source_key not in self.only:
            return False
        return source_key not in self.except_


class _ProvisionerBase(_Filtered):
    pause_before: str | None = None
    max_retries: int = 0
    timeout: str | None = None


class ShellProvisioner(_ProvisionerBase):
    type: Literal["shell"] = "shell"
    inline: list[str] | None = None
    script: str | None = None
    scripts: list[str] | None = None
    environment_vars: list[str] = Field(default_factory=list)
    env_var_format: str = "%s='%s' "
    execute_command: str = SHELL_DEFAULT_EXECUTE_COMMAND
    inline_shebang: str = SHELL_DEFAULT_INLINE_SHEBANG
    expect_disconnect: bool = False
    remote_folder: str = "/tmp"
    remote_file: str | None = None
    remote_path: str | None = None
    valid_exit_codes: list[int] = Field(default_factory=lambda: [0])
    skip_clean: bool = False

    @model_validator(mode="after")
    def _one_kind_of_script(self) -> ShellProvisioner:
        given = [n for n in ("inline", "script", "scripts") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError("Only one of inline, script, or scripts can be specified.")
        if not given or (given == ["scripts"] and not self.scripts):
            raise ValueError("Either a script file or inline script must be specified.")
        for pair in self.environment_vars:
            if "=" not in pair or pair.startswith("="):
                raise ValueError(f"Environment variable not in format 'key=value': {pair}")
        return self

    @property
    def environment(self) -> dict[str, str]:
        return dict(pair.split("=", 1) for pair in self.environment_vars)

    @property
    def script_paths(self) -> list[str]:
        return [self.script] if self.script is not None else list(self.scripts or [])


class FileProvisioner(_ProvisionerBase):
    type: Literal["file"] = "file"
    source: str | None = None
    sources: list[str] | None = None
    content: str | None = None
    destination: str
    direction: Literal["upload", "download"] = "upload"
    generated: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> FileProvisioner:
        given = [n for n in ("source", "sources", "content") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("exactly one of source, sources or content must be specified")
        if self.content is not None and self.direction == "download":
            raise ValueError("content cannot be used with direction download")
        return self

    @property
    def source_paths(self) -> list[str]:
        return [self.source] if self.source is not None else list(self.sources or [])


class OtherProvisioner(_Filtered):
    """A provisioner type this project does not run locally; recorded as written."""

    type: str
    attributes: dict[str, Any] = Field(default_factory=dict)


class ManifestPostProcessor(_Filtered):
    type: Literal["manifest"] = "manifest"
    output: str = MANIFEST_DEFAULT_OUTPUT
    strip_path: bool = False
    strip_time: bool = False
    custom_data: dict[str, str] | None = None
    keep_input_artifact: bool | None = None


class OtherPostProcessor(_Filtered):
    type: str
    attributes: dict[str, Any] = Field(default_factory=dict)


Provisioner = ShellProvisioner | FileProvisioner | OtherProvisioner
PostProcessor = ManifestPostProcessor | OtherPostProcessor


class Build(_Model):
    name: str | None = None
    sources: list[str]  # "amazon-ebs.etherpad", without the "source." prefix
    provisioners: list[Annotated[Provisioner, Field(union_mode="left_to_right")]] = Field(default_factory=list)
    post_processors: list[Annotated[PostProcessor, Field(union_mode="left_to_right")]] = Field(default_factory=list)

    @property
    def manifest(self) -> ManifestPostProcessor | None:
        return next((p for p in self.post_processors if isinstance(p, ManifestPostProcessor)), None)


class PackerTemplate(_Model):
    path: Path
    required_version: str | None = None
    required_plugins: dict[str, RequiredPlugin] = Field(default_factory=dict)
    variables: dict[str, Variable] = Field(default_factory=dict)
    locals: dict[str, Any] = Field(default_factory=dict)
    sources: dict[str, Source] = Field(default_factory=dict)  # by "type.name"
    builds: list[Build] = Field(default_factory=list)

    @property
    def directory(self) -> Path:
        """Where relative paths in the template are resolved (Packer runs from here)."""
        return self.path.parent

    @property
    def needs_init(self) -> bool:
        """Packer 1.7+ installs ``required_plugins`` with ``packer init`` before building."""
        return bool(self.required_plugins)

    def variable_values(self) -> dict[str, Any]:
        return {name: v.value for name, v in self.variables.items()}

    def source(self, key: str) -> Source:
        try:
            return self.sources[key]
        except KeyError:
            raise ConfigError(f"no source {key}", location=str(self.path)) from None


# --- reading HCL --------------------------------------------------------------------------

def _parse_hcl(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read Packer template: {err.strerror}", location=str(path)) from err
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
        return {k: _clean(v) for k, v in value.items() if not (k.startswith("__") and k.endswith("__"))}
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


# --- variables ----------------------------------------------------------------------------

_TYPE = re.compile(r"^(string|number|bool|any|(list|set|map)\((string|number|bool|any)\))$")


def _type_expression(raw: Any, where: str) -> str:
    text = str(raw).strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1].strip()
    text = re.sub(r"\s+", "", text)
    if not _TYPE.match(text):
        raise ConfigError(f"unsupported variable type {raw!r} (use string, number, bool, "
                          "list(string) or map(string))", location=where)
    return text


def _convert(value: Any, type_: str, what: str) -> Any:
    """Convert a value to a declared type, as Packer's type constraints do."""
    if value is None or type_ == "any":
        return value
    outer = type_.split("(")[0]
    if outer in ("list", "set", "map"):
        inner = type_[len(outer) + 1:-1]
        if outer == "map":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{what}: a map is required")
            return {k: _convert(v, inner, f"{what}[{k!r}]") for k, v in value.items()}
        if not isinstance(value, list):
            raise ConfigError(f"{what}: a list is required")
        items = [_convert(v, inner, f"{what}[{i}]") for i, v in enumerate(value)]
        return list(dict.fromkeys(items)) if outer == "set" else items
    if type_ == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(int(value)) if float(value).is_integer() else str(value)
        if isinstance(value, str):
            return value
        raise ConfigError(f"{what}: a string is required")
    if type_ == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value) if re.fullmatch(r"-?\d+", value.strip()) else float(value)
            except ValueError:
                pass
        raise ConfigError(f"{what}: a number is required, got {value!r}")
    if type_ == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise ConfigError(f"{what}: a bool is required, got {value!r}")
    raise ConfigError(f"{what}: unsupported type {type_}")


def _command_line_value(raw: str, type_: str, scope: Scope) -> Any:
    """``-var name=value``: strings are taken as written, other types parsed as HCL."""
    if type_ in ("string", "any"):
        return raw
    if type_ in ("number", "bool"):
        return raw.strip()
    try:
        return evaluate_expression(raw, scope)
    except ExpressionError as err:
        raise ConfigError(f"invalid value for a {type_} variable: {err}") from err


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
        self.values: dict[str, Any] = {}
        self.resolving: list[str] = []
        self.scope: Scope | None = None

    def __getitem__(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name not in self.raw:
            raise ExpressionError(f'local.{name} is not declared')
        if name in self.resolving:
            cycle = " -> ".join([*self.resolving, name])
            raise ConfigError(f"locals refer to each other in a cycle: {cycle}", location=str(self.path))
        self.resolving.append(name)
        try:
            assert self.scope is not None
            self.values[name] = _evaluate(self.raw[name], self.scope)
        except ExpressionError as err:
            raise ConfigError(f"local.{name}: {err}", location=str(self.path)) from err
        finally:
            self.resolving.pop()
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


class _Variables(Mapping[str, Any]):
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getitem__(self, name: str) -> Any:
        if name not in self.values:
            raise ExpressionError(f'An input variable with the name "{name}" has not been declared.')
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def _evaluate_block(body: dict[str, Any], scope: Scope, where: str) -> dict[str, Any]:
    try:
        return _evaluate(body, scope)
    except ConfigError:
        raise
    except UnsupportedExpression as err:
        raise ConfigError(str(err), location=where) from err
    except ExpressionError as err:
        raise ConfigError(str(err), location=where) from err


def _model(cls: type[_Model], data: dict[str, Any], where: str) -> Any:
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

    unknown_blocks = set(data) - {"packer", "variable", "variables", "locals", "local", "source", "build"}
    if "variables" in data:
        raise ConfigError("a variables block is not supported: declare each variable in a "
                          "variable block", location=where)
    if unknown_blocks:
        raise ConfigError(f'Unsupported block type "{min(unknown_blocks)}"', location=where)

    required_version, plugins = _packer_block(data.get("packer"), path)

    declared: dict[str, dict[str, Any]] = {}
    for (name,), body in _labelled(data.get("variable"), 1, "variable", where):
        if name in declared:
            raise ConfigError(f'Duplicate variable "{name}"', location=_line_of(path, rf'variable\s+"{re.escape(name)}"'))
        declared[name] = body

    # Defaults first, then variables files in order, then -var flags: the last one wins.
    literal_scope = Scope({}, now)
    given: dict[str, tuple[Any, str]] = {}
    for var_file in var_files:
        for name, value in _read_var_file(Path(var_file)).items():
            if name not in declared:
                log.warning("undeclared variable in variables file", variable=name, file=str(var_file))
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
        type_ = _type_expression(body.get("type", "any"), vwhere)
        unknown = set(body) - {"type", "default", "description", "sensitive", "validation"}
        if unknown:
            raise ConfigError(f'variable "{name}": An argument named "{min(unknown)}" '
                              "is not expected here.", location=vwhere)
        has_default = "default" in body
        try:
            default = _convert(_evaluate(body["default"], literal_scope), type_,
                               f'variable "{name}" default') if has_default else None
        except ExpressionError as err:
            raise ConfigError(f'variable "{name}" default: {err}', location=vwhere) from err
        if name in given:
            raw, origin = given[name]
            if origin == "flag":
                raw = _command_line_value(raw, type_, literal_scope)
            value = _convert(raw, type_, f'variable "{name}"')
        elif has_default:
            value = default
        else:
            raise ConfigError(f'Unset variable "{name}": A used variable must be set or have a '
                              "default value.", location=vwhere,
                              hint=f"pass -var {name}=... or give it a default")
        resolved[name] = Variable(
            name=name, type=type_, description=str(body.get("description", "")),
            sensitive=_convert(body.get("sensitive", False), "bool", f'variable "{name}" sensitive'),
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
            raise ConfigError(f'local "{name}": the "expression" argument is required', location=where)
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
            raise ConfigError(f'Invalid variable validation condition: The condition for variable '
                              f'"{name}" must refer to var.{name} in order to test incoming values.',
                              location=where)
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
    for field in ("ami_name", "instance_type", "region", "source_ami", "ssh_username", "ami_description"):
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
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise ConfigError(f"source {source.key}: tags must be a map of strings", location=where)


def _build(body: dict[str, Any], roots: dict[str, Any], sources: dict[str, Source], now: datetime,
           path: Path) -> Build:
    where = _line_of(path, r"build\s*\{")
    unknown = set(body) - {"name", "description", "sources", "source", "provisioner", "post-processor",
                           "post-processors"}
    if unknown:
        raise ConfigError(f'build: Unsupported argument or block "{min(unknown)}"', location=where)
    if "source" in body:
        raise ConfigError("build: source blocks inside a build are not supported; "
                          "reference top-level sources in sources = [...]", location=where)
    refs = body.get("sources")
    if not isinstance(refs, list) or not refs:
        raise ConfigError("build: sources = [\"source.<type>.<name>\", ...] is required", location=where)
    keys = []
    for ref in refs:
        key = str(ref).removeprefix("source.")
        if key not in sources:
            raise ConfigError(f'build: Unknown source "{ref}": no source block {key}', location=where)
        keys.append(key)
    # source.name / source.type have one value only when the build has one source.
    scope_roots = dict(roots)
    if len(keys) == 1:
        only = sources[keys[0]]
        scope_roots["source"] = {"type": only.type, "name": only.name}
    scope = Scope(scope_roots, now)

    provisioners: list[Provisioner] = []
    for index, ((type_,), raw) in enumerate(_labelled(body.get("provisioner"), 1, "provisioner", where)):
        pwhere = f"{where} provisioner {index} ({type_})"
        attributes = _evaluate_block(raw, scope, pwhere)
        provisioners.append(_provisioner(index, type_, attributes, pwhere))

    post_processors: list[PostProcessor] = []
    if body.get("post-processors"):
        raise ConfigError("build: post-processors chains are not supported; use post-processor "
                          "blocks", location=where)
    for index, ((type_,), raw) in enumerate(_labelled(body.get("post-processor"), 1, "post-processor", where)):
        pwhere = f"{where} post-processor {index} ({type_})"
        attributes = _evaluate_block(raw, scope, pwhere)
        if type_ == "manifest":
            post_processors.append(_model(ManifestPostProcessor, {**attributes, "index": index}, pwhere))
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


# --- the manifest post-processor's file ---------------------------------------------------

class ManifestFile(BaseModel):
    name: str
    size: int


class ManifestBuild(BaseModel):
    """One build in Packer's manifest, fields in Packer's order and spelling."""

    name: str
    builder_type: str
    build_time: int | None = None  # omitted when 0 (strip_time), as Go's omitempty does
    files: list[ManifestFile] | None = None
    artifact_id: str
    packer_run_uuid: str
    custom_data: dict[str, str] | None = None


class Manifest(BaseModel):
    builds: list[ManifestBuild] = Field(default_factory=list)
    last_run_uuid: str = ""


def _go_json(data: Any) -> str:
    # encoding/json's MarshalIndent: two spaces, HTML-safe escapes, no trailing newline.
    text = json.dumps(data, indent=2, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def write_manifest(path: Path, builds: Iterable[ManifestBuild], *, force: bool = False) -> Manifest:
    """Add builds to a manifest file the way Packer's manifest post-processor does.

    Packer appends to an existing manifest (``-force`` truncates it when the run differs)
    and records the run's uuid as ``last_run_uuid``; so does this.
    """
    builds = list(builds)
    if not builds:
        raise ValueError("write_manifest needs at least one build")
    run_uuid = builds[-1].packer_run_uuid
    manifest = Manifest()
    if path.exists():
        manifest = _read_manifest(path)
        if force and manifest.last_run_uuid != run_uuid:
            manifest = Manifest()
    manifest = Manifest(builds=[*manifest.builds, *builds], last_run_uuid=run_uuid)
    payload = {
        "builds": [b.model_dump(exclude_none=False) for b in manifest.builds],
        "last_run_uuid": manifest.last_run_uuid,
    }
    for build in payload["builds"]:
        if not build["build_time"]:
            del build["build_time"]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(_go_json(payload))
    partial.replace(path)
    return manifest


def _read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(path.read_text())
    except OSError as err:
        raise CloudError(f"cannot read Packer manifest {path}: {err.strerror}") from err
    except ValidationError as err:
        raise CloudError(f"Packer manifest {path} is not a manifest: {err.errors()[0]['msg']}") from err


def _ami_from_artifact_id(artifact_id: str, region: str | None) -> str | None:
    """``us-east-1:ami-0abc`` (comma-separated when copied to several regions) -> ami id."""
    pairs = []
    for part in artifact_id.split(","):
        area, sep, image = part.strip().partition(":")
        if sep and image.startswith("ami-"):
            pairs.append((area, image))
    if region is not None:
        pairs = [p for p in pairs if p[0] == region] or []
    return pairs[0][1] if pairs else None


def read_manifest_artifact(path: Path, *, region: str | None = None,
                           build_name: str | None = None) -> str:
    """The AMI id of the last run recorded in a Packer manifest.

    Picks the build whose ``packer_run_uuid`` equals ``last_run_uuid`` (older runs stay in
    the file), and returns the id after the ``region:`` prefix.
    """
    manifest = _read_manifest(Path(path))
    runs = [b for b in manifest.builds if b.packer_run_uuid == manifest.last_run_uuid]
    if build_name is not None:
        runs = [b for b in runs if b.name == build_name]
    if not runs:
        raise CloudError(f"Packer manifest {path} has no build for the last run "
                         f"{manifest.last_run_uuid or '(none)'}")
    image = _ami_from_artifact_id(runs[-1].artifact_id, region)
    if image is None:
        raise CloudError(f"Packer manifest {path}: artifact {runs[-1].artifact_id!r} names no "
                         f"image{' in ' + region if region else ''}")
    return image


def parse_machine_readable_artifact(lines: Iterable[str], *, region: str | None = None) -> str | None:
    """The AMI id from ``packer build -machine-readable`` output, if an artifact line has one.

    Lines read ``timestamp,target,type,data...``; Packer writes commas inside data as
    ``%!(PACKER_COMMA)`` and newlines as ``\\n``.
    """
    found = None
    for line in lines:
        fields = line.rstrip("\r\n").split(",", 5)
        if len(fields) == 6 and fields[2] == "artifact" and fields[4] == "id":
            value = fields[5].replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")
            image = _ami_from_artifact_id(value, region)
            if image is not None and found is None:
                found = image
    return found

"""appspec.yml for EC2/on-premises deployments: the model and its validation.

The rules are the CodeDeploy agent's (aws/aws-codedeploy-agent, ``application_specification``)
plus the limits the CodeDeploy docs state but the agent leaves to the service: hook names
limited to the scriptable lifecycle events, at most 3600 s of timeouts per event. Everything
wrong in a file is reported at once, each problem as ``<field path>: <what to fix>``, so a
release manager fixes the file in one pass instead of one error per run.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from deployer.base.errors import ConfigError

MAX_EVENT_TIMEOUT_S = 3600
DEFAULT_SCRIPT_TIMEOUT_S = 3600


class LifecycleEvent(str, Enum):
    """Lifecycle events of an EC2 in-place deployment, in the order the agent runs them."""

    BEFORE_BLOCK_TRAFFIC = "BeforeBlockTraffic"
    BLOCK_TRAFFIC = "BlockTraffic"
    AFTER_BLOCK_TRAFFIC = "AfterBlockTraffic"
    APPLICATION_STOP = "ApplicationStop"
    DOWNLOAD_BUNDLE = "DownloadBundle"
    BEFORE_INSTALL = "BeforeInstall"
    INSTALL = "Install"
    AFTER_INSTALL = "AfterInstall"
    APPLICATION_START = "ApplicationStart"
    VALIDATE_SERVICE = "ValidateService"
    BEFORE_ALLOW_TRAFFIC = "BeforeAllowTraffic"
    ALLOW_TRAFFIC = "AllowTraffic"
    AFTER_ALLOW_TRAFFIC = "AfterAllowTraffic"


# The agent does these itself; an appspec cannot attach scripts to them.
AGENT_EVENTS = frozenset({LifecycleEvent.DOWNLOAD_BUNDLE, LifecycleEvent.INSTALL,
                          LifecycleEvent.BLOCK_TRAFFIC, LifecycleEvent.ALLOW_TRAFFIC})
SCRIPTABLE_EVENTS = tuple(e for e in LifecycleEvent if e not in AGENT_EVENTS)


class OperatingSystem(str, Enum):
    LINUX = "linux"
    WINDOWS = "windows"


class FileExistsBehavior(str, Enum):
    """What Install does when a destination file exists that the last install did not put there."""

    DISALLOW = "DISALLOW"
    OVERWRITE = "OVERWRITE"
    RETAIN = "RETAIN"


class ObjectType(str, Enum):
    FILE = "file"
    DIRECTORY = "directory"


class FileMapping(BaseModel):
    """One ``files`` entry: copy ``source`` (relative to the bundle) to ``destination``."""

    model_config = ConfigDict(frozen=True)

    source: str
    destination: str

    @property
    def source_parts(self) -> tuple[str, ...]:
        """The source as path parts inside the bundle; ``()`` is the whole bundle (``/``)."""
        return tuple(p for p in PurePosixPath(self.source).parts if p not in ("/", "."))


class Permission(BaseModel):
    """One ``permissions`` entry (Linux): mode/owner/group for installed objects."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    object: str
    pattern: str = "**"
    except_: tuple[str, ...] = Field(default=(), alias="except")
    owner: str | None = None
    group: str | None = None
    mode: str | None = None  # octal digits as written, e.g. "644" or "4755"
    type: tuple[ObjectType, ...] = (ObjectType.FILE, ObjectType.DIRECTORY)

    @property
    def mode_bits(self) -> int | None:
        return int(self.mode, 8) if self.mode is not None else None

    def matches(self, path: PurePosixPath) -> bool:
        """Whether an installed object at ``path`` falls under this entry, as the agent decides.

        The object itself is not a match; its contents are. A pattern other than ``**`` and
        every ``except`` glob apply to direct children only, and only ``*`` is a wildcard.
        """
        base = PurePosixPath(self.object)
        if path == base or base not in path.parents:
            return False
        relative = path.relative_to(base).as_posix()
        if any(_simple_glob(relative, glob) for glob in self.except_):
            return False
        return self.pattern == "**" or _simple_glob(relative, self.pattern)


def _simple_glob(name: str, glob: str) -> bool:
    if "/" in name:
        return False
    regex = "".join("[^/]*" if ch == "*" else re.escape(ch) for ch in glob)
    return re.fullmatch(regex, name) is not None


class Hook(BaseModel):
    """One script of a lifecycle event."""

    model_config = ConfigDict(frozen=True)

    location: str
    timeout: int = DEFAULT_SCRIPT_TIMEOUT_S
    runas: str | None = None


class AppSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: float = 0.0
    os: OperatingSystem
    files: tuple[FileMapping, ...] = ()
    permissions: tuple[Permission, ...] = ()
    hooks: dict[LifecycleEvent, tuple[Hook, ...]] = Field(default_factory=dict)
    file_exists_behavior: FileExistsBehavior = FileExistsBehavior.DISALLOW

    def scripts(self, event: LifecycleEvent) -> tuple[Hook, ...]:
        return self.hooks.get(event, ())


# -- reading -------------------------------------------------------------------------------

class _OctalLooking(int):
    """An int YAML read from text with a leading zero (``0644`` -> 420), text kept."""

    text: str


# libyaml's loader when PyYAML has it: the pure-Python one takes milliseconds per appspec,
# and every deployment reads two.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader that remembers how leading-zero integers were written.

    YAML 1.1 (PyYAML here, Psych in the Ruby agent) reads ``mode: 0644`` as octal 420, which
    the agent then applies as mode 0420. Keeping the text lets validation name that trap.
    """


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    value = yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
    text = str(node.value).replace("_", "")
    if re.fullmatch(r"[-+]?0[0-7]+", text):
        marked = _OctalLooking(value)
        marked.text = text
        return marked
    return value


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)

_TOP_KEYS = ("version", "os", "files", "permissions", "hooks", "file_exists_behavior")
_FILE_KEYS = ("source", "destination")
_PERMISSION_KEYS = ("object", "pattern", "except", "owner", "group", "mode", "type")
_HOOK_KEYS = ("location", "timeout", "runas")


def load_appspec(path: Path) -> AppSpec:
    """Read and validate an appspec.yml; every problem is a :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("no appspec.yml here", location=str(path),
                          hint="a revision needs appspec.yml at the root of its bundle") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", location=str(path)) from exc
    return parse_appspec(text, source=str(path))


def parse_appspec(text: str, *, source: str = "appspec.yml") -> AppSpec:
    """Validate appspec text; ``source`` names the file in error messages."""
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"not valid YAML: {problem}", location=where,
                          hint="fix the YAML syntax at that line") from exc
    checker = _Checker()
    spec = checker.appspec(document)
    if checker.problems:
        field, message = checker.problems[0]
        more = [f"{f}: {m}" for f, m in checker.problems[1:]]
        if more:
            message += f" (and {len(more)} more: " + "; ".join(more) + ")"
        raise ConfigError(message, location=f"{source}: {field}" if field else source)
    assert spec is not None
    return spec


class _Checker:
    """Walks the parsed YAML, collecting (field path, what to fix) for every broken rule."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append((field, message))

    def unknown_keys(self, field: str, mapping: dict, allowed: tuple[str, ...]) -> None:
        for key in mapping:
            if key not in allowed:
                where = f"{field}.{key}" if field else str(key)
                self.fail(where, f"unknown key {key!r}; allowed keys: {', '.join(allowed)}")

    def appspec(self, doc: Any) -> AppSpec | None:
        if not isinstance(doc, dict):
            self.fail("", "the file must be a YAML mapping with at least `version: 0.0` and "
                          "`os: linux`")
            return None
        self.unknown_keys("", doc, _TOP_KEYS)
        version = doc.get("version")
        if "version" not in doc:
            self.fail("version", "missing; add `version: 0.0`")
        elif isinstance(version, bool) or not isinstance(version, float) or version != 0.0:
            self.fail("version", f"is {version!r}; it must be exactly 0.0, written unquoted "
                                 "(`version: 0.0`)")
        os_name = doc.get("os")
        os_value = None
        if "os" not in doc:
            self.fail("os", "missing; add `os: linux`")
        elif os_name not in [o.value for o in OperatingSystem]:
            self.fail("os", f"is {os_name!r}; use linux or windows")
        else:
            os_value = OperatingSystem(os_name)
        behavior = FileExistsBehavior.DISALLOW
        if "file_exists_behavior" in doc:
            raw = doc["file_exists_behavior"]
            if raw not in [b.value for b in FileExistsBehavior]:
                self.fail("file_exists_behavior",
                          f"is {raw!r}; use DISALLOW, OVERWRITE or RETAIN")
            else:
                behavior = FileExistsBehavior(raw)
        files = self.files(doc.get("files"))
        permissions = self.permissions(doc.get("permissions"), os_value)
        hooks = self.hooks(doc.get("hooks"))
        if self.problems or os_value is None:
            return None
        return AppSpec(version=0.0, os=os_value, files=files, permissions=permissions,
                       hooks=hooks, file_exists_behavior=behavior)

    def sequence(self, field: str, value: Any, what: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(field, f"must be a list of {what}")
            return []
        return value

    def mapping_item(self, field: str, item: Any, what: str) -> dict | None:
        if not isinstance(item, dict):
            self.fail(field, f"must be a mapping ({what})")
            return None
        return item

    def text(self, field: str, item: dict, key: str, *, required: bool) -> str | None:
        value = item.get(key)
        if value is None:
            if required:
                self.fail(f"{field}.{key}", "missing; it is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{field}.{key}", f"must be a non-empty string, not {value!r}")
            return None
        return value.strip()

    def files(self, value: Any) -> tuple[FileMapping, ...]:
        result = []
        for i, raw in enumerate(self.sequence("files", value, "{source, destination} entries")):
            field = f"files[{i}]"
            item = self.mapping_item(field, raw, "source and destination")
            if item is None:
                continue
            self.unknown_keys(field, item, _FILE_KEYS)
            source = self.text(field, item, "source", required=True)
            destination = self.text(field, item, "destination", required=True)
            if source is not None and ".." in PurePosixPath(source).parts:
                self.fail(f"{field}.source", f"{source!r} leaves the bundle; give a path inside "
                                             "the revision ('/' for all of it), without '..'")
                source = None
            if destination is not None:
                if not destination.startswith("/"):
                    self.fail(f"{field}.destination", f"{destination!r} is relative; give an "
                                                      "absolute path such as /opt/etherpad")
                    destination = None
                elif ".." in PurePosixPath(destination).parts:
                    self.fail(f"{field}.destination", f"{destination!r} contains '..'; give a "
                                                      "plain absolute path")
                    destination = None
            if source is not None and destination is not None:
                result.append(FileMapping(source=source, destination=destination))
        return tuple(result)

    def permissions(self, value: Any, os_value: OperatingSystem | None) -> tuple[Permission, ...]:
        entries = self.sequence("permissions", value, "permission entries")
        if entries and os_value is OperatingSystem.WINDOWS:
            self.fail("permissions", "permissions apply to Linux instances only; remove them "
                                     "or use `os: linux`")
            return ()
        result = []
        for i, raw in enumerate(entries):
            field = f"permissions[{i}]"
            item = self.mapping_item(field, raw, "object, pattern, except, owner, group, mode, "
                                                 "type")
            if item is None:
                continue
            if "acls" in item or "context" in item:
                key = "acls" if "acls" in item else "context"
                self.fail(f"{field}.{key}", "ACLs and SELinux contexts are not supported by the "
                                            "local cloud; remove them or run with --target aws")
                item = {k: v for k, v in item.items() if k not in ("acls", "context")}
            self.unknown_keys(field, item, _PERMISSION_KEYS)
            obj = self.text(field, item, "object", required=True)
            if obj is not None and not obj.startswith("/"):
                self.fail(f"{field}.object", f"{obj!r} is relative; give the absolute path of "
                                             "an installed file or directory")
                obj = None
            pattern = self.text(field, item, "pattern", required=False) or "**"
            excepts = []
            for j, glob in enumerate(self.sequence(f"{field}.except", item.get("except"),
                                                   "glob patterns")):
                if not isinstance(glob, str) or not glob:
                    self.fail(f"{field}.except[{j}]", f"must be a glob pattern string, not "
                                                      f"{glob!r}")
                else:
                    excepts.append(glob)
            owner = self.text(field, item, "owner", required=False)
            group = self.text(field, item, "group", required=False)
            mode = self.mode(f"{field}.mode", item.get("mode"))
            types = self.object_types(f"{field}.type", item.get("type"))
            if obj is not None and types is not None:
                result.append(Permission(object=obj, pattern=pattern, except_=tuple(excepts),
                                         owner=owner, group=group, mode=mode, type=types))
        return tuple(result)

    def mode(self, field: str, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, _OctalLooking):
            self.fail(field, f"{value.text} has a leading zero, so YAML reads it as the octal "
                             f"number {int(value)} and the agent would apply mode {int(value)}; "
                             f"write `mode: {value.text.lstrip('0') or '0'}` or quote it")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(field, f"must be octal digits such as 644 or 4755, not {value!r}")
            return None
        text = str(value).strip()
        if not re.fullmatch(r"[0-7]{1,4}", text):
            self.fail(field, f"{text!r} is not a mode; give one to four octal digits (0-7), "
                             "such as 644 or 4755")
            return None
        return text.rjust(3, "0")

    def object_types(self, field: str, value: Any) -> tuple[ObjectType, ...] | None:
        if value is None:
            return (ObjectType.FILE, ObjectType.DIRECTORY)
        items = self.sequence(field, value, "object types (file, directory)")
        types = []
        for j, raw in enumerate(items):
            if raw not in ("file", "directory"):
                self.fail(f"{field}[{j}]", f"is {raw!r}; use file or directory")
                return None
            types.append(ObjectType(raw))
        if not types:
            self.fail(field, "is empty; list file, directory or both (or leave type out)")
            return None
        return tuple(types)

    def hooks(self, value: Any) -> dict[LifecycleEvent, tuple[Hook, ...]]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail("hooks", "must be a mapping of lifecycle event name to a list of scripts")
            return {}
        names = {e.value: e for e in LifecycleEvent}
        result: dict[LifecycleEvent, tuple[Hook, ...]] = {}
        for name, scripts in value.items():
            field = f"hooks.{name}"
            event = names.get(name) if isinstance(name, str) else None
            if event is None:
                self.fail(field, f"{name!r} is not a lifecycle event of an EC2 deployment; use "
                                 "one of " + ", ".join(e.value for e in SCRIPTABLE_EVENTS))
                continue
            if event in AGENT_EVENTS:
                self.fail(field, f"{name} is performed by the CodeDeploy agent itself and cannot "
                                 "run scripts; move them to BeforeInstall/AfterInstall (or "
                                 "BeforeAllowTraffic/AfterAllowTraffic, Before/AfterBlockTraffic)")
                continue
            if not isinstance(scripts, list) or not scripts:
                self.fail(field, "must be a non-empty list of scripts, each with a location")
                continue
            checked = [(self.hook(f"{field}[{j}]", raw), raw) for j, raw in enumerate(scripts)]
            hooks = [h for h, _ in checked if h is not None]
            # Scripts without a timeout are bounded by the event's own 3600 s at run time;
            # only timeouts written down can promise more than an event may take.
            total = sum(h.timeout for h, raw in checked
                        if h is not None and raw.get("timeout") is not None)
            if total > MAX_EVENT_TIMEOUT_S:
                self.fail(field, f"the timeouts of its scripts add up to {total} s; one lifecycle "
                                 f"event allows at most {MAX_EVENT_TIMEOUT_S} s in total, so "
                                 "lower them")
            if len(hooks) == len(scripts):
                result[event] = tuple(hooks)
        return result

    def hook(self, field: str, raw: Any) -> Hook | None:
        item = self.mapping_item(field, raw, "location, timeout, runas")
        if item is None:
            return None
        problems_before = len(self.problems)
        self.unknown_keys(field, item, _HOOK_KEYS)
        location = self.text(field, item, "location", required=True)
        if location is not None and ".." in PurePosixPath(location).parts:
            self.fail(f"{field}.location", f"{location!r} leaves the bundle; give a path inside "
                                           "the revision, without '..'")
        timeout = item.get("timeout", DEFAULT_SCRIPT_TIMEOUT_S)
        if timeout is None:
            timeout = DEFAULT_SCRIPT_TIMEOUT_S
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            self.fail(f"{field}.timeout", f"must be a whole number of seconds, not {timeout!r}")
        elif timeout <= 0:
            self.fail(f"{field}.timeout", f"is {timeout}; give a number of seconds above 0 "
                                          f"(at most {MAX_EVENT_TIMEOUT_S})")
        runas = self.text(field, item, "runas", required=False)
        if len(self.problems) > problems_before or location is None:
            return None
        return Hook(location=location, timeout=int(timeout), runas=runas)

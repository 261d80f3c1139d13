"""appspec.yml: the model, its defaults, and every validation rule (error type and message)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from deployer.appspec.reader import (
    AGENT_EVENTS,
    SCRIPTABLE_EVENTS,
    FileExistsBehavior,
    LifecycleEvent,
    ObjectType,
    OperatingSystem,
    Permission,
    load_appspec,
    parse_appspec,
)
from deployer.base.errors import ConfigError

VALID = """\
version: 0.0
os: linux
files:
  - source: /
    destination: /opt/etherpad
  - source: config/settings.json
    destination: /etc/etherpad
file_exists_behavior: OVERWRITE
permissions:
  - object: /opt/etherpad
    pattern: "*.sh"
    except: [skip.sh]
    owner: root
    group: root
    mode: 755
    type: [file]
hooks:
  ApplicationStop:
    - location: hooks/stop.sh
      timeout: 60
  ApplicationStart:
    - location: hooks/start.sh
      timeout: 300
      runas: root
    - location: hooks/warm.sh
  ValidateService:
    - location: hooks/validate.sh
      timeout: 30
"""


def test_a_full_appspec_reads_into_the_model(tmp_path: Path) -> None:
    path = tmp_path / "appspec.yml"
    path.write_text(VALID)
    spec = load_appspec(path)
    assert spec.os is OperatingSystem.LINUX
    assert spec.version == 0.0
    assert spec.file_exists_behavior is FileExistsBehavior.OVERWRITE
    assert [(f.source, f.destination) for f in spec.files] == [
        ("/", "/opt/etherpad"), ("config/settings.json", "/etc/etherpad")]
    assert spec.files[0].source_parts == ()
    assert spec.files[1].source_parts == ("config", "settings.json")
    perm = spec.permissions[0]
    assert perm.mode == "755" and perm.mode_bits == 0o755
    assert perm.type == (ObjectType.FILE,) and perm.except_ == ("skip.sh",)
    start = spec.scripts(LifecycleEvent.APPLICATION_START)
    assert [(h.location, h.timeout, h.runas) for h in start] == [
        ("hooks/start.sh", 300, "root"), ("hooks/warm.sh", 3600, None)]
    assert spec.scripts(LifecycleEvent.BEFORE_INSTALL) == ()


def test_defaults() -> None:
    spec = parse_appspec("version: 0.0\nos: linux\npermissions:\n  - object: /opt/x\n")
    assert spec.file_exists_behavior is FileExistsBehavior.DISALLOW
    assert spec.files == () and spec.hooks == {}
    perm = spec.permissions[0]
    assert perm.pattern == "**" and perm.type == (ObjectType.FILE, ObjectType.DIRECTORY)
    assert perm.mode is None and perm.mode_bits is None


def test_windows_is_a_valid_appspec_os() -> None:
    assert parse_appspec("version: 0.0\nos: windows\n").os is OperatingSystem.WINDOWS


def test_scriptable_and_agent_events_partition_the_lifecycle() -> None:
    assert set(SCRIPTABLE_EVENTS) | AGENT_EVENTS == set(LifecycleEvent)
    assert {e.value for e in AGENT_EVENTS} == {"DownloadBundle", "Install", "BlockTraffic",
                                               "AllowTraffic"}


def test_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"appspec\.yml: no appspec\.yml here"):
        load_appspec(tmp_path / "appspec.yml")


def test_bad_yaml_names_the_line() -> None:
    text = "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: [a\n"
    with pytest.raises(ConfigError) as err:
        parse_appspec(text, source="bundle/appspec.yml")
    assert str(err.value).startswith("bundle/appspec.yml:6: not valid YAML")
    with pytest.raises(ConfigError, match=r"appspec\.yml:2: not valid YAML"):
        parse_appspec("version: 0.0\n\tos: linux\n")


BASE = "version: 0.0\nos: linux\n"


def hooks(body: str) -> str:
    return BASE + "hooks:\n" + body


# (appspec text, field path in the message, a fragment of what to fix)
RULES = [
    ("- a\n- b\n", "", "must be a YAML mapping"),
    ("os: linux\n", "version", "missing; add `version: 0.0`"),
    ("version: '0.0'\nos: linux\n", "version", "must be exactly 0.0, written unquoted"),
    ("version: 1.0\nos: linux\n", "version", "is 1.0; it must be exactly 0.0"),
    ("version: 0\nos: linux\n", "version", "is 0; it must be exactly 0.0"),
    ("version: 0.0\n", "os", "missing; add `os: linux`"),
    ("version: 0.0\nos: macos\n", "os", "is 'macos'; use linux or windows"),
    (BASE + "hook:\n  x: 1\n", "hook", "unknown key 'hook'; allowed keys: version, os"),
    (BASE + "file_exists_behavior: overwrite\n", "file_exists_behavior",
     "use DISALLOW, OVERWRITE or RETAIN"),
    (BASE + "files: /opt\n", "files", "must be a list of {source, destination} entries"),
    (BASE + "files:\n  - /opt\n", "files[0]", "must be a mapping (source and destination)"),
    (BASE + "files:\n  - destination: /opt\n", "files[0].source", "missing; it is required"),
    (BASE + "files:\n  - source: /\n", "files[0].destination", "missing; it is required"),
    (BASE + "files:\n  - source: /\n    destination: opt/app\n", "files[0].destination",
     "'opt/app' is relative; give an absolute path"),
    (BASE + "files:\n  - source: ../etc\n    destination: /opt\n", "files[0].source",
     "leaves the bundle"),
    (BASE + "files:\n  - source: /\n    destination: /opt/../etc\n", "files[0].destination",
     "contains '..'"),
    (BASE + "files:\n  - source: /\n    destination: /opt\n    mode: 644\n", "files[0].mode",
     "unknown key 'mode'"),
    (BASE + "files:\n  - source: ''\n    destination: /opt\n", "files[0].source",
     "must be a non-empty string"),
    (BASE + "permissions:\n  - owner: root\n", "permissions[0].object",
     "missing; it is required"),
    (BASE + "permissions:\n  - object: opt/app\n", "permissions[0].object",
     "'opt/app' is relative"),
    (BASE + "permissions:\n  - object: /opt\n    mode: 0644\n", "permissions[0].mode",
     "0644 has a leading zero, so YAML reads it as the octal number 420"),
    (BASE + "permissions:\n  - object: /opt\n    mode: 689\n", "permissions[0].mode",
     "'689' is not a mode; give one to four octal digits"),
    (BASE + "permissions:\n  - object: /opt\n    mode: 17777\n", "permissions[0].mode",
     "'17777' is not a mode"),
    (BASE + "permissions:\n  - object: /opt\n    mode: rwx\n", "permissions[0].mode",
     "'rwx' is not a mode"),
    (BASE + "permissions:\n  - object: /opt\n    type: [link]\n", "permissions[0].type[0]",
     "is 'link'; use file or directory"),
    (BASE + "permissions:\n  - object: /opt\n    type: []\n", "permissions[0].type",
     "is empty"),
    (BASE + "permissions:\n  - object: /opt\n    except: [1]\n", "permissions[0].except[0]",
     "must be a glob pattern string"),
    (BASE + "permissions:\n  - object: /opt\n    acls: [u:a:rw]\n", "permissions[0].acls",
     "not supported by the local cloud"),
    (BASE + "permissions:\n  - object: /opt\n    context: {type: x}\n",
     "permissions[0].context", "not supported by the local cloud"),
    (BASE + "permissions:\n  - object: /opt\n    user: root\n", "permissions[0].user",
     "unknown key 'user'"),
    ("version: 0.0\nos: windows\npermissions:\n  - object: /opt\n", "permissions",
     "permissions apply to Linux instances only"),
    (BASE + "hooks: [a]\n", "hooks", "must be a mapping of lifecycle event name"),
    (hooks("  BeforeInstal:\n    - location: a.sh\n"), "hooks.BeforeInstal",
     "'BeforeInstal' is not a lifecycle event of an EC2 deployment; use one of "
     "BeforeBlockTraffic, AfterBlockTraffic, ApplicationStop, BeforeInstall"),
    (hooks("  ApplicationStart: a.sh\n"), "hooks.ApplicationStart",
     "must be a non-empty list of scripts"),
    (hooks("  ApplicationStart: []\n"), "hooks.ApplicationStart",
     "must be a non-empty list of scripts"),
    (hooks("  ApplicationStart:\n    - a.sh\n"), "hooks.ApplicationStart[0]",
     "must be a mapping (location, timeout, runas)"),
    (hooks("  ApplicationStart:\n    - timeout: 5\n"), "hooks.ApplicationStart[0].location",
     "missing; it is required"),
    (hooks("  ApplicationStart:\n    - location: '  '\n"),
     "hooks.ApplicationStart[0].location", "must be a non-empty string"),
    (hooks("  ApplicationStart:\n    - location: ../x.sh\n"),
     "hooks.ApplicationStart[0].location", "leaves the bundle"),
    (hooks("  AfterInstall:\n    - location: a.sh\n      timeout: 0\n"),
     "hooks.AfterInstall[0].timeout", "is 0; give a number of seconds above 0"),
    (hooks("  AfterInstall:\n    - location: a.sh\n      timeout: -5\n"),
     "hooks.AfterInstall[0].timeout", "is -5; give a number of seconds above 0"),
    (hooks("  AfterInstall:\n    - location: a.sh\n      timeout: 1.5\n"),
     "hooks.AfterInstall[0].timeout", "must be a whole number of seconds, not 1.5"),
    (hooks("  AfterInstall:\n    - location: a.sh\n      timeout: '300'\n"),
     "hooks.AfterInstall[0].timeout", "must be a whole number of seconds, not '300'"),
    (hooks("  AfterInstall:\n    - location: a.sh\n      timeout: true\n"),
     "hooks.AfterInstall[0].timeout", "must be a whole number of seconds"),
    (hooks("  AfterInstall:\n    - location: a.sh\n      timeout: 4000\n"),
     "hooks.AfterInstall", "add up to 4000 s; one lifecycle event allows at most 3600 s"),
    (hooks("  ValidateService:\n    - location: a.sh\n      timeout: 1800\n"
           "    - location: b.sh\n      timeout: 1801\n"),
     "hooks.ValidateService", "add up to 3601 s"),
    (hooks("  ValidateService:\n    - location: a.sh\n      runas: 7\n"),
     "hooks.ValidateService[0].runas", "must be a non-empty string, not 7"),
    (hooks("  ValidateService:\n    - location: a.sh\n      sudo: true\n"),
     "hooks.ValidateService[0].sudo", "unknown key 'sudo'; allowed keys: location, timeout, "
                                      "runas"),
]


@pytest.mark.parametrize("text,field,fix", RULES,
                         ids=[f"{i}-{r[1] or 'document'}" for i, r in enumerate(RULES)])
def test_every_rule_names_file_field_and_fix(text: str, field: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_appspec(text, source="rev/appspec.yml")
    expected_location = f"rev/appspec.yml: {field}" if field else "rev/appspec.yml"
    assert err.value.location == expected_location
    assert str(err.value).startswith(f"{expected_location}: ")
    assert fix in str(err.value)


@pytest.mark.parametrize("event", sorted(e.value for e in AGENT_EVENTS))
def test_agent_events_cannot_be_hooked(event: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_appspec(hooks(f"  {event}:\n    - location: a.sh\n"))
    assert err.value.location == f"appspec.yml: hooks.{event}"
    assert "is performed by the CodeDeploy agent itself and cannot run scripts" in str(err.value)


@pytest.mark.parametrize("event", [e.value for e in SCRIPTABLE_EVENTS])
def test_every_scriptable_event_can_be_hooked(event: str) -> None:
    spec = parse_appspec(hooks(f"  {event}:\n    - location: a.sh\n      timeout: 3600\n"))
    assert spec.scripts(LifecycleEvent(event))[0].timeout == 3600


def test_only_written_timeouts_count_towards_the_event_limit() -> None:
    # Without a timeout a script may take the default 3600 s, but the event as a whole is
    # still capped at 3600 s when it runs; two such scripts are a valid appspec on AWS.
    spec = parse_appspec(hooks("  AfterInstall:\n    - location: a.sh\n    - location: b.sh\n"
                               "      timeout: 3600\n"))
    assert [h.timeout for h in spec.scripts(LifecycleEvent.AFTER_INSTALL)] == [3600, 3600]


def test_all_problems_are_reported_together() -> None:
    text = ("version: 1\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n"
            "      timeout: 0\n  Install:\n    - location: b.sh\n")
    with pytest.raises(ConfigError) as err:
        parse_appspec(text)
    message = str(err.value)
    assert message.startswith("appspec.yml: version: is 1;")
    assert "(and 2 more: hooks.AfterInstall[0].timeout: is 0" in message
    assert "hooks.Install: Install is performed by the CodeDeploy agent" in message


def test_quoted_modes_and_short_modes() -> None:
    spec = parse_appspec(BASE + "permissions:\n  - object: /a\n    mode: '0640'\n"
                                "  - object: /b\n    mode: 4755\n  - object: /c\n    mode: 7\n")
    assert [p.mode_bits for p in spec.permissions] == [0o640, 0o4755, 0o007]


@pytest.mark.parametrize("pattern,excepts,path,expected", [
    ("**", (), "/opt/app/a.sh", True),
    ("**", (), "/opt/app/deep/dir/a.sh", True),
    ("**", (), "/opt/app", False),          # the object itself is not a match
    ("**", (), "/opt/other/a.sh", False),
    ("*.sh", (), "/opt/app/a.sh", True),
    ("*.sh", (), "/opt/app/a.txt", False),
    ("*.sh", (), "/opt/app/deep/a.sh", False),  # simple globs see direct children only
    ("**", ("a*",), "/opt/app/a.sh", False),
    ("**", ("a*",), "/opt/app/b.sh", True),
    ("?.sh", (), "/opt/app/a.sh", False),   # only * is a wildcard, as in the agent
])
def test_permission_matching_follows_the_agent(pattern: str, excepts: tuple[str, ...],
                                               path: str, expected: bool) -> None:
    perm = Permission(object="/opt/app", pattern=pattern, except_=excepts)
    assert perm.matches(PurePosixPath(path)) is expected

"""What a request to the local cloud may name, each by a strict pattern.

Names from a request become directory names (a stack's database, a bucket, an object key),
command lines and log lines. Each is checked here, at the API, against the pattern AWS
gives it (or a narrower one); a name that does not match is refused with a
:class:`UsageError` (HTTP 400) before anything is touched. ``../x`` matches none of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deployer.base.errors import NotFound, SourceError, UsageError
from deployer.etherpad.releases import check_release_name

# A strategy names a stack (etherpad-<strategy>) and its database directory.
STRATEGY = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
STRATEGY_MAX = 32
# CloudFormation's stack name rule.
STACK = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
# Template parameter names and logical ids are alphanumeric (CloudFormation).
LOGICAL_ID = re.compile(r"[A-Za-z0-9]{1,255}")
# S3 bucket names: lower case letters, digits, dots and hyphens, 3 to 63.
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Object keys: path segments of safe characters; no empty, "." or ".." segment.
KEY_SEGMENT = re.compile(r"[A-Za-z0-9_+=,@~-][A-Za-z0-9._+=,@~-]*")
KEY_MAX = 1024
# An object version as the artifact store writes it.
VERSION = re.compile(r"[0-9]{6}-[0-9a-f]{8}")
ETAG = re.compile(r"[0-9a-f]{32}")
IMAGE_ID = re.compile(r"ami-[0-9a-f]{8,17}")
OPERATION_ID = re.compile(r"op-[0-9a-f]{10}")
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
TARGET_GROUP = re.compile(r"[A-Za-z0-9:/._-]{1,1024}")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")
VALUE_MAX = 4096
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json", ".template", ".pkr.hcl", ".hcl")


def _bad(what: str, value: object, rule: str) -> UsageError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return UsageError(f"{what} {shown} is not allowed", hint=rule)


def matching(what: str, value: Any, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _bad(what, value, rule)
    return value


def strategy(value: Any) -> str:
    if not isinstance(value, str) or len(value) > STRATEGY_MAX or not STRATEGY.fullmatch(value):
        raise _bad("strategy", value, f"lower case letters, digits and single hyphens, "
                                      f"at most {STRATEGY_MAX}")
    return value


def stack(value: Any) -> str:
    return matching("stack name", value, STACK,
                    "a letter, then letters, digits and hyphens, at most 128")


def logical_id(value: Any, what: str = "resource") -> str:
    return matching(what, value, LOGICAL_ID, "letters and digits, at most 255")


def bucket(value: Any) -> str:
    if not isinstance(value, str) or not BUCKET.fullmatch(value) or ".." in value:
        raise _bad("bucket", value, "an S3 bucket name: 3 to 63 lower case letters, digits, "
                                    "dots and hyphens")
    return value


def key(value: Any) -> str:
    if (not isinstance(value, str) or not value or len(value) > KEY_MAX
            or not all(KEY_SEGMENT.fullmatch(part) for part in value.split("/"))):
        raise _bad("object key", value, "relative path segments of letters, digits and "
                                        "._+=,@~- (no empty, '.' or '..' segment)")
    return value


def version(value: Any) -> str:
    return matching("object version", value, VERSION, "a version the artifact store gave")


def etag(value: Any) -> str:
    return matching("etag", value, ETAG, "an MD5 in hex")


def image_id(value: Any) -> str:
    return matching("image id", value, IMAGE_ID, "ami- and 8 to 17 hex digits")


def operation_id(value: Any) -> str:
    return matching("operation id", value, OPERATION_ID, "op- and 10 hex digits")


def instance_id(value: Any) -> str:
    return matching("instance id", value, INSTANCE_ID, "i- and 8 to 17 hex digits")


def target_group(value: Any) -> str:
    return matching("target group", value, TARGET_GROUP, "a target group name or ARN")


def release(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad("release", value, "a release tag like 1.8.18")
    try:
        check_release_name(value)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    return value


def counter(value: str | None) -> int:
    """An ``after=N`` query value: a small non-negative integer."""
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 9:
        raise _bad("after", value, "a non-negative integer")
    return int(value)


def string_map(value: Any, what: str, name: re.Pattern[str] = LOGICAL_ID) -> dict[str, str]:
    """Parameters or variables: names by ``name``, values strings of bounded length."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be an object of names to strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        matching(f"{what} name", k, name, "letters and digits" if name is LOGICAL_ID
                 else "letters, digits, _ and -")
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise UsageError(f"{what} {k} must be a string")
        v = str(v)
        if len(v) > VALUE_MAX or "\0" in v:
            raise _bad(f"{what} {k}", v, f"at most {VALUE_MAX} characters, no NUL")
        out[k] = v
    return out


def template_path(value: Any) -> Path:
    """A template the supervisor reads: an absolute path to a regular file of a template
    kind (no device, no directory, no ``..``)."""
    if not isinstance(value, str) or "\0" in value or not value.startswith("/"):
        raise _bad("template", value, "an absolute path to a template file")
    path = Path(value)
    if ".." in path.parts or not value.endswith(TEMPLATE_SUFFIXES):
        raise _bad("template", value, "a template file (" + ", ".join(TEMPLATE_SUFFIXES) + ")")
    if not path.is_file():
        raise UsageError(f"template {value} is not a file")
    return path


def upload_path(value: Any) -> Path:
    """A file to upload: an absolute path to a regular file (no device, FIFO or directory).

    Only the owner may upload (see :mod:`deployer.localcloud.access`): the caller is the
    supervisor's own user, who can read any file the supervisor can.
    """
    if not isinstance(value, str) or "\0" in value or not value.startswith("/"):
        raise _bad("path", value, "an absolute path to a file")
    path = Path(value)
    if ".." in path.parts:
        raise _bad("path", value, "an absolute path without '..'")
    if not path.exists():
        raise NotFound(f"cannot upload {value}: no such file")
    if not path.is_file():
        raise UsageError(f"cannot upload {value}: not a regular file")
    return path


def deployment(body: dict) -> dict:
    """A CodeDeploy deployment as the API takes it, every name checked."""
    revision = body.get("revision")
    if not isinstance(revision, dict):
        raise UsageError("the request needs 'revision' (an artifact)")
    size = revision.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise UsageError("the revision's size must be a number of bytes")
    checked = {"bucket": bucket(revision.get("bucket")),
               "key": key(revision.get("key")), "etag": etag(revision.get("etag")),
               "version": version(revision.get("version")), "size": size}
    wanted = body.get("release")
    return {"stack": stack(body.get("stack")), "revision": checked,
            "release": None if wanted is None else release(wanted),
            "ignore_application_stop_failures": bool(
                body.get("ignore_application_stop_failures"))}

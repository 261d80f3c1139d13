"""Who may drive the local cloud, as IAM decides who may call AWS.

Two kinds of caller present a bearer token in ``Authorization``:

- **the owner** (the CLI of the user who runs the supervisor): a secret made fresh by each
  supervisor, written with its URL to ``supervisor.json``, which is readable by that user only
  (0600). Whoever can read it is the supervisor's own user (or root), so everything the API
  does for the owner (read a file to upload, run a template's user data) the caller could do
  by hand. The owner may call every endpoint.
- **an instance** (its ``cfn-signal``, its ``aws`` and the CodeDeploy hooks run on it): a
  credential of its own, ``<instance id>.<HMAC of the id>`` under a key kept in ``api.key``
  (0600) in the cloud's directory, so it survives a supervisor restart with the instances
  that hold it. An instance may signal for itself and read the target health of its own
  stack, nothing else: like an instance profile that allows ``cloudformation:SignalResource``
  and ``elasticloadbalancing:DescribeTargetHealth`` only.

Tokens are compared in constant time. Anything else is refused before a request is routed.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from deployer.base import errors

KEY_FILE = "api.key"
INFO_FILE = "supervisor.json"
PRIVATE_MODE = 0o600
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")


class Unauthorized(errors.CloudError):
    """No credential, or one the supervisor did not issue (HTTP 401)."""


class Forbidden(errors.CloudError):
    """A credential that does not allow this call (HTTP 403)."""


class Readable(errors.StateError):
    """This user's own file, but others may read it (as deployer wrote files before)."""


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, from the first byte on, and
    replace ``path`` in one step (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
        with open(fd, "wb", closefd=False) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> bytes:
    """The contents of a file that must be this user's own and readable by nobody else.

    Raises :class:`FileNotFoundError` when it is not there, :class:`errors.StateError` when
    someone else owns it or others may read or write it: a secret someone else could have
    read, or a file someone else could have written, is not to be trusted.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise errors.StateError(f"{path} is a symbolic link: not trusting it",
                                hint="remove it") from None
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_uid != os.geteuid():
            raise errors.StateError(f"{path} belongs to uid {st.st_uid}, not to this user "
                                    f"(uid {os.geteuid()}): not trusting it",
                                    hint="each user needs a data dir of their own "
                                         "(DEPLOYER_HOME)")
        if st.st_mode & 0o077:
            error = Readable if not st.st_mode & 0o022 else errors.StateError
            raise error(f"{path} is readable or writable by others "
                        f"(mode {st.st_mode & 0o777:o}): not trusting it",
                        hint=f"remove it (a new supervisor writes it {PRIVATE_MODE:o})")
        return fh.read()


def load_key(cloud_dir: Path) -> bytes:
    """The data dir's key for instance credentials, made on first use."""
    path = cloud_dir / KEY_FILE
    try:
        key = read_private(path)
    except FileNotFoundError:
        key = b""
    if len(key) < 32:
        key = secrets.token_bytes(32)
        write_private(path, key)
    return key


@dataclass(frozen=True)
class Caller:
    """Who made a request: the owner (``instance_id`` None) or one instance."""

    instance_id: str | None = None

    @property
    def owner(self) -> bool:
        return self.instance_id is None


OWNER = Caller()


class Credentials:
    """The owner's token of this supervisor and the key of the instances' credentials."""

    def __init__(self, key: bytes, owner_token: str | None = None) -> None:
        self._key = key
        self.owner_token = owner_token or secrets.token_urlsafe(32)

    @classmethod
    def for_cloud(cls, cloud_dir: Path) -> Credentials:
        return cls(load_key(cloud_dir))

    def _mac(self, instance_id: str) -> str:
        return hmac.new(self._key, b"instance:" + instance_id.encode(),
                        hashlib.sha256).hexdigest()

    def instance_token(self, instance_id: str) -> str:
        return f"{instance_id}.{self._mac(instance_id)}"

    def caller(self, authorization: str | None) -> Caller:
        """The caller a request's ``Authorization`` header names; :class:`Unauthorized`
        unless it carries a token this supervisor issued."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the local cloud API needs a credential (Authorization: "
                               "Bearer ...)", hint="use the deployer CLI as the user who "
                                                   "runs the local cloud")
        if hmac.compare_digest(token.encode(), self.owner_token.encode()):
            return OWNER
        instance_id, _, mac = token.rpartition(".")
        if INSTANCE_ID.fullmatch(instance_id) and hmac.compare_digest(
                mac.encode(), self._mac(instance_id).encode()):
            return Caller(instance_id=instance_id)
        raise Unauthorized("the local cloud API refused this credential",
                           hint="use the deployer CLI as the user who runs the local cloud")


def write_info(cloud_dir: Path, info: dict) -> None:
    """``supervisor.json``: where the supervisor listens and the owner's token (0600)."""
    write_private(cloud_dir / INFO_FILE, json.dumps(info).encode())


def read_info(cloud_dir: Path) -> dict | None:
    """What ``supervisor.json`` says, if it is there, whole and trustworthy (see
    :func:`read_private`); None when it is missing or half written."""
    try:
        info = json.loads(read_private(cloud_dir / INFO_FILE))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None

"""The database the instances share, as RDS is in the book: a real PostgreSQL server.

One server per environment, on a loopback port, started and stopped with the environment;
its data outlives every release. PostgreSQL refuses to run as root, so as root the server
runs as the ``postgres`` user (Debian's package creates it).

The server belongs to the environment, and is as strict as RDS:

- **Who may connect.** Over its Unix socket only the server's own user, as the superuser,
  by ``peer`` authentication (the supervisor's maintenance: roles, databases); the socket
  directory is 0700 and owned by that user. Over TCP (127.0.0.1 only) only TLS with a
  SCRAM password (``hostssl ... scram-sha-256``; no ``host`` line): a plain connection is
  refused, as RDS for PostgreSQL 15+ refuses it (``rds.force_ssl=1``). The certificate is
  self-signed, made at ``initdb``. The superuser never logs in over TCP.
- **Where it lives.** Every directory from the cluster's base down is created 0700 and
  owned by the server's user, checked without following symlinks; a directory someone else
  made (owned by another user, group- or world-writable, a symlink) is refused, never
  chowned or reused. As root the base is ``<postgres's home>/deployer/<key>`` (the
  ``postgres`` user cannot traverse a root-only data dir, and its home is writable by
  nobody else, unlike the system temp dir); otherwise ``$DEPLOYER_HOME/db``. When the
  socket path would be too long for a Unix socket, the socket directory is a ``mkdtemp``
  one (0700, ownership checked).
- **Older environments.** A cluster an older deployer kept as root in the system temp dir
  (``deployer-db-<key>``) is moved here when it is verifiably the ``postgres`` user's; pads
  are never left behind. One still running is reconfigured and reloaded.
- **Secrets.** A role's password goes to ``psql`` on its standard input, never on a
  command line.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from pydantic import BaseModel

from deployer.base import logs
from deployer.base.errors import CloudError

log = logs.get_logger(component="database")

# sun_path is 108 bytes on Linux, with the terminating NUL.
SOCKET_PATH_MAX = 107
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")


def _pg_bin() -> Path:
    override = os.environ.get("DEPLOYER_PG_BIN")
    if override:
        return Path(override)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if versions:
        return versions[0].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise CloudError("PostgreSQL is not installed; the local cloud runs the environment's "
                     "database on it", hint="apt-get install postgresql (./run setup does)")


class DatabaseEndpoint(BaseModel):
    engine: str = "postgres"
    host: str = "127.0.0.1"
    port: int
    name: str
    user: str
    password: str


def _refuse(path: Path, why: str) -> CloudError:
    return CloudError(f"database directory {path} {why}: it was not made by this deployer "
                      "and is not used", hint=f"remove {path} if it is yours, or find out who "
                                              "made it")


def check_private_dir(path: Path, uid: int, *, allow_root: bool = False) -> os.stat_result:
    """``path`` is a real directory owned by ``uid`` that no group or other may write."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise _refuse(path, "is missing") from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a directory")
    if st.st_uid != uid and not (allow_root and st.st_uid == 0):
        raise _refuse(path, f"is owned by uid {st.st_uid}, not {uid}")
    if st.st_mode & 0o022:
        raise _refuse(path, f"is writable by group or others (mode {st.st_mode & 0o777:o})")
    return st


def private_dir(path: Path, uid: int, gid: int) -> Path:
    """Create ``path`` (its parent must be checked already) 0700, owned by ``uid``; or check it.

    A directory this process just created is root's when running as root: it is handed to
    ``uid`` with ``lchown``, which never follows a symlink (and the parent, private, leaves
    nobody else the chance to swap one in).
    """
    try:
        os.mkdir(path, 0o700)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid != uid:
            os.lchown(path, uid, gid)
    except FileExistsError:
        pass
    check_private_dir(path, uid)
    os.chmod(path, 0o700)
    return path


def _write_owned(path: Path, text: str, uid: int, gid: int, mode: int = 0o600) -> None:
    """Write a file owned by ``uid`` without following a symlink at ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _identifier(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PostgresServer:
    def __init__(self, home: Path, stack: str, port: int) -> None:
        if not _NAME.match(stack):
            raise CloudError(f"database: {stack!r} is not a stack name")
        self.port = port
        self.bin = _pg_bin()
        self.run_as = "postgres" if os.geteuid() == 0 else None
        account = pwd.getpwnam(self.run_as) if self.run_as else pwd.getpwuid(os.geteuid())
        self.account = account
        self.uid, self.gid = account.pw_uid, account.pw_gid
        if self.run_as:
            # The postgres user cannot traverse a root-only data dir: keep the cluster in its
            # own home, which (unlike the system temp dir) nobody else may write.
            key = hashlib.sha256(str(home).encode()).hexdigest()[:12]
            self.root = Path(account.pw_dir)
            self.chain = [self.root / "deployer", self.root / "deployer" / key]
        else:
            self.root = home
            self.chain = [home / "db"]
        self.dir = self.chain[-1] / stack
        self.data = self.dir / "data"
        self.socket_dir = self._socket_dir()

    # -- places ----------------------------------------------------------------------------
    def _socket_dir(self) -> Path:
        """Where the socket is: the running server's (postmaster.pid) or ``<dir>/run``."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            if len(lines) > 4 and lines[4].strip():
                return Path(lines[4].strip())
        except OSError:
            pass
        return self.dir / "run"

    def _make_dirs(self) -> None:
        # The base of the chain: the postgres user's home as root, the checked data dir
        # otherwise. Someone else's, or writable by others, it cannot hold a cluster.
        check_private_dir(self.root, self.uid, allow_root=True)
        for path in [*self.chain, self.dir]:
            private_dir(path, self.uid, self.gid)
        if self.data.exists() or self.data.is_symlink():
            check_private_dir(self.data, self.uid)

    def _fresh_socket_dir(self) -> Path:
        socket_dir = self.dir / "run"
        if len(str(socket_dir / f".s.PGSQL.{self.port}")) <= SOCKET_PATH_MAX:
            return private_dir(socket_dir, self.uid, self.gid)
        # A data dir too deep for a Unix socket path: a private directory of mkdtemp's,
        # random and made 0700 by this process, handed to the server's user and checked.
        made = Path(tempfile.mkdtemp(prefix="deployer-pg-"))
        os.lchown(made, self.uid, self.gid)
        check_private_dir(made, self.uid)
        return made

    # -- commands --------------------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.run_as, "--"] if self.run_as else []) + list(args)

    def _run(self, *args: str, timeout: float = 60,
             stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(self._cmd(*args), capture_output=True, text=True,
                                timeout=timeout, input=stdin, cwd="/")
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise CloudError(f"database: {Path(args[0]).name} failed: "
                             f"{last[0] if last else f'exit {result.returncode}'}")
        return result

    def initialise(self) -> None:
        self._make_dirs()
        if not (self.data / "PG_VERSION").is_file():
            if self.data.exists():
                shutil.rmtree(self.data)  # ours (checked), left by an initdb that failed
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                      "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8")
        check_private_dir(self.data, self.uid)
        self._ensure_certificate()

    def _ensure_certificate(self) -> None:
        key, cert = self.data / "server.key", self.data / "server.crt"
        if key.is_file() and cert.is_file() and not key.is_symlink():
            return
        self._run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650", "-subj",
                  "/CN=deployer-local-database", "-addext", "subjectAltName=IP:127.0.0.1",
                  "-keyout", str(key), "-out", str(cert))
        os.chmod(key, 0o600)

    def _configure(self, socket_dir: Path) -> None:
        """Write who may connect and how, at every start (a file changed meanwhile is reset)."""
        quoted_dir = str(socket_dir).replace("'", "''")
        _write_owned(self.data / "deployer.conf", "\n".join([
            "# Written by deployer at every start; see deployer/localcloud/database.py.",
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{quoted_dir}'",
            "unix_socket_permissions = 0700",
            "ssl = on",
            "ssl_cert_file = 'server.crt'",
            "ssl_key_file = 'server.key'",
            "password_encryption = 'scram-sha-256'",
            ""]), self.uid, self.gid)
        _write_owned(self.data / "pg_hba.conf", "\n".join([
            "# Written by deployer at every start. The socket: the server's own user, as",
            "# the superuser. TCP: TLS and a SCRAM password only, never the superuser.",
            "local   all  postgres                peer map=owner",
            "hostssl all  postgres  127.0.0.1/32  reject",
            "hostssl all  all       127.0.0.1/32  scram-sha-256",
            ""]), self.uid, self.gid)
        _write_owned(self.data / "pg_ident.conf",
                     f"owner  {self.account.pw_name}  postgres\n", self.uid, self.gid)
        main_conf = self.data / "postgresql.conf"
        text = main_conf.read_text()
        include = "include_if_exists = 'deployer.conf'"
        if include not in text:
            _write_owned(main_conf, text.rstrip("\n") + f"\n{include}\n", self.uid, self.gid)

    def is_running(self) -> bool:
        pid_file = self.data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
            return True
        except (OSError, ValueError, IndexError):
            return False

    # -- an environment made by an older deployer -----------------------------------------
    def _legacy_dir(self) -> Path | None:
        """The cluster an older deployer kept, as root, at a predictable place in the system
        temp dir, if it is verifiably the postgres user's (never one planted by another user:
        they cannot make a directory owned by postgres)."""
        if not self.run_as:
            return None  # the data dir's db/ was, and is, the place
        base = Path(tempfile.gettempdir()) / f"deployer-db-{self.chain[-1].name}"
        legacy = base / self.dir.name
        try:
            check_private_dir(base, self.uid, allow_root=True)
            for path in (legacy, legacy / "data"):
                check_private_dir(path, self.uid)
            version = os.lstat(legacy / "data" / "PG_VERSION")
        except (CloudError, OSError):
            return None
        return legacy if stat.S_ISREG(version.st_mode) else None

    def _adopt_legacy(self) -> None:
        legacy = self._legacy_dir()
        if legacy is None or self.data.exists():
            return
        data = legacy / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "-t", "30", "stop"),
                           capture_output=True, timeout=60, cwd="/")
        self._make_dirs()
        if os.stat(legacy).st_dev == os.stat(self.dir).st_dev:
            os.rename(data, self.data)
        else:  # another filesystem (a tmpfs /tmp): copied as it is, owners and modes kept
            self._run("cp", "-a", "--no-dereference", str(data), str(self.data), timeout=600)
        shutil.rmtree(legacy, ignore_errors=True)
        log.warning("database.moved", from_dir=str(legacy), to_dir=str(self.dir))

    def start(self) -> None:
        self._adopt_legacy()
        self.initialise()
        if self.is_running():
            # Started by an earlier supervisor (perhaps an older deployer): who may connect
            # is made what it is now, at once (pg_hba.conf and TLS are reloadable).
            self.socket_dir = self._socket_dir()
            check_private_dir(self.socket_dir, self.uid)
            os.chmod(self.socket_dir, 0o700)
            self._configure(self.socket_dir)
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "reload")
            return
        self.socket_dir = self._fresh_socket_dir()
        self._configure(self.socket_dir)
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
                  "-l", str(self.dir / "postgres.log"), "start", timeout=90)
        log.info("database.started", port=self.port)

    def stop(self) -> None:
        if self.is_running():
            subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                                     "fast", "-w", "-t", "30", "stop"),
                           capture_output=True, timeout=60, cwd="/")
            log.info("database.stopped", port=self.port)

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the socket; the SQL goes on stdin, not argv."""
        result = self._run(str(self.bin / "psql"), "-X", "-h", str(self.socket_dir), "-p",
                           str(self.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
                           "-At", "-f", "-", stdin=sql)
        return result.stdout

    def ensure_database(self, name: str, user: str, password: str) -> DatabaseEndpoint:
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = {_literal(user)}").strip()
        verb = "ALTER" if exists else "CREATE"
        self.psql(f"{verb} ROLE {_identifier(user)} LOGIN PASSWORD {_literal(password)}")
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = {_literal(name)}").strip():
            self.psql(f"CREATE DATABASE {_identifier(name)} OWNER {_identifier(user)}")
        return DatabaseEndpoint(port=self.port, name=name, user=user, password=password)

    def destroy(self) -> None:
        socket_dir = self.socket_dir
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.chain[-1].rmdir()  # the last environment of this data dir
        except OSError:
            pass
        if socket_dir.name.startswith("deployer-pg-") and socket_dir.parent == Path(
                tempfile.gettempdir()):
            shutil.rmtree(socket_dir, ignore_errors=True)

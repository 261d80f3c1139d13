"""The database the instances share, as RDS is in the book: a real PostgreSQL server.

One server per environment, on a loopback port, started and stopped with the environment;
its data outlives every release. PostgreSQL refuses to run as root, so as root the server
runs as the ``postgres`` user (Debian's package creates it) in a data directory that user
can reach.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from pydantic import BaseModel

from deployer.base import logs
from deployer.base.errors import CloudError

log = logs.get_logger(component="database")


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


class PostgresServer:
    def __init__(self, home: Path, stack: str, port: int) -> None:
        self.port = port
        self.bin = _pg_bin()
        self.run_as = "postgres" if os.geteuid() == 0 else None
        if self.run_as:
            # The postgres user cannot traverse a root-only home: keep the cluster where it can.
            key = hashlib.sha256(str(home).encode()).hexdigest()[:12]
            base = Path(tempfile.gettempdir()) / f"deployer-db-{key}"
        else:
            base = home / "db"
        self.dir = base / stack
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "run"

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.run_as, "--"] if self.run_as else []) + list(args)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise CloudError(f"database: {' '.join(args[:2])} failed: "
                             f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
        return result

    def _chown(self, path: Path) -> None:
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            for p in [path, *path.rglob("*")]:
                os.chown(p, user.pw_uid, user.pw_gid)

    def initialise(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir.parent, 0o755)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.dir)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8")

    def is_running(self) -> bool:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
            return True
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return False

    def start(self) -> None:
        self.initialise()
        if self.is_running():
            return
        opts = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-w",
                  "-t", "60", "-l", str(self.dir / "postgres.log"), "start", timeout=90)
        log.info("database.started", port=self.port)

    def stop(self) -> None:
        if self.is_running():
            subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                                     "fast", "-w", "-t", "30", "stop"),
                           capture_output=True, timeout=60)
            log.info("database.stopped", port=self.port)

    def psql(self, sql: str, db: str = "postgres") -> str:
        result = self._run(str(self.bin / "psql"), "-h", str(self.socket_dir), "-p",
                           str(self.port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
                           "-Atc", sql)
        return result.stdout

    def ensure_database(self, name: str, user: str, password: str) -> DatabaseEndpoint:
        quoted = password.replace("'", "''")
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'").strip()
        verb = "ALTER" if exists else "CREATE"
        self.psql(f"{verb} ROLE \"{user}\" LOGIN PASSWORD '{quoted}'")
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
            self.psql(f'CREATE DATABASE "{name}" OWNER "{user}"')
        return DatabaseEndpoint(port=self.port, name=name, user=user, password=password)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

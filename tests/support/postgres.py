"""A throwaway PostgreSQL server on 127.0.0.1 for tests, bounded in time.

As strict as RDS for PostgreSQL 15+ and the local cloud's: TCP connections need TLS
(``hostssl`` only, a self-signed certificate), so a client that forgets SSL fails here too.

Uses the Debian ``postgresql`` package (``/usr/lib/postgresql/<v>/bin``). PostgreSQL refuses
to run as root, so as root the server runs as the ``postgres`` user, in a data directory
under the system temp dir that user can reach (pytest's own temp dirs are root-only).

    with PostgresServer() as pg:
        env = pg.etherpad_env()     # DB_TYPE, DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

STARTUP_TIMEOUT_S = 30


def pg_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if versions:
        return versions[0].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    def __init__(self, *, user: str = "etherpad", password: str = "pad-secret-7f3",
                 database: str = "etherpad") -> None:
        bin_dir = pg_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = bin_dir
        self.user, self.password, self.database = user, password, database
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.host = "127.0.0.1"
        self.port = 0
        self.dir: Path | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        self.dir = Path(tempfile.mkdtemp(prefix="deployer-test-pg-"))
        os.chmod(self.dir, 0o755)
        (self.dir / "run").mkdir()
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            for path in (self.dir, self.dir / "run"):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=peer",
                 "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        self._require_tls()
        # A port picked free can be taken before the server binds it: try a few.
        for attempt in range(3):
            self.port = free_port()
            try:
                self._pg_start()
                break
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
        quoted = self.password.replace("'", "''")
        self.psql(f"CREATE ROLE \"{self.user}\" LOGIN PASSWORD '{quoted}'")
        self.psql(f'CREATE DATABASE "{self.database}" OWNER "{self.user}"')
        return self

    def _require_tls(self) -> None:
        """A self-signed certificate, ``ssl = on``, and no plain TCP entry in pg_hba.conf."""
        key, cert = self.data / "server.key", self.data / "server.crt"
        subprocess.run(self._cmd_any("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                     "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                                     "-subj", "/CN=127.0.0.1", "-addext",
                                     "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                                     "-out", str(cert)),
                       capture_output=True, check=True, timeout=30, cwd="/")
        os.chmod(key, 0o600)
        owner = self.run_as or pwd.getpwuid(os.geteuid()).pw_name
        files = {"pg_hba.conf": "local all postgres peer map=owner\n"
                                "hostssl all all 127.0.0.1/32 scram-sha-256\n",
                 "pg_ident.conf": f"owner {owner} postgres\n"}
        for name, text in files.items():
            (self.data / name).write_text(text)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("ssl = on\n")

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate (its own CA), for verify-full clients."""
        return self.data / "server.crt"

    def stop(self) -> None:
        if self.dir is None:
            return
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w",
                                     "-t", "20", "stop"), capture_output=True, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def pause(self) -> None:
        """Stop the server and keep its data (a database restart, first half)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "20", "stop")

    def resume(self) -> None:
        """Start the paused server again on the same port with the same data."""
        if not (self.data / "postmaster.pid").exists():
            self._pg_start()

    def _pg_start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir / 'run'} -c listen_addresses=127.0.0.1 "
                "-c fsync=off")
        self._pg("pg_ctl", "-D", str(self.data), "-o", opts, "-w", "-t",
                 str(STARTUP_TIMEOUT_S), "-l", str(self.dir / "postgres.log"), "start",
                 timeout=STARTUP_TIMEOUT_S + 10)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use --------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        assert self.dir is not None, "server not started"
        return self.dir / "data"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._pg("psql", "-h", str(self.dir / "run"), "-p", str(self.port),
                          "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                          "-Atc", sql)
        return result.stdout

    def etherpad_env(self) -> dict[str, str]:
        """The environment start-etherpad.sh reads to use this server."""
        return {"DB_TYPE": "postgres", "DB_HOST": self.host, "DB_PORT": str(self.port),
                "DB_NAME": self.database, "DB_USER": self.user, "DB_PASSWORD": self.password}

    # -- helpers ----------------------------------------------------------------------------
    def _cmd(self, program: str, *args: str) -> list[str]:
        return self._cmd_any(str(self.bin / program), *args)

    def _cmd_any(self, program: str, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, program, *args]

    def _pg(self, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self._cmd(program, *args), capture_output=True, text=True,
                              timeout=timeout, check=True, cwd="/")

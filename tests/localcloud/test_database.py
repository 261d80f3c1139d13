"""The environment's database across an upgrade of deployer: no pad is left behind.

An older deployer, as root, kept each environment's cluster at a predictable place in the
system temp dir (``deployer-db-<key>/<stack>``), trusted every local user on its socket and
accepted plain TCP. The new one moves such a cluster (verifiably the postgres user's) into
its private place and makes it as strict as RDS, pads and all.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from deployer.localcloud.database import PostgresServer
from tests.support.postgres import free_port, pg_bin

pytestmark = pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed")
PASSWORD = "upgrade-test-pw-77"


def as_postgres(*cmd: str, stdin: str | None = None) -> str:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True,
                          text=True, check=True, timeout=90, cwd="/", input=stdin).stdout


def make_legacy_cluster(home: Path, stack: str, port: int) -> Path:
    """What the older deployer made: a root 0755 base, a postgres cluster, trust, running."""
    key = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) / f"deployer-db-{key}"
    legacy = base / stack
    (legacy / "run").mkdir(parents=True)
    os.chmod(base, 0o755)
    account = pwd.getpwnam("postgres")
    for path in (legacy, legacy / "run"):
        os.chown(path, account.pw_uid, account.pw_gid)
    as_postgres(str(pg_bin() / "initdb"), "-D", str(legacy / "data"), "-U", "postgres",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
    as_postgres(str(pg_bin() / "pg_ctl"), "-D", str(legacy / "data"), "-o",
                f"-p {port} -k {legacy / 'run'} -c listen_addresses=127.0.0.1", "-w",
                "-l", str(legacy / "postgres.log"), "start")
    psql = [str(pg_bin() / "psql"), "-X", "-h", str(legacy / "run"), "-p", str(port), "-U",
            "postgres", "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"]
    as_postgres(*psql, stdin=f"CREATE ROLE etherpad LOGIN PASSWORD '{PASSWORD}';"
                             "CREATE DATABASE etherpad OWNER etherpad;")
    as_postgres(*psql[:-2], "-d", "etherpad", "-f", "-",
                stdin="CREATE TABLE store (key text, value text);"
                      "INSERT INTO store VALUES ('pad:kept', 'written before the upgrade');")
    return legacy


@pytest.mark.skipif(os.geteuid() != 0, reason="the older layout was root's only")
def test_an_older_deployers_cluster_is_moved_in_with_its_pads(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    port = free_port()
    legacy = make_legacy_cluster(home, "etherpad-upgrade", port)
    server = PostgresServer(home, "etherpad-upgrade", port)
    try:
        server.start()
        assert not legacy.exists()
        assert server.data.is_dir() and server.is_running()
        value = server.psql("SELECT value FROM store WHERE key = 'pad:kept'", db="etherpad")
        assert value.strip() == "written before the upgrade"
        conninfo = f"host=127.0.0.1 port={port} user=etherpad dbname=etherpad connect_timeout=5"
        env = {"PGPASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
        plain = subprocess.run([str(pg_bin() / "psql"), "-X", "-w", "-d",
                                conninfo + " sslmode=disable", "-c", "SELECT 1"],
                               capture_output=True, text=True, env=env, timeout=30)
        assert plain.returncode != 0 and "no encryption" in plain.stderr
        tls = subprocess.run([str(pg_bin() / "psql"), "-X", "-w", "-d",
                              conninfo + " sslmode=require", "-c", "SELECT 1"],
                             capture_output=True, text=True, env=env, timeout=30)
        assert tls.returncode == 0, tls.stderr
    finally:
        server.destroy()
        shutil.rmtree(legacy.parent, ignore_errors=True)


def test_a_running_server_is_made_strict_again_when_adopted(tmp_path):
    """A supervisor that finds its database running (started by an earlier one, perhaps of an
    older deployer, perhaps with pg_hba.conf changed since) rewrites who may connect and
    reloads: plain TCP is refused again without a restart."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    server = PostgresServer(home, "etherpad-adopted", free_port())
    try:
        server.start()
        server.ensure_database("etherpad", "etherpad", PASSWORD)
        hba = server.data / "pg_hba.conf"
        hba.write_text("host all all 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        server._run(str(server.bin / "pg_ctl"), "-D", str(server.data), "reload")
        conninfo = (f"host=127.0.0.1 port={server.port} user=etherpad dbname=etherpad "
                    "sslmode=disable connect_timeout=5")

        def plain() -> subprocess.CompletedProcess:
            return subprocess.run([str(pg_bin() / "psql"), "-X", "-w", "-d", conninfo, "-c",
                                   "SELECT 1"], capture_output=True, text=True, timeout=30,
                                  env={"PGPASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"})

        assert plain().returncode == 0  # the tampered file let it in
        pid = (server.data / "postmaster.pid").read_text().split()[0]
        PostgresServer(home, "etherpad-adopted", server.port).start()
        assert (server.data / "postmaster.pid").read_text().split()[0] == pid  # no restart
        refused = plain()
        assert refused.returncode != 0 and "no encryption" in refused.stderr
    finally:
        server.destroy()

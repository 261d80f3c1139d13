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
import sys
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


SYSTEM_PYTHON = Path("/usr/bin/python3")
SITE = Path(__file__).resolve().parents[2] / ".venv" / "lib" / (
    f"python{sys.version_info[0]}.{sys.version_info[1]}") / "site-packages"


def nobody_can_run_deployer() -> bool:
    if os.geteuid() != 0 or not SYSTEM_PYTHON.exists() or not SITE.is_dir():
        return False
    probe = subprocess.run(["runuser", "-u", "nobody", "--", str(SYSTEM_PYTHON), "-c",
                            "import deployer.localcloud.database"], capture_output=True,
                           timeout=60, cwd="/", env=nobody_env())
    return probe.returncode == 0


def nobody_env() -> dict[str, str]:
    repo = Path(__file__).resolve().parents[2]
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp",
            "PYTHONPATH": f"{repo}:{SITE}"}


@pytest.mark.skipif(not nobody_can_run_deployer(),
                    reason="needs root, and a system python3 that can import deployer as nobody")
def test_a_data_dir_too_deep_for_a_socket_path_gets_a_private_mkdtemp_socket_dir():
    """Not root: the server runs as this user with its cluster in the data dir. A socket path
    longer than a Unix socket allows goes to a mkdtemp directory, 0700 and this user's."""
    top = Path(tempfile.mkdtemp(prefix="deployer-test-deep-"))
    try:
        os.chmod(top, 0o755)
        home = top / ("d" * 80) / "home"
        home.mkdir(parents=True)
        for path in (top / ("d" * 80), home):
            os.chown(path, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
        os.chmod(home, 0o700)
        script = f"""
import os, stat, tempfile
from pathlib import Path
from deployer.localcloud.database import PostgresServer
server = PostgresServer(Path({str(home)!r}), "etherpad-deep", {free_port()})
server.start()
try:
    st = os.lstat(server.socket_dir)
    assert server.socket_dir.parent == Path(tempfile.gettempdir()), server.socket_dir
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert server.psql("SELECT 2").strip() == "2"
    again = PostgresServer(Path({str(home)!r}), "etherpad-deep", server.port)
    again.start()  # finds the running server's socket from postmaster.pid
    assert again.socket_dir == server.socket_dir and again.psql("SELECT 3").strip() == "3"
finally:
    server.destroy()
assert not server.socket_dir.exists()
print("ok")
"""
        result = subprocess.run(["runuser", "-u", "nobody", "--", str(SYSTEM_PYTHON), "-c",
                                 script], capture_output=True, text=True, timeout=120,
                                cwd="/", env=nobody_env())
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().endswith("ok")
    finally:
        shutil.rmtree(top, ignore_errors=True)

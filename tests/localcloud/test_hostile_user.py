"""Another local user (``nobody``) against the owner's database, data dir and locks.

deployer runs as root on CI machines and shared release hosts. Each test here starts what the
owner would, as root, and attacks it as ``nobody`` (``runuser``): the database's superuser,
its directory, the data dir and the lock files must stay the owner's. The database also
refuses plain TCP connections, as RDS for PostgreSQL 15+ does. Skipped unless root.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deployer.base.errors import CloudError, ConfigError, LockedError
from deployer.base.home import check_home, deployer_home
from deployer.core.locks import EnvironmentLock
from deployer.localcloud.client import LocalCloud
from deployer.localcloud.database import PostgresServer, private_dir
from tests.support.postgres import free_port, pg_bin

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "hostile-test-pw-5e1"


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


NOBODY = _nobody()
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="attacks as another user need root"),
    pytest.mark.skipif(NOBODY is None or shutil.which("runuser") is None,
                       reason="needs the nobody user and runuser"),
]
needs_postgres = pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed")


def as_nobody(*cmd: str, env: dict[str, str] | None = None,
              timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "nobody", "--", *cmd], capture_output=True,
                          text=True, timeout=timeout, cwd="/", env=env)


def psql_tcp(port: int, user: str, sslmode: str, *, password: str | None = None,
             attacker: bool = False) -> subprocess.CompletedProcess:
    """One query over TCP; ``-w``: never prompt for a password."""
    conninfo = (f"host=127.0.0.1 port={port} user={user} dbname=etherpad sslmode={sslmode} "
                "connect_timeout=5")
    cmd = [str(pg_bin() / "psql"), "-X", "-w", "-At", "-d", conninfo, "-c",
           "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **({"PGPASSWORD": password} if password else {})}
    if attacker:
        return as_nobody(*cmd, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env, cwd="/")


@pytest.fixture
def shared_tmp():
    """A directory nobody may enter (pytest's own temp dirs are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="deployer-test-hostile-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wait_until(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile-db-home")
    server = PostgresServer(home, "etherpad-hostile", free_port())
    server.start()
    server.ensure_database("etherpad", "etherpad", PASSWORD)
    yield server
    server.destroy()


# -- the database ------------------------------------------------------------------------------
@needs_postgres
def test_nobody_cannot_reach_the_superuser_over_the_socket(database: PostgresServer):
    st = os.lstat(database.socket_dir)
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == database.uid != 0
    result = as_nobody(str(pg_bin() / "psql"), "-X", "-w", "-h", str(database.socket_dir),
                       "-p", str(database.port), "-U", "postgres", "-d", "etherpad", "-c",
                       "DROP DATABASE etherpad")
    assert result.returncode != 0
    assert "Permission denied" in result.stderr
    assert database.psql("SELECT datname FROM pg_database WHERE datname = 'etherpad'",
                         ).strip() == "etherpad"


@needs_postgres
def test_nobody_cannot_log_in_over_tcp_as_the_superuser_or_without_the_password(
        database: PostgresServer):
    superuser = psql_tcp(database.port, "postgres", "require", attacker=True)
    assert superuser.returncode != 0
    assert 'pg_hba.conf rejects connection for host "127.0.0.1", user "postgres"' in \
        superuser.stderr
    guessed = psql_tcp(database.port, "etherpad", "require", password="guess", attacker=True)
    assert guessed.returncode != 0
    assert "password authentication failed" in guessed.stderr


@needs_postgres
def test_a_plain_tcp_connection_is_refused_as_rds_refuses_it(database: PostgresServer):
    plain = psql_tcp(database.port, "etherpad", "disable", password=PASSWORD)
    assert plain.returncode != 0
    assert "no encryption" in plain.stderr
    tls = psql_tcp(database.port, "etherpad", "require", password=PASSWORD)
    assert tls.returncode == 0, tls.stderr
    assert tls.stdout.strip() == "t"  # this session is encrypted


@needs_postgres
def test_the_password_is_never_on_a_command_line(tmp_path, monkeypatch):
    """Every PostgreSQL program the server is driven with logs its argv: no password in it."""
    wrappers = Path(tempfile.mkdtemp(prefix="deployer-test-pgbin-"))
    try:
        os.chmod(wrappers, 0o755)
        argv_log = wrappers / "argv.log"
        argv_log.touch()
        os.chmod(argv_log, 0o666)  # the programs run as postgres
        for program in ("initdb", "pg_ctl", "psql", "postgres"):
            wrapper = wrappers / program
            wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "{program} $*" >> {argv_log}\n'
                               f'exec {pg_bin() / program} "$@"\n')
            wrapper.chmod(0o755)
        monkeypatch.setenv("DEPLOYER_PG_BIN", str(wrappers))
        home = tmp_path / "home"
        home.mkdir(mode=0o700)
        server = PostgresServer(home, "etherpad-argv", free_port())
        try:
            server.start()
            server.ensure_database("etherpad", "etherpad", "first-" + PASSWORD)
            server.ensure_database("etherpad", "etherpad", PASSWORD)  # ALTER ROLE this time
            logged = argv_log.read_text()
            assert "psql " in logged and "initdb " in logged
            assert PASSWORD not in logged
            assert psql_tcp(server.port, "etherpad", "require", password=PASSWORD
                            ).returncode == 0
        finally:
            server.destroy()
    finally:
        shutil.rmtree(wrappers, ignore_errors=True)


@needs_postgres
def test_nobody_cannot_pre_plant_the_database_directory(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    server = PostgresServer(home, "etherpad-planted", free_port())
    # The old, predictable place in the system temp dir, made first by nobody: a symlink to
    # a directory of root's and a PG_VERSION that once skipped initdb.
    victim = Path(tempfile.mkdtemp(prefix="deployer-test-victim-"))
    key = server.chain[-1].name
    old_base = Path(tempfile.gettempdir()) / f"deployer-db-{key}"
    try:
        assert as_nobody("mkdir", "-p", str(old_base)).returncode == 0
        assert as_nobody("ln", "-s", str(victim), str(old_base / server.dir.name)
                         ).returncode == 0
        (victim / "PG_VERSION").write_text("15\n")
        # Where the cluster does live nobody can make anything.
        planted = as_nobody("mkdir", "-p", str(server.dir / "data"))
        assert planted.returncode != 0 and "Permission denied" in planted.stderr
        server.start()
        try:
            assert server.is_running()
            assert os.lstat(victim).st_uid == 0  # never chowned to postgres
            assert os.lstat(server.data).st_uid == server.uid
            for path in [*server.chain, server.dir, server.data]:
                st = os.lstat(path)
                assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700, path
        finally:
            server.destroy()
    finally:
        shutil.rmtree(old_base, ignore_errors=True)
        shutil.rmtree(victim, ignore_errors=True)


@needs_postgres
def test_a_database_directory_not_made_by_deployer_is_refused_and_left_alone(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    server = PostgresServer(home, "etherpad-foreign", free_port())
    victim = Path(tempfile.mkdtemp(prefix="deployer-test-victim-"))
    try:
        for path in server.chain:  # the base, as deployer makes it
            private_dir(path, server.uid, server.gid)
        server.dir.symlink_to(victim)
        with pytest.raises(CloudError, match="is a symlink"):
            server.start()
        assert os.lstat(victim).st_uid == 0
        server.dir.unlink()
        private_dir(server.dir, server.uid, server.gid)

        # A data dir with a cluster in it, but someone else's: initdb is not skipped for it,
        # nothing is chowned, no server starts on it.
        server.data.mkdir(parents=True)
        (server.data / "PG_VERSION").write_text("15\n")
        os.chown(server.data, NOBODY.pw_uid, NOBODY.pw_gid)
        with pytest.raises(CloudError, match=f"is owned by uid {NOBODY.pw_uid}") as refused:
            server.start()
        assert "\n" not in str(refused.value)
        assert os.lstat(server.data).st_uid == NOBODY.pw_uid
        assert not server.is_running()
    finally:
        server.destroy()
        shutil.rmtree(victim, ignore_errors=True)


# -- the data dir ------------------------------------------------------------------------------
def deployer_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployer", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "DEPLOYER_HOME": str(home)})


def test_the_data_dir_is_created_owner_only(tmp_path, monkeypatch):
    home = tmp_path / "fresh" / "deployer"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    assert deployer_home() == home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_a_data_dir_others_may_write_is_refused_before_it_is_read(shared_tmp):
    """nobody plants a supervisor.json in a world-writable data dir: deployer refuses the dir
    with one line and never reads it."""
    home = shared_tmp / "shared"
    home.mkdir()
    os.chmod(home, 0o777)
    assert as_nobody("mkdir", str(home / "localcloud")).returncode == 0
    planted = json.dumps({"pid": 1, "url": "http://127.0.0.1:9/"})
    assert as_nobody("sh", "-c", f"echo '{planted}' > {home}/localcloud/supervisor.json"
                     ).returncode == 0
    result = deployer_cli(home, "status")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"the data dir {home} is writable by group or others (mode 777)" in lines[0]
    assert f"chmod 700 {home}" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_data_dir_of_another_user_is_refused(tmp_path):
    home = tmp_path / "theirs"
    home.mkdir(mode=0o700)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(ConfigError, match=f"owned by uid {NOBODY.pw_uid}, not by you"):
        check_home(home)
    result = deployer_cli(home, "status")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"owned by uid {NOBODY.pw_uid}" in result.stderr


def test_the_supervisor_pid_is_trusted_only_when_it_is_our_supervisor(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    info_file = home / "localcloud" / "supervisor.json"
    info_file.parent.mkdir()
    # A command line like the supervisor's: sh -c '...' -m deployer.localcloud.supervisor ...
    looks_like = ["sh", "-c", "sleep 60; true", "-m", "deployer.localcloud.supervisor",
                  "--home", str(home)]
    theirs = subprocess.Popen(["runuser", "-u", "nobody", "--", *looks_like], cwd="/",
                              start_new_session=True)
    ours = subprocess.Popen(looks_like, cwd="/", start_new_session=True)
    try:
        def trusted(pid: int) -> bool:
            info_file.write_text(json.dumps({"pid": pid, "url": "http://127.0.0.1:9/",
                                             "token": "t0ken"}))
            info_file.chmod(0o600)
            return LocalCloud(home).supervisor_info() is not None

        assert not trusted(os.getpid())  # alive, ours, but no supervisor (a reused pid)
        # runuser's child is the python process: its pid is the one a planted file names.
        def nobodys() -> list[str]:
            return subprocess.run(["pgrep", "-u", "nobody", "-f", str(home)],
                                  capture_output=True, text=True).stdout.split()

        wait_until(lambda: bool(nobodys()), "nobody's look-alike to start")
        theirs_pid = int(nobodys()[0])
        assert not trusted(theirs_pid)  # looks like one, but another user's
        assert trusted(ours.pid)  # the control: ours, with our data dir
    finally:
        for process in (theirs, ours):
            os.killpg(process.pid, signal.SIGKILL)  # the shell and its sleep
            process.wait(timeout=10)


# -- lock files --------------------------------------------------------------------------------
def test_nobody_cannot_hold_a_lock_file(shared_tmp, monkeypatch):
    home = shared_tmp / "home"
    home.mkdir(mode=0o755)  # traversable (not writable) by others: the file's mode decides
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    lock = EnvironmentLock("packer")
    lock.acquire("release")
    lock.release()
    st = os.lstat(lock.path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(lock.path.parent).st_mode) == 0o700
    os.chmod(lock.path.parent, 0o755)  # even when the directory lets nobody in
    held = as_nobody("flock", "-n", "-s", str(lock.path), "true")
    assert held.returncode != 0 and "Permission denied" in held.stderr
    EnvironmentLock("packer").acquire("release")


def test_a_lock_held_by_another_user_is_refused_with_one_line(shared_tmp, monkeypatch):
    """A lock file of an older deployer (0644): nobody opened it read-only and holds it."""
    home = shared_tmp / "home"
    home.mkdir(mode=0o755)
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    path = home / "locks" / "packer.lock"
    path.parent.mkdir(mode=0o755)
    path.write_text("")
    os.chmod(path, 0o644)
    holder = subprocess.Popen(["runuser", "-u", "nobody", "--", "flock", "-s", str(path),
                               "sleep", "60"], cwd="/", start_new_session=True)
    try:
        wait_until(lambda: as_nobody("flock", "-n", "-x", str(path), "true").returncode != 0,
                   "nobody to hold the lock")
        with pytest.raises(LockedError) as refused:
            EnvironmentLock("packer").acquire("release")
        message = str(refused.value)
        assert "\n" not in message
        assert f"of uid {NOBODY.pw_uid}, another user: no deployer run of yours" in message
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # nobody cannot open it again
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # runuser, flock and its sleep
        holder.wait(timeout=10)


def test_a_lock_file_another_user_made_is_refused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    path = home / "locks" / "packer.lock"
    path.parent.mkdir(mode=0o700)
    path.write_text("")
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(LockedError, match=f"belongs to uid {NOBODY.pw_uid}, not to you"):
        EnvironmentLock("packer").acquire("release")


def test_the_supervisor_refuses_a_lock_file_of_another_user(tmp_path):
    home = tmp_path / "home"
    lock = home / "localcloud" / "supervisor.lock"
    lock.parent.mkdir(parents=True, mode=0o700)
    os.chmod(home, 0o700)
    lock.write_text("")
    os.chown(lock, NOBODY.pw_uid, NOBODY.pw_gid)
    result = subprocess.run([sys.executable, "-m", "deployer.localcloud.supervisor", "--home",
                             str(home)], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.strip() == f"deployer-supervisor: error: {lock} belongs to uid " \
                                    f"{NOBODY.pw_uid}"

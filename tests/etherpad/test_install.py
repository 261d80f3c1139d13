"""The installer and run scripts in etherpad/bin, and a real Etherpad 1.8.14 on PostgreSQL."""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deployer.base.errors import SourceError
from deployer.etherpad import install_release, read_install, resolve_source, script_path
from deployer.measure.poller import HealthPoller
from deployer.measure.versions import EtherpadVersion
from tests.support.etherpad import EtherpadRun, make_release_repo, tiny_etherpad
from tests.support.postgres import free_port
from tests.support.scripted_server import ScriptedServer


def installer(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(script_path("install-etherpad.sh")), *args],
                          env={**os.environ, "ETHERPAD_HOME": str(home), **env},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": error: " in line]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    repo = tmp_path_factory.mktemp("install") / "mirror"
    commits = make_release_repo(repo, {"1.8.17": tiny_etherpad, "1.8.18": tiny_etherpad})
    return repo, commits


@pytest.fixture
def fake_install(tmp_path) -> Path:
    """Enough of an install for the start script's checks and settings (node never runs)."""
    home = tmp_path / "etherpad"
    tiny_etherpad(home, "1.8.14")
    return home


# -- installer: fetching and verifying (--fetch-only: no npm) --------------------------------
def test_fetch_only_from_a_mirror_keeps_git_and_records_the_release(mirror, tmp_path):
    repo, commits = mirror
    home = tmp_path / "opt" / "etherpad"
    result = installer(home, "--fetch-only", ETHERPAD_RELEASE="1.8.18", ETHERPAD_SOURCE=str(repo),
                       ETHERPAD_COMMIT=commits["1.8.18"][:7])
    assert result.returncode == 0, result.stderr
    assert (home / "RELEASE").read_text() == "1.8.18\n"
    assert (home / ".git" / "HEAD").read_text().strip() == commits["1.8.18"]
    assert (home / "deployer" / "bin" / "start-etherpad.sh").is_file()
    assert (home / "deployer" / "settings.json.template").is_file()
    assert (home / "deployer" / "plugin" / "ep_deployer_release" / "ep.json").is_file()
    manifest = json.loads((home / ".deployer-install.json").read_text())
    assert manifest["release"] == "1.8.18" and manifest["commit"] == commits["1.8.18"]
    assert manifest["from_cache"] is False
    assert [p.name for p in home.parent.iterdir()] == ["etherpad"]  # no staging left behind


def test_installer_refuses_a_commit_that_is_not_the_release(mirror, tmp_path):
    repo, commits = mirror
    home = tmp_path / "etherpad"
    result = installer(home, "--fetch-only", ETHERPAD_RELEASE="1.8.17", ETHERPAD_SOURCE=str(repo))
    assert result.returncode == 1
    assert error_lines(result) == [
        f"install-etherpad.sh: error: tag 1.8.17 of file://{repo.resolve()} is commit "
        f"{commits['1.8.17'][:12]}, expected c85ab49 for release 1.8.17 (use the real "
        "ether/etherpad-lite history, or ETHERPAD_COMMIT=any to skip the check)"]
    assert not home.exists()


def test_installer_lists_the_tags_of_a_mirror(mirror, tmp_path):
    repo, _ = mirror
    result = installer(tmp_path / "etherpad", "--fetch-only", ETHERPAD_RELEASE="1.9.0",
                       ETHERPAD_SOURCE=repo.as_uri())
    assert result.returncode == 1
    assert "has no tag 1.9.0 (its tags: 1.8.17 1.8.18)" in error_lines(result)[0]


def test_installer_fails_fast_when_github_is_out_of_reach(tmp_path):
    started = time.monotonic()
    result = installer(tmp_path / "etherpad", "--fetch-only", ETHERPAD_RELEASE="1.8.18",
                       ETHERPAD_GITHUB_URL=f"https://127.0.0.1:{free_port()}/ether/etherpad-lite.git")
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    [line] = error_lines(result)
    assert "cannot reach 127.0.0.1:" in line
    assert "ETHERPAD_SOURCE=npm with ETHERPAD_RELEASE=1.8.14" in line


def test_installer_needs_a_release(tmp_path):
    result = installer(tmp_path / "etherpad", ETHERPAD_RELEASE="")
    assert result.returncode == 1
    assert "ETHERPAD_RELEASE is not set" in error_lines(result)[0]


def test_installer_never_replaces_a_directory_that_is_not_an_install(mirror, tmp_path):
    repo, _commits = mirror
    home = tmp_path / "home"
    home.mkdir()
    (home / "precious.txt").write_text("keep me")
    result = installer(home, "--fetch-only", ETHERPAD_RELEASE="1.8.18", ETHERPAD_SOURCE=str(repo),
                       ETHERPAD_COMMIT="any")
    assert result.returncode == 1
    assert "is not empty and holds no Etherpad install" in error_lines(result)[0]
    assert (home / "precious.txt").read_text() == "keep me"


def test_a_new_release_replaces_the_old_one_and_keeps_data_and_keys(mirror, tmp_path):
    repo, commits = mirror
    home = tmp_path / "etherpad"
    env = {"ETHERPAD_SOURCE": str(repo), "ETHERPAD_COMMIT": "any"}
    assert installer(home, "--fetch-only", ETHERPAD_RELEASE="1.8.17", **env).returncode == 0
    (home / "var" / "dirty.db").write_text("pads")
    (home / "var" / "minified_abc").write_text("stale")
    (home / "APIKEY.txt").write_text("the-key")
    result = installer(home, "--fetch-only", ETHERPAD_RELEASE="1.8.18", **env)
    assert result.returncode == 0, result.stderr
    assert (home / "RELEASE").read_text() == "1.8.18\n"
    assert (home / ".git" / "HEAD").read_text().strip() == commits["1.8.18"]
    assert (home / "var" / "dirty.db").read_text() == "pads"
    assert (home / "APIKEY.txt").read_text() == "the-key"
    assert not (home / "var" / "minified_abc").exists()


def test_installer_refuses_while_etherpad_runs(mirror, tmp_path):
    repo, _ = mirror
    home = tmp_path / "etherpad"
    env = {"ETHERPAD_SOURCE": str(repo), "ETHERPAD_COMMIT": "any"}
    assert installer(home, "--fetch-only", ETHERPAD_RELEASE="1.8.17", **env).returncode == 0
    running = subprocess.Popen(["bash", "-c", "exec -a server.js sleep 30"])
    try:
        (home / "var" / "etherpad.pid").write_text(f"{running.pid}\n")
        time.sleep(0.1)
        result = installer(home, "--fetch-only", ETHERPAD_RELEASE="1.8.18", **env)
        assert result.returncode == 1
        assert f"Etherpad is running from {home} (pid {running.pid})" in error_lines(result)[0]
    finally:
        running.kill()
        running.wait()


def test_installer_takes_a_release_directory_and_a_tarball(tmp_path):
    tiny_etherpad(tmp_path / "release", "1.8.14")
    result = installer(tmp_path / "a", "--fetch-only", ETHERPAD_RELEASE="1.8.14",
                       ETHERPAD_SOURCE=str(tmp_path / "release"))
    assert result.returncode == 0, result.stderr
    subprocess.run(["tar", "-czf", str(tmp_path / "r.tgz"), "-C", str(tmp_path), "release"],
                   check=True)
    result = installer(tmp_path / "b", "--fetch-only", ETHERPAD_RELEASE="1.8.14",
                       ETHERPAD_SOURCE=str(tmp_path / "r.tgz"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b" / "src" / "package.json").is_file()
    result = installer(tmp_path / "c", "--fetch-only", ETHERPAD_RELEASE="1.8.18",
                       ETHERPAD_SOURCE=str(tmp_path / "r.tgz"))
    assert "holds Etherpad 1.8.14, not 1.8.18" in error_lines(result)[0]


def test_install_release_maps_installer_errors_to_source_errors(mirror, tmp_path):
    repo, _ = mirror
    with pytest.raises(SourceError) as err:
        install_release("1.8.17", resolve_source(str(repo)), tmp_path / "etherpad")
    assert str(err.value).startswith(f"tag 1.8.17 of file://{repo.resolve()} is commit ")
    assert "\n" not in str(err.value)


# -- start, stop, wait: settings and guards (node never starts) --------------------------------
def settings_for(home: Path, **env: str) -> dict:
    run = EtherpadRun(home, env=env)
    result = run.script("start-etherpad.sh", "--write-settings-only")
    assert result.returncode == 0, result.stderr
    return json.loads((home / "settings.json").read_text())


def test_settings_keep_secrets_out_of_the_file(fake_install):
    settings = settings_for(fake_install, DB_PASSWORD="s3cret-pw", DB_TYPE="postgres")
    text = (fake_install / "settings.json").read_text()
    assert "s3cret-pw" not in text
    assert settings["dbType"] == "${DB_TYPE:postgres}"
    assert settings["dbSettings"]["password"] == "${DB_PASSWORD:}"
    assert settings["ip"] == "${ETHERPAD_IP:127.0.0.1}"
    assert settings["port"] == "${ETHERPAD_PORT:9001}"
    assert settings["exposeVersion"] is True
    assert settings["skinName"] == "colibris"
    assert stat.S_IMODE((fake_install / "settings.json").stat().st_mode) == 0o600
    for key in ("APIKEY.txt", "SESSIONKEY.txt"):
        assert len((fake_install / key).read_text()) == 64
        assert stat.S_IMODE((fake_install / key).stat().st_mode) == 0o600


def test_a_password_etherpad_would_turn_into_a_number_is_written_as_a_string(fake_install):
    settings = settings_for(fake_install, DB_PASSWORD="123456")
    assert settings["dbSettings"]["password"] == "123456"


def test_postgres_settings_ask_for_tls_by_default(fake_install, tmp_path):
    """RDS for PostgreSQL 15+ refuses plain connections: TLS unless told otherwise."""
    assert settings_for(fake_install)["dbSettings"]["ssl"] == {"rejectUnauthorized": False}
    assert "ssl" not in settings_for(fake_install, DB_SSL="disable")["dbSettings"]
    assert "ssl" not in settings_for(fake_install, DB_TYPE="mysql")["dbSettings"]
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    verified = settings_for(fake_install, DB_SSL="verify-full", DB_SSL_ROOT_CERT=str(ca))
    assert verified["dbSettings"]["ssl"] == {"rejectUnauthorized": True, "ca": ca.read_text()}
    for env, message in [({"DB_SSL": "prefer"}, "DB_SSL=prefer is not supported"),
                         ({"DB_SSL": "verify-full"}, "DB_SSL=verify-full needs DB_SSL_ROOT_CERT")]:
        result = EtherpadRun(fake_install, env=env).script("start-etherpad.sh",
                                                           "--write-settings-only")
        assert result.returncode == 1
        assert message in result.stderr


def test_dirty_settings_point_at_the_install(fake_install):
    settings = settings_for(fake_install, DB_TYPE="dirty")
    assert settings["dbType"] == "dirty"
    assert settings["dbSettings"] == {"filename": str(fake_install / "var" / "dirty.db")}


def test_secrets_come_from_ssm_parameters(fake_install, tmp_path):
    bin_dir = tmp_path / "fake-aws"
    bin_dir.mkdir()
    calls = tmp_path / "aws-calls"
    aws = bin_dir / "aws"
    # A stand-in aws CLI: records its arguments, answers a value per parameter name.
    aws.write_text(f"""#!/bin/sh
echo "$*" >> {calls}
case "$*" in
  *--name\\ /etherpad/db*) echo 987654 ;;
  *--name\\ /etherpad/apikey*) echo api-key-from-ssm ;;
  *) exit 254 ;;
esac
""")
    aws.chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    settings = settings_for(fake_install, PATH=path, DB_PASSWORD_PARAMETER="/etherpad/db",
                            ETHERPAD_APIKEY_PARAMETER="/etherpad/apikey")
    assert settings["dbSettings"]["password"] == "987654"
    assert (fake_install / "APIKEY.txt").read_text() == "api-key-from-ssm"
    assert ("ssm get-parameter --name /etherpad/db --with-decryption --query Parameter.Value "
            "--output text") in calls.read_text()
    failed = EtherpadRun(fake_install, env={"PATH": path, "DB_PASSWORD_PARAMETER": "/other"}
                         ).script("start-etherpad.sh", "--write-settings-only")
    assert failed.returncode == 1
    assert "cannot read SSM parameter /other" in failed.stderr


def test_generated_keys_are_kept_across_starts(fake_install):
    settings_for(fake_install)
    first = (fake_install / "SESSIONKEY.txt").read_text()
    settings_for(fake_install)
    assert (fake_install / "SESSIONKEY.txt").read_text() == first
    settings_for(fake_install, ETHERPAD_SESSIONKEY="shared-by-all-instances")
    assert (fake_install / "SESSIONKEY.txt").read_text() == "shared-by-all-instances"


def test_unsupported_database_type_is_refused(fake_install):
    result = EtherpadRun(fake_install, env={"DB_TYPE": "sqlite"}).script("start-etherpad.sh")
    assert result.returncode == 1
    assert "DB_TYPE=sqlite is not supported (use postgres, mysql or dirty)" in result.stderr


def test_start_refuses_a_port_in_use(fake_install):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        run = EtherpadRun(fake_install, port=taken.getsockname()[1])
        result = run.script("start-etherpad.sh")
    assert result.returncode == 1
    assert f"port {run.port} on 127.0.0.1 is already in use" in result.stderr
    assert not (fake_install / "var" / "etherpad.pid").exists()


def test_start_gives_up_on_a_database_that_never_answers(fake_install):
    run = EtherpadRun(fake_install, env={"DB_TYPE": "postgres", "DB_HOST": "127.0.0.1",
                                         "DB_PORT": str(free_port()), "DB_WAIT_S": "2"})
    started = time.monotonic()
    result = run.script("start-etherpad.sh")
    assert time.monotonic() - started >= 2
    assert result.returncode == 1
    assert "did not accept connections within 2 s" in result.stderr
    assert not (fake_install / "var" / "etherpad.pid").exists()


def test_start_waits_for_a_database_that_is_still_starting(fake_install):
    """An instance booting while the database restarts must not start Etherpad into it."""
    port = free_port()
    database = socket.socket()
    database.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def come_up() -> None:
        time.sleep(1.5)
        database.bind(("127.0.0.1", port))
        database.listen(8)

    opener = threading.Thread(target=come_up)
    opener.start()
    try:
        run = EtherpadRun(fake_install, env={"DB_TYPE": "postgres", "DB_HOST": "127.0.0.1",
                                             "DB_PORT": str(port), "DB_WAIT_S": "20"})
        result = run.script("start-etherpad.sh")
    finally:
        opener.join()
        database.close()
    assert result.returncode == 0, result.stderr
    assert f"waiting for the database at 127.0.0.1:{port}" in result.stderr
    assert f"the database at 127.0.0.1:{port} accepts connections after" in result.stderr
    assert "started Etherpad " in result.stderr


def test_database_wait_must_be_a_number(fake_install):
    result = EtherpadRun(fake_install, env={"DB_WAIT_S": "soon"}).script("start-etherpad.sh")
    assert result.returncode == 1
    assert "DB_WAIT_S=soon is not a whole number of seconds" in result.stderr


def test_start_without_an_install_says_what_to_do(tmp_path):
    result = EtherpadRun(tmp_path / "nothing").script("start-etherpad.sh")
    assert result.returncode == 1
    assert "no Etherpad installed in" in result.stderr and "install-etherpad.sh" in result.stderr


def test_stop_when_nothing_runs_is_fine(fake_install):
    result = EtherpadRun(fake_install).script("stop-etherpad.sh")
    assert result.returncode == 0
    assert "not running" in result.stderr


def test_wait_healthy_accepts_200_and_checks_the_release(fake_install):
    server = ScriptedServer()
    try:
        run = EtherpadRun(fake_install, port=server.port)
        assert run.script("wait-healthy.sh", "--timeout", "5").returncode == 0
        wrong = run.script("wait-healthy.sh", "--timeout", "1", "--release", "1.8.18")
        assert wrong.returncode == 1
        assert "not healthy after 1 s" in wrong.stderr
        server.set_status(503)
        down = run.script("wait-healthy.sh", "--timeout", "1")
        assert down.returncode == 1 and "(last: HTTP 503)" in down.stderr
    finally:
        server.close()


def test_wait_healthy_notices_that_etherpad_died(fake_install):
    gone = subprocess.Popen(["true"])
    gone.wait()
    (fake_install / "var").mkdir()
    (fake_install / "var" / "etherpad.pid").write_text(f"{gone.pid}\n")
    (fake_install / "var" / "etherpad.log").write_text("Error: Cannot find module 'x'\n")
    started = time.monotonic()
    result = EtherpadRun(fake_install).script("wait-healthy.sh", "--timeout", "30")
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "Etherpad exited while starting" in result.stderr
    assert "Cannot find module 'x'" in result.stderr


# -- a real Etherpad 1.8.14 from npm -------------------------------------------------------------
@pytest.mark.slow
def test_npm_install_is_laid_out_like_a_git_checkout(npm_install):
    root = npm_install.root
    assert npm_install.release == "1.8.14" and npm_install.commit is None
    assert (root / "RELEASE").read_text() == "1.8.14\n"
    assert os.readlink(root / "node_modules" / "ep_etherpad-lite") == "../src"
    assert (root / "node_modules" / "ep_deployer_release" / "ep.json").is_file()
    assert (root / "src" / "node_modules" / "ueberdb2").is_dir()
    assert (root / "src" / "node_modules" / "pg").is_dir()
    assert not (root / "src" / "node_modules" / "sqlite3").exists()
    assert not (root / ".git").exists() and not (root / "APIKEY.txt").exists()
    assert npm_install.files > 10_000 and npm_install.size_bytes > 100_000_000


@pytest.fixture(scope="module")
def cached_copy(npm_install, release_cache, etherpad_workdir):
    """A second install of 1.8.14: from the tree cache the session install filled."""
    return install_release("1.8.14", resolve_source("npm"), etherpad_workdir / "copy",
                           cache_dir=release_cache)


@pytest.mark.slow
def test_a_second_install_of_a_release_is_a_copy_from_the_cache(npm_install, cached_copy):
    assert cached_copy.from_cache and not npm_install.from_cache
    assert cached_copy.files == npm_install.files
    recorded = read_install(cached_copy.root)
    assert (recorded.release, recorded.source, recorded.from_cache) == ("1.8.14", "npm", True)


@pytest.mark.slow
def test_etherpad_serves_its_release_from_postgres_and_keeps_pads_across_restarts(
        cached_copy, postgres):
    home = cached_copy.root
    run = EtherpadRun(home, env=postgres.etherpad_env())
    run.start(release="1.8.14")
    try:
        status, headers, _ = run.get("/")
        assert status == 200
        assert headers["x-etherpad-release"] == "1.8.14"
        assert headers["server"] == "Etherpad  (https://etherpad.org)"  # no .git: no commit
        assert EtherpadVersion().extract(status, headers) == "1.8.14"
        probes = HealthPoller(run.url, hz=10, timeout=2).run_for(1.0)
        assert probes and {(p.outcome, p.version) for p in probes} == {("ok", "1.8.14")}
        assert postgres.password not in (home / "settings.json").read_text()

        run.api("createPad", padID="deploy-check", text="written before the restart")
        run.stop()
        run.start(release="1.8.14")
        assert run.api("getText", padID="deploy-check")["text"] == "written before the restart\n"
        stored = postgres.psql("SELECT count(*) FROM store WHERE key = 'pad:deploy-check'",
                               database=postgres.database)
        assert stored.strip() == "1"
    finally:
        run.stop()
    assert not (home / "var" / "etherpad.pid").exists()


@pytest.mark.slow
def test_etherpad_checks_the_database_certificate_and_fails_without_tls(cached_copy, postgres):
    """The test database refuses plain TCP as RDS does: Etherpad told to skip TLS does not
    serve; told to verify the server's certificate, it does."""
    home = cached_copy.root
    plain = EtherpadRun(home, env={**postgres.etherpad_env(), "DB_SSL": "disable"})
    assert plain.script("start-etherpad.sh").returncode == 0
    try:
        refused = plain.script("wait-healthy.sh", "--timeout", "15", timeout=30)
        assert refused.returncode != 0
        assert "no encryption" in plain.log_tail(200)
    finally:
        plain.stop()
    verified = EtherpadRun(home, env={**postgres.etherpad_env(), "DB_SSL": "verify-full",
                                      "DB_SSL_ROOT_CERT": str(postgres.certificate)})
    verified.start(release="1.8.14")
    try:
        assert verified.get("/")[0] == 200
    finally:
        verified.stop()


@pytest.mark.slow
def test_etherpad_started_while_its_database_restarts_waits_for_it(cached_copy, postgres):
    """An instance that boots during a database restart serves once the database is back
    (Etherpad 1.8 itself exits when its first connection fails)."""
    run = EtherpadRun(cached_copy.root, env=postgres.etherpad_env())
    postgres.pause()
    comes_back = threading.Timer(3.0, postgres.resume)
    comes_back.start()
    try:
        started = run.script("start-etherpad.sh")
        assert started.returncode == 0, started.stderr
        assert "waiting for the database" in started.stderr
        run.start(release="1.8.14")  # already launched: waits until it answers
        run.api("createPad", padID="after-db-restart", text="written once the database was back")
        assert run.api("getText", padID="after-db-restart")["text"].startswith("written once")
    finally:
        comes_back.join()
        postgres.resume()
        run.stop()


@pytest.mark.slow
def test_etherpad_keeps_idle_connections_open_longer_than_node_would(cached_copy, postgres):
    """The load balancer reuses a target connection after seconds of quiet (an ALB, up to
    60 s). Node would close it after 5 s and race that request; the release plugin makes
    Etherpad wait longer (ETHERPAD_KEEPALIVE_TIMEOUT_S, 65 s)."""
    run = EtherpadRun(cached_copy.root, env=postgres.etherpad_env())
    run.start(release="1.8.14")
    conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=10)
    try:
        conn.request("GET", "/")
        first = conn.getresponse()
        first.read()
        assert first.status == 200 and first.getheader("Connection") != "close"
        sock = conn.sock
        time.sleep(6.5)
        conn.request("GET", "/")
        again = conn.getresponse()
        again.read()
        assert again.status == 200
        assert conn.sock is sock  # the same connection, still open after 6.5 s idle
    finally:
        conn.close()
        run.stop()


def test_a_bundled_tree_is_checked_only_against_an_explicit_commit(mirror, tmp_path):
    repo, commits = mirror
    tree = tmp_path / "revision" / "etherpad-lite"
    subprocess.run(["git", "clone", "--quiet", "--branch", "1.8.18", str(repo), str(tree)],
                   check=True, capture_output=True)
    (tree / "RELEASE").write_text("1.8.18\n")
    result = installer(tmp_path / "a", "--fetch-only", "--from-tree", str(tree))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "a" / ".deployer-install.json").read_text())
    assert manifest["commit"] == commits["1.8.18"]
    assert manifest["source"] == f"tree:{tree.resolve()}"
    result = installer(tmp_path / "b", "--fetch-only", "--from-tree", str(tree),
                       ETHERPAD_COMMIT="4b96ff6")
    assert result.returncode == 1
    assert "expected 4b96ff6 for release 1.8.18" in error_lines(result)[0]


def test_installer_refuses_a_hostile_source_and_runs_nothing(tmp_path):
    for spec in ("https://127.0.0.1;touch pwned;#/x.git", "--upload-pack=touch pwned;://"):
        result = subprocess.run([str(script_path("install-etherpad.sh")), "--fetch-only"],
                                env={**os.environ, "ETHERPAD_HOME": str(tmp_path / "etherpad"),
                                     "ETHERPAD_RELEASE": "1.8.18", "ETHERPAD_SOURCE": spec},
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert len(error_lines(result)) == 1, result.stderr
        assert not (tmp_path / "pwned").exists()


def test_the_reachability_probe_takes_the_host_as_data(tmp_path):
    """Past the source rule, check_reachable's host still never becomes code."""
    script = script_path("install-etherpad.sh")
    probe = (f'eval "$(sed -n "/^check_reachable()/,/^}}/p" {script})"; '
             'die() { echo "error: $*" >&2; exit 1; }; GITHUB_URL=x; '
             'check_reachable "https://127.0.0.1;touch pwned;#/x.git"')
    result = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1 and "cannot reach" in result.stderr
    assert not (tmp_path / "pwned").exists()

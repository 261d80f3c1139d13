"""A hostile local user against the local cloud's API: root runs an environment, ``nobody``
attacks it.

Every attack of issue 12's first finding is tried as ``nobody`` (``runuser``), with the
stdlib's ``http.client`` and none of deployer's code: create a stack (its user data would
run as root), copy a root-only file out through ``/artifacts``, delete the stack, shut the
supervisor down, forge a ``cfn-signal``, a browser's simple POST. Each must be refused, and
the owner's client must still work afterwards. Then what the owner's own token cannot do
(names outside the data dir, bodies that would hold a handler thread) and what an
instance's credential cannot do (anything but its own signal and target health).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from deployer.base.errors import UsageError
from deployer.localcloud.client import LocalCloud
from deployer.localcloud.compute.instances import MARKER
from tests.helpers import processes_with

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = FIXTURES / "app-stack.yaml"
APP = FIXTURES / "app.py"
STRATEGY = "fixture"
STACK = f"etherpad-{STRATEGY}"


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the attacker is another user"),
    pytest.mark.skipif(_nobody() is None or shutil.which("runuser") is None,
                       reason="needs the nobody user and runuser"),
]

# What nobody runs: one HTTP request with the stdlib, the answer as JSON on stdout.
REQUEST = r"""
import http.client, json, sys
port, method, path, body, headers = sys.argv[1:6]
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
conn.request(method, path, body=body.encode() if body else None, headers=json.loads(headers))
answer = conn.getresponse()
print(json.dumps({"status": answer.status, "body": answer.read().decode(errors="replace")}))
"""
READ = r"""
import sys
try:
    open(sys.argv[1], "rb").read()
except PermissionError:
    print("denied")
else:
    print("read")
"""
PYTHON = "/usr/bin/python3"


def as_nobody(script: str, *args: str) -> str:
    runuser = shutil.which("runuser")
    assert runuser is not None
    result = subprocess.run([runuser, "-u", "nobody", "--", PYTHON, "-c", script, *args],
                            capture_output=True, text=True, cwd="/", timeout=60,
                            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def nobody_request(port: int, method: str, path: str, body: dict | str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = json.dumps(body) if isinstance(body, dict) else (body or "")
    sent = {"Content-Type": "application/json", **(headers or {})}
    answer = json.loads(as_nobody(REQUEST, str(port), method, path, data, json.dumps(sent)))
    try:
        payload = json.loads(answer["body"])
    except ValueError:
        payload = {"raw": answer["body"]}
    return answer["status"], payload


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """One request as root, headers exactly as given."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request(method, path, body=body, headers=headers or {})
    answer = conn.getresponse()
    text = answer.read()
    conn.close()
    return answer.status, json.loads(text) if text else {}


def owner_headers(cloud: LocalCloud) -> dict[str, str]:
    info = cloud.supervisor_info()
    assert info is not None
    return {"Content-Type": "application/json", "Authorization": f"Bearer {info['token']}"}


def instance_credential(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(e.split(b"=", 1)[1].decode() for e in environ
                if e.startswith(b"DEPLOYER_INSTANCE_TOKEN="))


@pytest.fixture(scope="module")
def env():
    """An environment of the stand-in app, run by root in a data dir other users can reach
    (as the README's setup under the system temp dir had it)."""
    base = Path(tempfile.mkdtemp(prefix="deployer-hostile-"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir(mode=0o755)
    saved = {k: os.environ.get(k) for k in ("DEPLOYER_HOME", "DEPLOYER_SUPERVISOR_IDLE_S")}
    os.environ["DEPLOYER_HOME"] = str(home)
    cloud = LocalCloud(home)
    try:
        view = cloud.ensure_environment(STRATEGY, TEMPLATE, {
            "EtherpadVersion": "1.0", "AppScript": str(APP), "StartDelay": "0.2"},
            lambda event: None)
        assert view.stack_status == "CREATE_COMPLETE"
        info = cloud.supervisor_info()
        assert info is not None
        yield cloud, int(info["url"].rsplit(":", 1)[1]), view
    finally:
        try:
            cloud._url = None
            cloud.destroy_all(lambda event: None)
        finally:
            deadline = time.monotonic() + 20
            while processes_with(MARKER.encode(), home) and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid in processes_with(MARKER.encode(), home):
                os.kill(pid, signal.SIGKILL)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(base, ignore_errors=True)


def stack_status(cloud: LocalCloud) -> str | None:
    view = cloud.describe_environment(STRATEGY)
    return view.stack_status if view else None


# -- nobody ---------------------------------------------------------------------------------
def test_nobody_cannot_read_the_owners_secrets(env):
    cloud, _, _ = env
    for name in ("supervisor.json", "api.key", "state.json"):
        path = cloud.dir / name
        assert path.stat().st_mode & 0o777 == 0o600, name
        assert as_nobody(READ, str(path)) == "denied", name


def test_nobody_cannot_create_a_stack(env):
    cloud, port, _ = env
    own = Path(tempfile.mkdtemp(prefix="nobody-"))
    own.chmod(0o777)
    marker = own / "ran-as-root"
    template = own / "evil.yaml"
    template.write_text(TEMPLATE.read_text().replace(
        "#!/bin/bash\n", f"#!/bin/bash\n            id -u > {marker}\n", 1))
    template.chmod(0o644)
    try:
        body = {"strategy": "evil", "template": str(template),
                "parameters": {"EtherpadVersion": "1.0", "AppScript": str(APP)}}
        for headers in ({}, {"Authorization": "Bearer guessed"},
                        {"Authorization": "Bearer i-0123456789abcdef.00ff"}):
            status, answer = nobody_request(port, "POST", "/stacks", body, headers)
            assert status == 401, answer
            assert answer["error"]["type"] == "Unauthorized"
        time.sleep(2.0)
        assert not marker.exists()
        assert "etherpad-evil" not in cloud.raw_state()["stacks"]
    finally:
        shutil.rmtree(own, ignore_errors=True)


def test_nobody_cannot_copy_a_file_out(env):
    cloud, port, _ = env
    drop = Path(tempfile.mkdtemp(prefix="nobody-drop-"))
    drop.chmod(0o777)
    try:
        status, answer = nobody_request(port, "POST", "/artifacts", {
            "bucket": str(drop), "key": "loot", "path": str(cloud.dir / "state.json")})
        assert status == 401, answer
        assert list(drop.iterdir()) == []
    finally:
        shutil.rmtree(drop, ignore_errors=True)


def test_nobody_cannot_delete_a_stack_or_stop_the_cloud(env):
    cloud, port, _ = env
    pid = cloud.supervisor_info()["pid"]
    status, _ = nobody_request(port, "POST", f"/stacks/{STACK}/delete", {})
    assert status == 401
    status, _ = nobody_request(port, "POST", "/shutdown", {"delete_stacks": True})
    assert status == 401
    # Nor run a Packer template's provisioners, or a deployment's hooks.
    status, _ = nobody_request(port, "POST", "/images/build", {
        "template": str(Path(__file__).parents[2] / "packer" / "etherpad.pkr.hcl"),
        "variables": {"etherpad_version": "1.0"}})
    assert status == 401
    status, _ = nobody_request(port, "POST", "/deployments", {"stack": STACK})
    assert status == 401
    time.sleep(1.0)
    assert Path(f"/proc/{pid}").exists()
    assert stack_status(cloud) == "CREATE_COMPLETE"


def test_nobody_cannot_forge_a_signal(env):
    cloud, port, view = env
    instance = view.instances[0].instance_id
    before = len(cloud.raw_state()["stacks"][STACK]["events"])
    status, _ = nobody_request(port, "POST", "/signal", {
        "instance_id": instance, "stack": STACK, "resource": "AutoScalingGroup",
        "exit_code": 1})
    assert status == 401
    state = cloud.raw_state()
    assert state["instances"][instance]["signal"] == "SUCCESS"
    assert len(state["stacks"][STACK]["events"]) == before


def test_nobody_cannot_read_the_state_through_the_api(env):
    _, port, _ = env
    for path in ("/state", "/health", f"/stacks/{STACK}/events",
                 f"/target-health?arn={STACK}-TargetGroup"):
        status, answer = nobody_request(port, "GET", path)
        assert status == 401, (path, answer)


def test_a_browsers_simple_post_is_refused(env):
    cloud, port, _ = env
    form = "strategy=evil"
    status, _ = nobody_request(port, "POST", "/shutdown", form,
                               {"Content-Type": "text/plain", "Origin": "http://evil.example"})
    assert status in (401, 403)
    # Even with the owner's token a body that is not declared JSON is not read...
    headers = owner_headers(cloud)
    status, answer = request(port, "POST", "/shutdown", b"{}",
                             {**headers, "Content-Type": "text/plain", "Content-Length": "2"})
    assert status == 415, answer
    # ...a page's request (it says where it came from) is not answered...
    status, _ = request(port, "POST", "/shutdown", b"{}",
                        {**headers, "Origin": "http://evil.example", "Content-Length": "2"})
    assert status == 403
    # ...and a name that resolved to loopback is not this supervisor's host (DNS rebinding).
    status, _ = request(port, "GET", "/state", None, {**headers, "Host": f"evil.example:{port}"})
    assert status == 400
    assert cloud.supervisor_info() is not None


# -- names ----------------------------------------------------------------------------------
def test_names_from_a_request_are_checked(env):
    cloud, port, _ = env
    headers = owner_headers(cloud)
    outside = cloud.home.parent / "x"

    def post(path: str, body: dict) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        return request(port, "POST", path, data, {**headers, "Content-Length": str(len(data))})

    status, answer = post("/stacks", {"strategy": "../x", "template": str(TEMPLATE),
                                      "parameters": {"EtherpadVersion": "1.0"}})
    assert status == 400 and "strategy '../x' is not allowed" in answer["error"]["message"]
    with pytest.raises(UsageError, match=re.escape("strategy '../x' is not allowed")):
        cloud.ensure_environment("../x", TEMPLATE, {"EtherpadVersion": "1.0"},
                                 lambda event: None)
    assert not outside.exists()
    for body in ({"bucket": "/tmp", "key": "k", "path": str(APP)},
                 {"bucket": "etherpad-fixture-artifacts", "key": "../../../x", "path": str(APP)},
                 {"bucket": "etherpad-fixture-artifacts", "key": "k", "path": "/dev/zero"},
                 {"bucket": "etherpad-fixture-artifacts", "key": "k", "path": "../etc/shadow"}):
        status, answer = post("/artifacts", body)
        assert status == 400, (body, answer)
    status, _ = post("/stacks", {"strategy": "x", "template": "/etc/shadow"})
    assert status == 400
    status, _ = post("/deployments", {"stack": STACK, "revision": {
        "bucket": "..", "key": "x", "etag": "0" * 32, "version": "000001-00000000", "size": 1}})
    assert status == 400
    status, _ = post("/deployments", {"stack": STACK, "release": "1.0;id", "revision": {
        "bucket": "etherpad-fixture-artifacts", "key": "x", "etag": "0" * 32,
        "version": "000001-00000000", "size": 1}})
    assert status == 400
    status, _ = post("/images/deregister", {"image_id": "../../images"})
    assert status == 400
    status, _ = post("/stacks/../delete", {})
    assert status in (400, 404)
    status, _ = request(port, "GET", f"/stacks/{STACK}/events?after=x", None, headers)
    assert status == 400
    assert stack_status(cloud) == "CREATE_COMPLETE"


def test_bodies_that_would_hold_a_handler_thread_are_refused_at_once(env):
    cloud, port, _ = env
    headers = owner_headers(cloud)
    started = time.monotonic()
    status, _ = request(port, "POST", "/shutdown", None, {**headers, "Content-Length": "-1"})
    assert status == 400
    status, _ = request(port, "POST", "/shutdown", None,
                        {**headers, "Content-Length": str(1 << 30)})
    assert status == 413
    assert time.monotonic() - started < 3.0
    # A client that promises a body and stops sending holds one thread until its timeout,
    # not the API: the owner is answered meanwhile.
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(f"POST /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        f"Authorization: {headers['Authorization']}\r\n"
                        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
                        .encode())
        assert stack_status(cloud) == "CREATE_COMPLETE"
    assert cloud.supervisor_info() is not None


# -- an instance's credential ---------------------------------------------------------------
def test_an_instance_credential_allows_only_its_own_calls(env):
    cloud, port, view = env
    instance = view.instances[0]
    token = instance_credential(instance.pid)
    assert token.startswith(f"{instance.instance_id}.")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def post(path: str, body: dict) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        return request(port, "POST", path, data, {**headers, "Content-Length": str(len(data))})

    status, answer = post("/stacks", {"strategy": "evil", "template": str(TEMPLATE),
                                      "parameters": {"EtherpadVersion": "1.0",
                                                     "AppScript": str(APP)}})
    assert status == 403, answer
    assert "does not allow POST /stacks" in answer["error"]["message"]
    for path, body in ((f"/stacks/{STACK}/delete", {}), ("/shutdown", {}),
                       ("/artifacts", {"bucket": "etherpad-fixture-artifacts", "key": "k",
                                       "path": str(APP)})):
        status, _ = post(path, body)
        assert status == 403, path
    status, _ = request(port, "GET", "/state", None, headers)
    assert status == 403
    # Its signal is its own: not another instance's.
    status, answer = post("/signal", {"instance_id": "i-00000000000000ff", "exit_code": 1})
    assert status == 403, answer
    # What its aws and cfn-signal need is answered.
    status, answer = request(port, "GET", f"/target-health?arn={STACK}-TargetGroup"
                             f"&ids={instance.instance_id}", None, headers)
    assert status == 200, answer
    assert answer["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "healthy"
    # The instance's own aws, with the instance's own environment, as wait-served.sh runs it
    # (with --region: like AWS CLI v1, the shim reads no AWS_REGION).
    environ = dict(e.split("=", 1) for e in
                   Path(f"/proc/{instance.pid}/environ").read_text().split("\0") if "=" in e)
    shim = subprocess.run(
        ["aws", "elbv2", "describe-target-health", "--region", "us-east-1", "--target-group-arn",
         f"{STACK}-TargetGroup", "--targets", f"Id={instance.instance_id}", "--query",
         "TargetHealthDescriptions[0].TargetHealth.State", "--output", "text"],
        env=environ, capture_output=True, text=True, timeout=30)
    assert (shim.returncode, shim.stdout.strip()) == (0, "healthy"), shim.stderr
    # A credential made up for another id does not pass.
    forged = f"i-00000000000000ff.{token.split('.', 1)[1]}"
    status, _ = request(port, "GET", "/health", None,
                        {**headers, "Authorization": f"Bearer {forged}"})
    assert status == 401
    assert "etherpad-evil" not in cloud.raw_state()["stacks"]


def test_the_owners_client_still_works(env, tmp_path):
    cloud, _, _ = env
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(b"x" * 100)
    artifact = cloud.put_artifact(STRATEGY, "bundles/one.tar", bundle)
    assert artifact.size == 100
    assert cloud.describe_environment(STRATEGY).stack_status == "CREATE_COMPLETE"


def test_a_forged_supervisor_file_is_not_trusted(tmp_path):
    """Someone else's supervisor.json would send the owner's client (and its token) to them."""
    home = tmp_path / "other"
    (home / "localcloud").mkdir(parents=True)
    forged = home / "localcloud" / "supervisor.json"
    forged.write_text(json.dumps({"pid": os.getpid(), "url": "http://127.0.0.1:1",
                                  "token": "t"}))
    forged.chmod(0o600)
    nobody = _nobody()
    assert nobody is not None
    os.chown(forged, nobody.pw_uid, nobody.pw_gid)
    from deployer.base.errors import StateError

    with pytest.raises(StateError, match="belongs to uid"):
        LocalCloud(home).supervisor_info()
    os.chown(forged, 0, 0)
    forged.chmod(0o644)
    with pytest.raises(StateError, match="readable or writable by others"):
        LocalCloud(home).supervisor_info()

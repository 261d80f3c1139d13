"""The supervisor's API on its own: credentials, names, bodies, errors, and a broken state file.

No root needed (the attacks as another user are in ``test_hostile_api.py``). The HTTP tests
serve the real handler on loopback for a stand-in supervisor that has only what the handler
and the routes touch.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from deployer.base.errors import CloudError, StateError, UsageError
from deployer.localcloud import names
from deployer.localcloud.access import Credentials, Unauthorized, load_key, write_private
from deployer.localcloud.client import LocalCloud
from deployer.localcloud.operations import Operations, OperationStatus
from deployer.localcloud.state import Store
from deployer.localcloud.supervisor import make_handler


# -- credentials ----------------------------------------------------------------------------
def test_the_instance_key_is_private_and_outlives_a_supervisor(tmp_path):
    first = Credentials.for_cloud(tmp_path)
    assert (tmp_path / "api.key").stat().st_mode & 0o777 == 0o600
    token = first.instance_token("i-0123456789abcdef")
    # The next supervisor: a new owner token, the same instance credentials.
    second = Credentials.for_cloud(tmp_path)
    assert second.owner_token != first.owner_token
    assert second.caller(f"Bearer {token}").instance_id == "i-0123456789abcdef"
    assert second.caller(f"Bearer {second.owner_token}").owner
    with pytest.raises(Unauthorized):
        second.caller(f"Bearer {first.owner_token}")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic dXNlcg==", "Bearer x",
                                    "Bearer i-0123456789abcdef.00",
                                    "Bearer i-0123456789abcdee.{mac}", "Bearer ../x.{mac}"])
def test_a_credential_the_supervisor_did_not_issue_is_refused(tmp_path, header):
    credentials = Credentials.for_cloud(tmp_path)
    mac = credentials.instance_token("i-0123456789abcdef").split(".", 1)[1]
    with pytest.raises(Unauthorized):
        credentials.caller(header.format(mac=mac) if header else header)


def test_a_key_file_others_can_read_is_not_used(tmp_path):
    write_private(tmp_path / "api.key", os.urandom(32))
    (tmp_path / "api.key").chmod(0o644)
    with pytest.raises(StateError, match="readable or writable by others"):
        load_key(tmp_path)


# -- names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("check, value", [
    (names.strategy, "../x"), (names.strategy, "x/y"), (names.strategy, "Packer"),
    (names.strategy, ""), (names.strategy, "a" * 33), (names.strategy, None),
    (names.stack, ".."), (names.stack, "etherpad-x/../y"),
    (names.bucket, "/any/dir"), (names.bucket, "a..b"), (names.bucket, "../b"),
    (names.key, "../x"), (names.key, "a//b"), (names.key, "/etc/passwd"), (names.key, "a/./b"),
    (names.key, "a/.."), (names.version, "../../x"), (names.image_id, "../ami"),
    (names.instance_id, "i-1;id"), (names.release, "1.0;id"), (names.release, "-x"),
    (names.operation_id, "op-../../x"),
])
def test_names_outside_their_pattern_are_refused(check, value):
    with pytest.raises(UsageError, match=r"is not allowed|not a release name"):
        check(value)


@pytest.mark.parametrize("check, value", [
    (names.strategy, "packer"), (names.strategy, "cloudformation"), (names.strategy, "b-g2"),
    (names.stack, "etherpad-codedeploy"), (names.bucket, "etherpad-codedeploy-artifacts"),
    (names.key, "bundles/etherpad-1.8.18.tar.gz"), (names.version, "000001-0123abcd"),
    (names.image_id, "ami-0b45e0000000000c1"), (names.instance_id, "i-0123456789abcdef"),
    (names.release, "1.8.18"), (names.release, "v2.0.0-beta.1"),
])
def test_names_the_cli_sends_pass(check, value):
    assert check(value) == value


def test_a_deployment_request_is_checked_whole():
    revision = {"bucket": "etherpad-codedeploy-artifacts", "key": "bundles/1.8.18.tar.gz",
                "etag": "0123456789abcdef0123456789abcdef", "version": "000002-01234567",
                "size": 10}
    body = {"stack": "etherpad-codedeploy", "revision": revision, "release": "1.8.18"}
    assert names.deployment(body) == {**body, "ignore_application_stop_failures": False}
    for bad in ({**body, "release": "1.8.18;id"}, {**body, "stack": "../x"},
                {**body, "revision": {**revision, "bucket": "/etc"}},
                {**body, "revision": {**revision, "size": "10"}},
                {**body, "revision": {**revision, "etag": "x"}}, {"stack": "etherpad-x"}):
        with pytest.raises(UsageError):
            names.deployment(bad)


def test_templates_and_uploads_are_regular_files(tmp_path):
    template = tmp_path / "stack.yaml"
    template.write_text("Resources: {}\n")
    assert names.template_path(str(template)) == template
    for bad in ("stack.yaml", str(tmp_path / ".." / "stack.yaml"), "/etc/shadow", "/dev/null"):
        with pytest.raises(UsageError):
            names.template_path(bad)
    with pytest.raises(UsageError, match="not a regular file"):
        names.upload_path("/dev/zero")
    with pytest.raises(UsageError):
        names.upload_path("relative/file")


# -- the HTTP handler -----------------------------------------------------------------------
class StandIn:
    """What the handler and the owner's GET /state touch; /state fails like a bug would."""

    def __init__(self, home: Path) -> None:
        self.credentials = Credentials.for_cloud(home)
        self.store = Store(home / "state.json")
        self.port = 0

    def view(self) -> dict:
        raise KeyError("stacks")


@pytest.fixture
def api(tmp_path):
    sup = StandIn(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(sup))
    server.daemon_threads = True
    sup.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield sup
    server.shutdown()
    server.server_close()


def call(sup: StandIn, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, token: str | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", sup.port, timeout=15)
    sent = {"Authorization": f"Bearer {token or sup.credentials.owner_token}",
            "Content-Type": "application/json", **(headers or {})}
    conn.request(method, path, body=body, headers=sent)
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    return answer.status, json.loads(data) if data else {}


def test_an_internal_error_carries_no_traceback(api):
    status, answer = call(api, "GET", "/state")
    assert status == 500
    text = json.dumps(answer)
    assert "Traceback" not in text and "traceback" not in answer["error"]
    assert answer["error"]["type"] == "InternalError"
    assert "KeyError" in answer["error"]["message"]


def test_a_failed_operation_carries_no_traceback():
    ops = Operations()

    def bug() -> None:
        raise ValueError("embedded null byte")

    op = ops.start("bake", None, bug)
    deadline = time.monotonic() + 5
    while op.status is OperationStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert op.error == {"type": "InternalError", "message": "internal error in the supervisor "
                        "(ValueError: embedded null byte; its log has the traceback)"}


@pytest.mark.parametrize("headers, status", [
    ({"Content-Length": "-1"}, 400),
    ({"Content-Length": "1e3"}, 400),
    ({"Content-Length": str(1 << 40)}, 413),
    ({"Content-Type": "text/plain", "Content-Length": "2"}, 415),
    ({"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "2"}, 415),
    ({"Origin": "http://evil.example", "Content-Length": "2"}, 403),
    ({"Sec-Fetch-Site": "cross-site", "Content-Length": "2"}, 403),
])
def test_bodies_and_browsers_are_refused_before_reading(api, headers, status):
    started = time.monotonic()
    body = b"{}" if headers.get("Content-Length") == "2" else None
    got, answer = call(api, "POST", "/shutdown", body, headers)
    assert (got, time.monotonic() - started < 2.0) == (status, True), answer


def test_a_request_with_no_credential_is_refused(api):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    conn.request("POST", "/shutdown", body=b"{}", headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 401
    assert answer.getheader("WWW-Authenticate", "").startswith("Bearer")


def test_another_host_name_is_refused(api):
    status, _ = call(api, "GET", "/health", headers={"Host": f"rebound.example:{api.port}"})
    assert status == 400
    status, answer = call(api, "GET", "/health")
    assert status == 200 and answer["ok"]


def test_an_instance_credential_reaches_no_owner_endpoint(api):
    token = api.credentials.instance_token("i-0123456789abcdef")
    for method, path in (("GET", "/state"), ("POST", "/stacks"), ("POST", "/shutdown"),
                         ("POST", "/artifacts"), ("POST", "/images/build")):
        status, answer = call(api, method, path, b"{}" if method == "POST" else None,
                              {"Content-Length": "2"} if method == "POST" else None, token)
        # The stand-in knows no instance at all; the real one refuses the calls (403) too.
        assert status == 403, (path, answer)


# -- a broken state file --------------------------------------------------------------------
@pytest.mark.parametrize("text, says", [
    ("garbage", "Invalid JSON"),
    ('{"stacks": {"x": 1}}', "stacks.x: Input should be"),
])
def test_a_corrupt_state_file_is_one_line(tmp_path, text, says):
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(StateError) as raised:
        Store.read(path)
    message = str(raised.value)
    assert says in message and f"{path} is corrupt" in message and "\n" not in message


@pytest.mark.slow
def test_a_supervisor_that_cannot_start_says_why_at_once(tmp_path):
    home = tmp_path / "home"
    (home / "localcloud").mkdir(parents=True)
    (home / "localcloud" / "state.json").write_text("garbage")
    started = time.monotonic()
    with pytest.raises(CloudError, match=r"did not start: the local cloud.s state .* is corrupt"):
        LocalCloud(home).ensure_supervisor()
    assert time.monotonic() - started < 15.0


def test_a_full_disk_leaves_no_temporary_state_file(tmp_path):
    """The file size limit stands in for a full disk: the write fails part way."""
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from deployer.localcloud.state import Store\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "store = Store(Path(sys.argv[1]))\n"
        "store.state.ssm = {f'/p/{i}': 'x' * 100 for i in range(1000)}\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    store.save()\n"
        "except OSError as exc:\n"
        "    print('failed', exc.errno)\n")
    path = tmp_path / "state.json"
    path.write_text('{"ssm": {"/kept": "yes"}}')
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.startswith("failed"), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert Store.read(path).ssm == {"/kept": "yes"}

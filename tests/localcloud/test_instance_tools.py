"""`cfn-signal` and `aws` on a local instance's PATH, against a stand-in supervisor API.

They must answer like the real tools: what they send, and their words and exit codes when
the instance is not on a local cloud, the supervisor refuses, or it cannot be reached.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployer.localcloud.tools import aws_cli, cfn_signal


@pytest.fixture
def api(monkeypatch):
    seen: list[tuple[str, str, dict | None]] = []
    answers: dict[str, tuple[int, dict]] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _answer(self, body: dict | None) -> None:
            seen.append((self.command, self.path, body))
            status, payload = answers.get(self.path.split("?")[0], (200, {"ok": True}))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            self._answer(json.loads(self.rfile.read(length)))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DEPLOYER_CONTROL_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("DEPLOYER_INSTANCE_ID", "i-0123456789abcdef0")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # as the user data exports it
    monkeypatch.delenv("AWS_REGION", raising=False)
    yield seen, answers
    server.shutdown()


def exit_code(run) -> int:
    with pytest.raises(SystemExit) as exited:
        run()
    return exited.value.code


def test_cfn_signal_sends_the_instance_and_its_exit_code(api):
    seen, _ = api
    cfn_signal.main(["-e", "1", "--stack", "etherpad-packer", "--resource", "Group",
                     "--region", "eu-west-1"])
    assert seen == [("POST", "/signal", {"stack": "etherpad-packer", "resource": "Group",
                                         "exit_code": 1, "instance_id": "i-0123456789abcdef0",
                                         "reason": ""})]


def test_cfn_signal_reports_the_supervisors_refusal(api, capsys):
    _, answers = api
    answers["/signal"] = (404, {"error": {"message": "stack etherpad-x does not exist"}})
    assert exit_code(lambda: cfn_signal.main(["--stack", "etherpad-x", "--resource", "G"])) == 1
    assert capsys.readouterr().err.strip() == "cfn-signal: stack etherpad-x does not exist"


def test_tools_off_a_local_instance_say_so(monkeypatch, capsys):
    monkeypatch.delenv("DEPLOYER_CONTROL_URL", raising=False)
    monkeypatch.setenv("DEPLOYER_INSTANCE_ID", "i-1")
    assert exit_code(lambda: cfn_signal.main(["--stack", "s", "--resource", "G"])) == 1
    assert exit_code(lambda: aws_cli.main(["elbv2", "describe-target-health", "--region",
                                           "us-east-1", "--target-group-arn", "tg"])) == 255
    err = capsys.readouterr().err
    assert "cfn-signal: not on a local cloud instance" in err
    assert "aws: not on a local cloud instance" in err


def test_tools_that_cannot_reach_the_supervisor(monkeypatch, capsys):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("DEPLOYER_CONTROL_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("DEPLOYER_INSTANCE_ID", "i-1")
    assert exit_code(lambda: cfn_signal.main(["--stack", "s", "--resource", "G"])) == 1
    assert exit_code(lambda: aws_cli.main(["--region", "us-east-1", "elbv2",
                                           "describe-target-health",
                                           "--target-group-arn", "tg"])) == 255
    err = capsys.readouterr().err
    assert "cfn-signal: cannot reach the stack" in err
    assert "Could not connect to the endpoint URL" in err


def test_aws_describe_target_health_queries_like_the_aws_cli(api, capsys):
    seen, answers = api
    answers["/target-health"] = (200, {"TargetHealthDescriptions": [
        {"Target": {"Id": "i-1", "Port": 9001}, "TargetHealth": {"State": "healthy"}}]})
    aws_cli.main(["elbv2", "describe-target-health", "--target-group-arn", "tg-arn",
                  "--targets", "Id=i-1,Port=9001", "--query",
                  "TargetHealthDescriptions[0].TargetHealth.State", "--output", "text"])
    assert capsys.readouterr().out.strip() == "healthy"
    assert seen[0][:2] == ("GET", "/target-health?arn=tg-arn&ids=i-1")
    answers["/target-health"] = (400, {"error": {"message": "no target group tg-arn"}})
    assert exit_code(lambda: aws_cli.main(["elbv2", "describe-target-health",
                                           "--target-group-arn", "tg-arn"])) == 254
    assert "An error occurred (TargetGroupNotFound): no target group tg-arn" in \
        capsys.readouterr().err


def test_aws_answers_only_the_calls_the_scripts_make(capsys):
    assert exit_code(lambda: aws_cli.main(["s3", "cp", "--region=us-east-1", "a", "b"])) == 252
    assert "answers only 'elbv2 describe-target-health'" in capsys.readouterr().err


# -- regions, as AWS CLI v1 (Ubuntu 22.04's awscli) reads them -----------------------------

NO_REGION = ('You must specify a region. You can also configure your region by running '
             '"aws configure".')
DESCRIBE = ["elbv2", "describe-target-health", "--target-group-arn", "tg-arn",
            "--targets", "Id=i-1", "--query", "TargetHealthDescriptions[0].TargetHealth.State",
            "--output", "text"]


@pytest.fixture
def healthy(api):
    seen, answers = api
    answers["/target-health"] = (200, {"TargetHealthDescriptions": [
        {"Target": {"Id": "i-1", "Port": 9001}, "TargetHealth": {"State": "healthy"}}]})
    return seen


def test_aws_without_a_region_fails_as_v1_does(healthy, monkeypatch, capsys):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert exit_code(lambda: aws_cli.main(DESCRIBE)) == 255
    assert capsys.readouterr().err.strip() == NO_REGION
    assert healthy == []  # nothing was asked


def test_aws_region_alone_is_not_a_region_for_v1(healthy, monkeypatch, capsys):
    """What the old user data exported (AWS_REGION only): v1 ignores it."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert exit_code(lambda: aws_cli.main(DESCRIBE)) == 255
    assert capsys.readouterr().err.strip() == NO_REGION


@pytest.mark.parametrize("how", ["AWS_DEFAULT_REGION", "--region", "--region="])
def test_aws_with_a_region_answers(healthy, monkeypatch, capsys, how):
    args = list(DESCRIBE)
    if how != "AWS_DEFAULT_REGION":
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        args = (["--region", "us-east-1"] if how == "--region" else ["--region=us-east-1"]) \
            + args
    aws_cli.main(args)
    assert capsys.readouterr().out.strip() == "healthy"

"""The instance scripts keep their region on a local instance as on EC2 (issue 11 defect 2).

EC2 sets no region variable, and Ubuntu 22.04's ``awscli`` is AWS CLI v1, which reads only
``--region`` and ``AWS_DEFAULT_REGION``. The local cloud's instances get neither variable
and its ``aws`` is v1 about regions, so user data that exports only ``AWS_REGION`` (as the
stacks once did) fails here, before it fails on AWS. These tests run the shipped
``wait-served.sh`` with the region exports of each shipped user data, through the local
``aws`` against a stand-in supervisor and load balancer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deployer.base.assets import asset_path
from deployer.cfn.document import load_document
from deployer.localcloud.supervisor import write_instance_tools

WAIT_SERVED = asset_path("etherpad", "bin", "wait-served.sh")
RELEASE = "1.8.18"


@pytest.fixture
def supervisor_and_balancer():
    """/target-health answers the instance healthy; / answers with the release header."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/target-health"):
                body = json.dumps({"TargetHealthDescriptions": [
                    {"Target": {"Id": "i-1", "Port": 9001},
                     "TargetHealth": {"State": "healthy"}}]}).encode()
            else:
                body = b"ok"
            self.send_response(200)
            self.send_header("X-Etherpad-Release", RELEASE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def user_data(strategy: str) -> str:
    document = load_document(asset_path("etherpad", "stacks", f"{strategy}.yaml"))
    data = document["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    return data["UserData"]["Fn::Base64"]["Fn::Sub"]


def region_exports(script: str) -> str:
    """The user data's lines that export AWS_* variables, as the instance runs them."""
    lines = [line.strip() for line in script.splitlines()
             if re.match(r"\s*export\s.*\bAWS_", line)]
    return "\n".join(lines).replace("${AWS::Region}", "us-east-1")


def run_wait_served(tmp_path: Path, url: str, exports: str, script: Path = WAIT_SERVED):
    bin_dir = tmp_path / "bin"
    write_instance_tools(bin_dir)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
           "DEPLOYER_CONTROL_URL": url, "INSTANCE_ID": "i-1", "ETHERPAD_RELEASE": RELEASE,
           "WAIT_SERVED_TIMEOUT": "3"}
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    program = f"set -e\n{exports}\nexec bash {script} {url}/ tg-arn\n"
    return subprocess.run(["bash", "-c", program], env=env, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("strategy", ["cloudformation", "packer"])
def test_the_shipped_user_data_keeps_its_region(tmp_path, supervisor_and_balancer, strategy):
    exports = region_exports(user_data(strategy))
    assert "AWS_DEFAULT_REGION=us-east-1" in exports
    done = run_wait_served(tmp_path, supervisor_and_balancer, exports)
    assert done.returncode == 0, done.stderr
    assert "target i-1 is healthy" in done.stdout


def test_the_old_user_data_fails_on_a_local_instance(tmp_path, supervisor_and_balancer):
    """The stacks exported AWS_REGION only, and wait-served.sh called aws without --region:
    AWS CLI v1 has no region, the target never looks healthy, the instance signals failure."""
    old_script = tmp_path / "wait-served-old.sh"
    old_script.write_text(WAIT_SERVED.read_text().replace('${region:+--region "$region"} ', ""))
    assert old_script.read_text() != WAIT_SERVED.read_text()
    done = run_wait_served(tmp_path, supervisor_and_balancer,
                           "export AWS_REGION=us-east-1", old_script)
    assert done.returncode == 1
    assert "target i-1 is  in tg-arn after 3s" in done.stderr


def test_wait_served_passes_aws_region_on_as_region(tmp_path, supervisor_and_balancer):
    """A script started with AWS_REGION alone (start-etherpad's docs once said so) still
    reaches AWS: wait-served.sh passes the region as --region."""
    done = run_wait_served(tmp_path, supervisor_and_balancer, "export AWS_REGION=us-east-1")
    assert done.returncode == 0, done.stderr


def test_every_aws_call_in_the_shipped_user_data_names_its_region():
    """On a fresh instance the tools run before any script could export anything else."""
    for strategy in ("cloudformation", "packer", "codedeploy"):
        for line in user_data(strategy).splitlines():
            for call in re.findall(r"\baws (?:s3|secretsmanager|ssm|elbv2)\b[^|]*", line):
                assert "--region ${AWS::Region}" in call, (strategy, call)

"""Secrets stay secret: a full release, then every output a user sees is searched for them.

The stand-in app's stack with a PostgreSQL database whose credentials Secrets Manager
generates, a NoEcho parameter handed to the app, the API and session keys every instance
shares, and AWS keys in the deployer's own environment. None of them may appear in CLI
output (JSON logs included), the JSON and JUnit reports, ``status`` (human and JSON), the
supervisor's log, the stack events, the local cloud's API, or instance console output.
They do live in the local cloud's own storage (state.json), as they live inside AWS: that
file is readable by its owner only.
"""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path

import pytest

from deployer.localcloud.client import LocalCloud
from deployer.localcloud.state import STATE_FILE_MODE
from tests.drills.conftest import Cli, processes_with

pytestmark = pytest.mark.slow


def test_no_secret_in_any_output_of_a_full_release(cli: Cli, home: Path, tmp_path: Path, drill):
    drill.title = "secrets in every output of a full release"
    drill.app = "stand-in"
    drill.expected = ("no database password, generated secret, NoEcho value, API or session "
                      "key, or AWS key in CLI output, logs, reports, status, events or the API; "
                      "state.json mode 600")
    token = "tok-" + secrets.token_hex(16)
    aws_secret = "aws-" + secrets.token_hex(20)
    env = {"DRILL_STACK_PARAMETERS": json.dumps({"WithDatabase": "true", "AppToken": token}),
           "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
           "AWS_SECRET_ACCESS_KEY": aws_secret, "AWS_SESSION_TOKEN": "sess-" + secrets.token_hex(24)}
    report, junit = tmp_path / "report.json", tmp_path / "report.xml"
    outputs: dict[str, str] = {}
    for name, args in {
        "up": ("up", "--strategy", "fixture", "--version", "1.0"),
        "release": ("release", "2.0", "--strategy", "fixture", "--editors", "0", "--json", str(report),
                    "--junit", str(junit)),
        "status --json": ("status", "--json"),
        "status": ("status",),
        "release --verbose": ("--verbose", "release", "3.0", "--strategy", "fixture", "--editors", "0"),
    }.items():
        result = cli.run(*args, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[f"{name}: stdout"], outputs[f"{name}: stderr"] = result.stdout, result.stderr

    cloud = LocalCloud(home)
    state_file = home / "localcloud" / "state.json"
    stored = cloud.state().stacks["etherpad-fixture"]
    # The secrets the cloud really used: make sure the search is not for nothing.
    wanted = {"NoEcho AppToken": token, "AWS secret key": aws_secret,
              "AWS session token": env["AWS_SESSION_TOKEN"],
              "database password": str(stored.database["password"]),
              "generated secret": json.loads(stored.secrets["DatabaseSecret"])["password"],
              "Etherpad API key": stored.secrets["ETHERPAD_APIKEY"],
              "session key": stored.secrets["ETHERPAD_SESSIONKEY"]}
    # The local cloud's own credentials: its owner's API token and an instance's.
    info = cloud.supervisor_info()
    assert info is not None
    wanted["local cloud API token"] = info["token"]
    view = cloud.describe_environment("fixture")
    assert view is not None and view.instances
    environ = Path(f"/proc/{view.instances[0].pid}/environ").read_bytes().split(b"\0")
    wanted["instance credential"] = next(
        e.split(b"=", 1)[1].decode() for e in environ
        if e.startswith(b"DEPLOYER_INSTANCE_TOKEN="))
    assert wanted["database password"] == wanted["generated secret"]
    assert all(len(value) >= 16 for value in wanted.values()), "a weak or empty secret"
    assert processes_with(f"APP_TOKEN={token}".encode()), "the app never got its token"
    assert processes_with(f"DB_PASSWORD={wanted['database password']}".encode())
    state_text = state_file.read_text()
    assert token in state_text and wanted["database password"] in state_text

    outputs["report.json"] = report.read_text()
    outputs["report.xml"] = junit.read_text()
    outputs["supervisor.log"] = (home / "localcloud" / "supervisor.log").read_text()
    outputs["local cloud API /state (events, parameters, database)"] = json.dumps(
        cloud.raw_state())
    for console in sorted((home / "localcloud" / "console").glob("*.log")):
        outputs[f"console output {console.name}"] = console.read_text()
    leaks = [(what, where) for what, value in wanted.items()
             for where, text in outputs.items() if value in text]
    drill.failed_probes = json.loads(outputs["report.json"])["probes"]["failed"]
    drill.total_probes = json.loads(outputs["report.json"])["probes"]["total"]
    assert leaks == []
    assert "****" in outputs["status --json: stdout"]  # NoEcho shown masked, as AWS shows it

    mode = stat.S_IMODE(state_file.stat().st_mode)
    assert mode == STATE_FILE_MODE == 0o600, oct(mode)
    size = sum(len(text) for text in outputs.values())
    drill.result = (f"{len(wanted)} secrets, {len(outputs)} outputs ({size / 1000:.0f} kB): "
                    f"no leak; state.json mode {oct(mode)[2:]}")

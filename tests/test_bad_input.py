"""Bad input, met where a user meets it: the CLI, in a fresh data dir.

Every case must end with exactly one line on stderr — ``deployer: error: <what> (<fix>)``
naming the file, line or field — exit 2 for usage and 1 otherwise, no traceback without
``--debug``, and nothing half-created: no stack, no supervisor left running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.base.assets import assets_root
from tests.support.etherpad import bare_copy, make_release_repo, tiny_etherpad

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A git mirror with release tags 1.8.13 and 1.8.14 (trees enough to list, not to run)."""
    repo = tmp_path_factory.mktemp("mirror") / "etherpad-lite.git"
    make_release_repo(repo, {"1.8.13": tiny_etherpad, "1.8.14": tiny_etherpad})
    return repo


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def run(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployer", "--log-format", "json", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "DEPLOYER_HOME": str(home)})


def refused(record, home: Path, args: list[str], *, code: int, says: list[str],
            title: str, where: str) -> str:
    """Run a bad command; check the contract; record what the user got. Returns the line."""
    record.title, record.where = title, where
    result = run(home, *args)
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith("{")]
    record.exit_code = result.returncode
    record.message = lines[0].removeprefix("deployer: error: ") if lines else ""
    assert result.returncode == code, result.stderr[-2000:]
    assert len(lines) == 1, lines
    assert lines[0].startswith("deployer: error: "), lines
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for text in says:
        assert text in lines[0], lines[0]
    nothing_created(home)
    return lines[0]


def nothing_created(home: Path) -> None:
    state = home / "localcloud" / "state.json"
    if state.exists():
        assert json.loads(state.read_text())["stacks"] == {}, "a stack was left behind"
    info = home / "localcloud" / "supervisor.json"
    if info.exists():
        pid = json.loads(info.read_text())["pid"]
        assert not Path(f"/proc/{pid}").exists(), "a supervisor was started for nothing"


# -- flags ----------------------------------------------------------------------------------
FLAGS = [
    ("an unknown option", ["release", "1.8.18", "-s", "packer", "--bogus"], 2,
     ["No such option: --bogus", "deployer release --help"]),
    ("a missing argument", ["release", "-s", "packer"], 2, ["Missing argument 'version'"]),
    ("an unknown strategy", ["release", "1.8.18", "-s", "bluegreen"], 2,
     ["unknown strategy 'bluegreen'", "choose one of: cloudformation, codedeploy, packer"]),
    ("an unknown target", ["release", "1.8.18", "-s", "packer", "--target", "mars"], 2,
     ["unknown target 'mars'", "use local or aws"]),
    ("a probe rate of 0", ["release", "1.8.18", "-s", "packer", "--hz", "0"], 2,
     ["--hz must be between 0 and 1000", "pass --hz 20"]),
    ("a negative budget", ["release", "1.8.18", "-s", "packer", "--budget", "-5"], 2,
     ["--budget must be a positive number of seconds, got -5"]),
    ("a report path that is a directory", ["release", "1.8.18", "-s", "packer", "--json", "/"],
     2, ["/ is a directory, not a file"]),
    ("a negative number of editors", ["release", "1.8.18", "-s", "packer", "--editors", "-1"],
     2, ["--editors must be between 0 and 500, got -1", "pass --editors 6, or 0 for none"]),
    ("too many editors for compare", ["compare", "1.8.18", "--editors", "5000"], 2,
     ["--editors must be between 0 and 500, got 5000"]),
    ("a rate that is not a number", ["release", "1.8.18", "-s", "packer", "--hz", "fast"], 2,
     ["Invalid value for '--hz'"]),
    ("an unknown log format", ["--log-format", "xml", "status"], 2, ["unknown log format 'xml'"]),
    ("down without saying what", ["down"], 2, ["pass --strategy NAME or --all"]),
    ("down of an unknown strategy", ["down", "-s", "nope"], 2, ["unknown strategy 'nope'"]),
    ("up without a release", ["up", "-s", "packer"], 2, ["Missing option '--version'"]),
    ("a probe of something that is not a URL", ["probe", "notaurl"], 2,
     ["bad URL 'notaurl'", "http://"]),
    ("a probe of no duration", ["probe", "http://127.0.0.1:9/", "--duration", "0"], 2,
     ["duration must be positive"]),
    ("a release with no known predecessor and no --from", ["release", "banana", "-s", "packer"],
     2, ["no packer environment yet", "pass --from VERSION"]),
    ("an unknown validate check", ["validate", "--check", "everything"], 2,
     ["unknown check 'everything'"]),
]


@pytest.mark.parametrize("title,args,code,says", FLAGS, ids=[f[0] for f in FLAGS])
def test_bad_flags(bad_input, home: Path, title, args, code, says):
    refused(bad_input, home, args, code=code, says=says, title=title,
            where=f"deployer {' '.join(args)}")


def test_debug_shows_the_traceback_the_one_line_hides(home: Path):
    plain = run(home, "release", "banana", "-s", "packer")
    debug = run(home, "--debug", "release", "banana", "-s", "packer")
    assert "Traceback" not in plain.stderr
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "UsageError" in debug.stderr


# -- releases and sources ---------------------------------------------------------------------
def sources(mirror: Path) -> list[tuple]:
    return [
        ("an unknown release", ["release", "9.9.9", "-s", "cloudformation", "--from", "1.8.14",
                                "--source", str(mirror)], 1,
         [f"{mirror} has no tag 9.9.9 (its tags: 1.8.13, 1.8.14)",
          "pick a release the source has"]),
        ("an unknown starting release", ["release", "1.8.14", "-s", "codedeploy", "--from",
                                          "1.7.0", "--source", str(mirror)], 1,
         ["has no tag 1.7.0"]),
        ("a release name that is not one", ["release", "1.8.18;rm -rf /", "-s", "packer",
                                            "--from", "1.8.14", "--source", str(mirror)], 1,
         ["'1.8.18;rm -rf /' is not a release name", "give a release tag like 1.8.18"]),
        ("a source path that does not exist", ["release", "1.8.14", "-s", "packer", "--from",
                                               "1.8.13", "--source", "/nonexistent/mirror.git"],
         1, ["--source /nonexistent/mirror.git: no such path"]),
        ("an unreachable source", ["release", "1.8.14", "-s", "cloudformation", "--from",
                                   "1.8.13", "--source", "http://127.0.0.1:9/etherpad-lite.git"],
         1, ["cannot reach 127.0.0.1:9", "check the URL"]),
        ("a directory that holds no Etherpad", ["up", "-s", "cloudformation", "--version",
                                                "1.8.14", "--source", "/tmp"], 1,
         ["/tmp holds no Etherpad"]),
        ("up at an unknown release", ["up", "-s", "codedeploy", "--version", "2.0.0",
                                      "--source", str(mirror)], 1, ["has no tag 2.0.0"]),
        ("a bare mirror is read as a mirror", ["release", "9.9.9", "-s", "packer", "--from",
                                               "1.8.14", "--source", str(bare_mirror(mirror))],
         1, ["has no tag 9.9.9 (its tags: 1.8.13, 1.8.14)"]),
        ("a quote in a source", ["release", "1.8.14", "-s", "cloudformation", "--from",
                                 "1.8.13", "--source", "https://x.example/e.git';id;'"], 1,
         ["holds characters a source may not have"]),
        ("a source git would read as an option",
         ["release", "1.8.14", "-s", "codedeploy", "--from", "1.8.13", "--source",
          "--upload-pack=touch pwned;://"], 1, ["starts with '-'"]),
        ("a local path for AWS", ["release", "1.8.14", "-s", "packer", "--from", "1.8.13",
                                  "--target", "aws", "--source", str(mirror)], 1,
         ["an EC2 instance cannot read it"]),
    ]


def bare_mirror(mirror: Path) -> Path:
    bare = mirror.parent / "bare" / "etherpad-lite.git"
    return bare if bare.exists() else bare_copy(mirror, bare)


SOURCE_IDS = ["unknown release", "unknown from", "bad release name", "no such path",
              "unreachable", "no etherpad", "up unknown release", "bare mirror", "quote",
              "option", "aws local path"]


@pytest.mark.parametrize("case", range(len(SOURCE_IDS)), ids=SOURCE_IDS)
def test_bad_releases_and_sources_create_nothing(bad_input, home: Path, mirror: Path, case):
    title, args, code, says = sources(mirror)[case]
    refused(bad_input, home, args, code=code, says=says, title=title,
            where=f"deployer {' '.join(args).replace(str(mirror), '<mirror>')}")


# -- the assets: appspec.yml, stacks, Packer template -----------------------------------------
@pytest.fixture
def assets(tmp_path: Path) -> Path:
    root = tmp_path / "assets"
    for name in ("appspec", "packer", "etherpad"):
        shutil.copytree(assets_root() / name, root / name)
    return root


def broken(root: Path, file: str, old: str, new: str) -> None:
    path = root / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1))


ASSETS = [
    # (title, check, file, old, new, one-line finding must contain)
    ("appspec: version not 0.0", "appspec", "appspec/appspec.yml", "version: 0.0",
     "version: '0.0'", ["appspec/appspec.yml: version", "exactly 0.0, written unquoted"]),
    ("appspec: no version", "appspec", "appspec/appspec.yml", "version: 0.0\n", "",
     ["appspec/appspec.yml: version", "missing; add `version: 0.0`"]),
    ("appspec: unknown os", "appspec", "appspec/appspec.yml", "os: linux", "os: ubuntu",
     ["appspec/appspec.yml: os", "use linux or windows"]),
    ("appspec: files not a list", "appspec", "appspec/appspec.yml",
     "files:\n  - source: etherpad-lite\n    destination: /opt/etherpad-release\n",
     "files: etherpad-lite\n", ["appspec/appspec.yml: files", "must be a list"]),
    ("appspec: relative destination", "appspec", "appspec/appspec.yml",
     "destination: /opt/etherpad-release", "destination: opt/etherpad-release",
     ["appspec/appspec.yml: files[0].destination", "give an absolute path"]),
    ("appspec: source leaving the bundle", "appspec", "appspec/appspec.yml",
     "source: etherpad-lite", "source: ../etherpad-lite",
     ["appspec/appspec.yml: files[0].source", "leaves the bundle"]),
    ("appspec: unknown hook name", "appspec", "appspec/appspec.yml", "  BeforeInstall:",
     "  BeforeInstal:", ["appspec/appspec.yml: hooks.BeforeInstal",
                         "is not a lifecycle event"]),
    ("appspec: a hook on an agent event", "appspec", "appspec/appspec.yml", "  BeforeInstall:",
     "  Install:", ["appspec/appspec.yml: hooks.Install", "performed by the CodeDeploy agent"]),
    ("appspec: timeout of 0", "appspec", "appspec/appspec.yml", "timeout: 60", "timeout: 0",
     ["appspec/appspec.yml: hooks.ApplicationStop[0].timeout", "above 0"]),
    ("appspec: timeout not a number", "appspec", "appspec/appspec.yml", "timeout: 60",
     "timeout: 1m", ["hooks.ApplicationStop[0].timeout", "whole number of seconds"]),
    ("appspec: timeouts over 3600 s in one event", "appspec", "appspec/appspec.yml",
     "timeout: 900", "timeout: 3601", ["hooks.AfterInstall", "at most 3600 s"]),
    ("appspec: runas empty", "appspec", "appspec/appspec.yml", "      timeout: 60\n",
     "      timeout: 60\n      runas: ''\n",
     ["hooks.ApplicationStop[0].runas", "must be a non-empty string"]),
    ("appspec: runas not a name", "appspec", "appspec/appspec.yml", "      timeout: 60\n",
     "      timeout: 60\n      runas: [root]\n",
     ["hooks.ApplicationStop[0].runas", "must be a non-empty string"]),
    ("appspec: YAML that does not parse", "appspec", "appspec/appspec.yml", "os: linux",
     "os: [linux", ["appspec/appspec.yml:", "not valid YAML", "fix the YAML syntax"]),
    ("appspec: a hook script that is not there", "appspec", "appspec/appspec.yml",
     "hooks/validate-service.sh", "hooks/validate.sh",
     ["hooks.ValidateService[0].location", "is not in the revision"]),
    ("template: YAML that does not parse", "templates", "etherpad/stacks/packer.yaml",
     "  AMI:\n", "  AMI: [\n", ["etherpad/stacks/packer.yaml:"]),
    ("template: a property the local cloud cannot honour", "templates",
     "etherpad/stacks/cloudformation.yaml", "      HealthCheckType: ELB\n",
     "      HealthCheckType: ELB\n      MaxInstanceLifetime: 86400\n",
     ["etherpad/stacks/cloudformation.yaml:", "resource AutoScalingGroup: property "
      "MaxInstanceLifetime is not supported", "remove it or run with --target aws"]),
    ("template: a Ref to nothing", "templates", "etherpad/stacks/codedeploy.yaml",
     "InstanceType: !Ref InstanceType", "InstanceType: !Ref InstanceSize",
     ["etherpad/stacks/codedeploy.yaml:", "Ref to InstanceSize"]),
    ("template: a value AWS refuses", "templates", "etherpad/stacks/packer.yaml",
     "HealthyThresholdCount: 2", "HealthyThresholdCount: 20",
     ["etherpad/stacks/packer.yaml:", "HealthyThresholdCount: 20 is out of range"]),
    ("template: a Transform", "templates", "etherpad/stacks/packer.yaml",
     "Parameters:\n", "Transform: AWS::Serverless-2016-10-31\nParameters:\n",
     ["etherpad/stacks/packer.yaml:", "section Transform is not supported"]),
    ("Packer: a variable the strategy passes is not declared", "packer",
     "packer/etherpad.pkr.hcl", 'variable "etherpad_source" {', 'variable "source" {',
     ['packer/etherpad.pkr.hcl', 'Undefined -var variable: A "etherpad_source" variable']),
    ("Packer: a variable used but never declared", "packer", "packer/etherpad.pkr.hcl",
     "region          = var.region", "region          = var.aws_region",
     ["packer/etherpad.pkr.hcl", "aws_region"]),
    ("Packer: a malformed variable block", "packer", "packer/etherpad.pkr.hcl",
     'variable "region" {\n  type    = string', 'variable "region" {\n  type    = strng',
     ["packer/etherpad.pkr.hcl", "strng"]),
    ("Packer: HCL that does not parse", "packer", "packer/etherpad.pkr.hcl",
     "locals {", "locals {{", ["packer/etherpad.pkr.hcl:", "invalid HCL"]),
]


@pytest.mark.parametrize("title,check,file,old,new,says", ASSETS, ids=[a[0] for a in ASSETS])
def test_bad_assets_are_findings_of_validate(bad_input, home: Path, assets: Path, title, check,
                                             file, old, new, says):
    broken(assets, file, old, new)
    bad_input.title, bad_input.where = title, f"deployer validate --check {check}"
    result = run(home, "validate", "--assets", str(assets), "--check", check)
    findings = result.stdout.strip().splitlines()[:-1]
    bad_input.exit_code = result.returncode
    bad_input.message = findings[0] if findings else ""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert findings, result.stdout
    hit = [line for line in findings if all(text in line for text in says)]
    assert hit, findings
    bad_input.message = hit[0]
    assert str(assets) not in hit[0]
    nothing_created(home)

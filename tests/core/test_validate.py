"""`deployer validate` on the assets that ship (clean) and on broken copies (a finding each)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.base.assets import assets_root
from deployer.core.validate import CHECKS, validate_assets

REPO = Path(__file__).resolve().parents[2]


def no_tools(name: str) -> None:
    return None


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "assets"
    for name in ("appspec", "packer", "etherpad"):
        shutil.copytree(assets_root() / name, root / name)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deployer", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "DEPLOYER_HOME": str(home)})


def test_the_shipped_assets_are_clean_with_every_tool_there_is(tmp_path: Path):
    result = cli("validate", home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no findings; checked ")
    for tool in ("cfn-lint", "packer", "shellcheck"):
        if shutil.which(tool):
            assert tool in lines[0] and "skipped" not in lines[0].split(tool)[0][-12:]


def test_without_optional_tools_the_readers_still_check_and_say_what_was_skipped():
    result = validate_assets(assets_root(), which=no_tools)
    assert result.findings == []
    assert sorted(result.skipped) == ["cfn-lint", "packer", "shellcheck"]
    assert "skipped (not installed): " in result.lines()[-1]


BREAKAGES = [
    # (file, old, new, check, where, what)
    ("appspec/appspec.yml", "version: 0.0", "version: 1.0", "appspec",
     "appspec/appspec.yml: version", "it must be exactly 0.0"),
    ("appspec/appspec.yml", "timeout: 900", "timeout: 4000", "appspec",
     "appspec/appspec.yml: hooks.AfterInstall", "at most 3600 s"),
    ("appspec/appspec.yml", "location: hooks/before-install.sh",
     "location: hooks/before-instal.sh", "appspec",
     "appspec/appspec.yml: hooks.BeforeInstall[0].location", "is not in the revision"),
    ("etherpad/stacks/packer.yaml", "HealthCheckIntervalSeconds: 5",
     "HealthCheckIntervalSeconds: 1", "template", "etherpad/stacks/packer.yaml:",
     "HealthCheckIntervalSeconds: 1 is out of range (5..300)"),
    ("etherpad/stacks/codedeploy.yaml", "      HealthCheckType: ELB\n",
     "      HealthCheckType: ELB\n      MaxInstanceLifetime: 86400\n", "template",
     "etherpad/stacks/codedeploy.yaml:", "property MaxInstanceLifetime is not supported"),
    ("etherpad/stacks/cloudformation.yaml", "set -uo pipefail", "set -uo pipefail\n"
     "            if [ -n x ]; then", "user data (bash -n)",
     "etherpad/stacks/cloudformation.yaml: LaunchTemplate.LaunchTemplateData.UserData line",
     "syntax error"),
    ("packer/etherpad.pkr.hcl", 'variable "etherpad_source" {', 'variable "etherpad_src" {',
     "packer", "packer/etherpad.pkr.hcl", 'Undefined -var variable: A "etherpad_source"'),
    ("packer/etherpad.pkr.hcl", "instance_type   = var.instance_type",
     "instance_type   = var.instance_typ", "packer", "packer/etherpad.pkr.hcl",
     "instance_typ"),
    ("etherpad/bin/stop-etherpad.sh", 'rm -f "$PIDFILE"\nsay "stopped',
     'rm -f "$PIDFILE"\nif [ -f x ]; then\nsay "stopped', "bash -n",
     "etherpad/bin/stop-etherpad.sh:", "unexpected end of file"),
    ("packer/provision.sh", 'say "node $(node --version)', 'say "node $(node --version',
     "sh -n", "packer/provision.sh:", "Unterminated quoted string"),
]


@pytest.mark.parametrize("file,old,new,check,where,what", BREAKAGES,
                         ids=[f"{b[0]}:{b[3]}" for b in BREAKAGES])
def test_each_broken_copy_gets_a_finding_that_names_where(copy: Path, file, old, new, check,
                                                         where, what):
    edit(copy / file, old, new)
    result = validate_assets(copy, which=no_tools)
    assert result.findings, "no finding"
    hits = [f for f in result.findings if f.check == check and f.where.startswith(where)
            and what in f.message]
    assert hits, [f.line() for f in result.findings]
    line = hits[0].line()
    assert "\n" not in line and str(copy) not in line  # one line, paths as in the assets


@pytest.mark.skipif(not shutil.which("cfn-lint"), reason="cfn-lint is not installed")
def test_cfn_lint_findings_carry_file_line_and_rule(copy: Path):
    # The local cloud's reader lets an unused parameter be; cfn-lint warns about it.
    edit(copy / "etherpad/stacks/packer.yaml", "Parameters:\n",
         "Parameters:\n  Forgotten:\n    Type: String\n    Default: never-used\n")
    result = validate_assets(copy, ["templates"])
    lint = [f for f in result.findings if f.check == "cfn-lint"]
    assert lint and lint[0].where.startswith("etherpad/stacks/packer.yaml:")
    assert lint[0].message == "W2001 Parameter Forgotten not used."


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed")
def test_shellcheck_warnings_in_scripts_and_user_data(copy: Path):
    edit(copy / "appspec/hooks/env.sh", "\n", '\necho "$never_set_anywhere"\n')
    result = validate_assets(copy, ["scripts"])
    assert any(f.check == "shellcheck" and f.where.startswith("appspec/hooks/env.sh:")
               and "SC2154" in f.message for f in result.findings), result.lines()


def test_the_cli_exits_1_on_findings_and_2_on_bad_usage(copy: Path, tmp_path: Path):
    edit(copy / "appspec/appspec.yml", "os: linux", "os: plan9")
    broken = cli("validate", "--assets", str(copy), "--check", "appspec", home=tmp_path)
    assert broken.returncode == 1
    lines = broken.stdout.strip().splitlines()
    assert lines[0] == ("appspec/appspec.yml: os: appspec: is 'plan9'; use linux or windows")
    assert lines[-1].startswith("1 finding(s); checked 1: appspec")
    assert cli("validate", "--check", "everything", home=tmp_path).returncode == 2
    not_assets = cli("validate", "--assets", str(tmp_path), home=tmp_path)
    assert not_assets.returncode == 2 and "is not a deployer assets folder" in not_assets.stderr
    assert set(CHECKS) == {"appspec", "templates", "packer", "scripts"}

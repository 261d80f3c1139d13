"""cfn-lint on the three real templates (CI installs it through the [test] extras)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.base.assets import asset_path

TEMPLATES = sorted(asset_path("etherpad", "stacks").glob("*.yaml"))


def cfn_lint() -> list[str] | None:
    beside = Path(sys.executable).with_name("cfn-lint")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("cfn-lint")
    return [found] if found else None


@pytest.mark.skipif(cfn_lint() is None, reason="cfn-lint is not installed")
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_passes(template):
    done = subprocess.run([*cfn_lint(), str(template)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_there_are_three_templates():
    assert [p.name for p in TEMPLATES] == ["cloudformation.yaml", "codedeploy.yaml", "packer.yaml"]

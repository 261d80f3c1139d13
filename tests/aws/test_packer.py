"""The packer CLI driver with a fake packer on PATH (tests/aws/fake_packer.sh): init where
the version needs it, progress as events, the AMI from the manifest's last run, the
artifact line as fallback, failures and a missing binary as one line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deployer.aws.packer import PackerCli, machine_readable, parse_version
from deployer.base.assets import asset_path
from deployer.base.errors import CloudError, ConfigError

FAKE = Path(__file__).with_name("fake_packer.sh")
TEMPLATE = asset_path("packer", "etherpad.pkr.hcl")
VARIABLES = {"etherpad_version": "1.8.18", "etherpad_source": "github"}


@pytest.fixture
def packer_env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(FAKE, bin_dir / "packer")
    log = tmp_path / "packer.log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_PACKER_LOG": str(log)}
    return env, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_build_streams_progress_and_reads_the_manifest(packer_env):
    env, log = packer_env
    events: list = []
    image = PackerCli(env=env).build(TEMPLATE, dict(VARIABLES), "us-east-1", events.append)
    assert image == "ami-0new"  # the last run's build, in this region, not the older run's
    build = calls(log)[-1]
    assert build.startswith("build -machine-readable")
    assert "-var etherpad_version=1.8.18" in build and "-var region=us-east-1" in build
    assert build.endswith(str(TEMPLATE.resolve()))
    # Packer ran in a temporary folder (the manifest landed there), since removed.
    cwd = Path(Path(str(log) + ".cwd").read_text().strip())
    assert cwd.name.startswith("deployer-packer-") and not cwd.exists()
    said = [(e.status, e.reason) for e in events if e.source == "image"]
    assert ("say", "==> amazon-ebs.etherpad: Prevalidating AMI Name: etherpad-1.8.18") in said
    assert ("message", "amazon-ebs.etherpad: npm ci, 480 packages") in said
    assert ("artifact", "us-east-1:ami-0new") in said


@pytest.mark.parametrize("version, expected", [
    ("1.6.6", ["version", "build"]),
    ("1.9.4", ["version", "init", "build"]),
    ("1.11.2", ["version", "init", "plugins installed", "plugins install", "build"]),
])
def test_init_and_plugins_only_where_the_version_needs_them(packer_env, version, expected):
    env, log = packer_env
    env["FAKE_PACKER_VERSION"] = version
    PackerCli(env=env).build(TEMPLATE, dict(VARIABLES), "us-east-1", lambda e: None)
    seen = [" ".join(c.split()[:2]) if c.startswith("plugins") else c.split()[0]
            for c in calls(log)]
    assert seen == expected
    if version == "1.11.2":
        assert calls(log)[3] == "plugins install github.com/hashicorp/amazon"


def test_artifact_line_when_there_is_no_manifest(packer_env):
    env, _ = packer_env
    env.update(FAKE_PACKER_NO_MANIFEST="1", FAKE_PACKER_AMI="ami-0fromline")
    assert PackerCli(env=env).build(TEMPLATE, dict(VARIABLES), "us-east-1",
                                    lambda e: None) == "ami-0fromline"


def test_failed_build_is_one_line_with_packers_error(packer_env):
    env, _ = packer_env
    env["FAKE_PACKER_FAIL"] = "Timeout waiting for SSH."
    with pytest.raises(CloudError) as caught:
        PackerCli(env=env).build(TEMPLATE, dict(VARIABLES), "us-east-1", lambda e: None)
    assert str(caught.value).startswith("packer build failed (exit 1): Build "
                                        "'amazon-ebs.etherpad' errored after 3 minutes: "
                                        "Timeout waiting for SSH.")


def test_missing_packer_says_how_to_install_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        PackerCli(env={"PATH": str(tmp_path)}).build(TEMPLATE, dict(VARIABLES), "us-east-1",
                                                     lambda e: None)
    assert str(caught.value).startswith("packer not found (packer) (install Packer: "
                                        "'apt-get install packer'")


def test_bad_variables_fail_before_packer_runs(packer_env):
    env, log = packer_env
    with pytest.raises(ConfigError, match="etherpad_version"):
        PackerCli(env=env).build(TEMPLATE, {"etherpad_version": ""}, "us-east-1", lambda e: None)
    assert not log.exists()


def test_version_and_line_parsing():
    assert parse_version("Packer v1.6.6\n\nYour version of Packer is out of date!") == (1, 6, 6)
    assert parse_version("1.10.0") == (1, 10, 0)
    assert machine_readable("1700000000,,ui,say,a%!(PACKER_COMMA) b\\nc") == \
        ("", "ui", ["say", "a, b\nc"])
    assert machine_readable("==> not machine readable") is None


def test_build_image_tags_and_describes_the_ami(moto_session, packer_env, clock):
    from deployer.aws.provider import AwsCloud

    env, _ = packer_env
    ec2 = moto_session.client("ec2")
    ami = ec2.register_image(Name="etherpad-1.8.18-20240101", RootDeviceName="/dev/sda1")["ImageId"]
    env["FAKE_PACKER_AMI"] = ami
    cloud = AwsCloud(moto_session, clock=clock, packer=PackerCli(env=env))
    events: list = []
    image = cloud.build_image(TEMPLATE, dict(VARIABLES), events.append)
    assert image.image_id == ami and image.release == "1.8.18"
    assert image.tags["Application"] == "etherpad" and image.size_bytes > 0
    assert ami in {i.image_id for i in cloud.list_images()}
    assert events[-1].status == "available"


@pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed")
def test_packer_validate_accepts_the_template():
    """What CI's packer (Debian's 1.6.6, installed by ./run) says of the real template."""
    env = {**os.environ, "CHECKPOINT_DISABLE": "1"}
    done = subprocess.run(["packer", "validate", "-var", "etherpad_version=1.8.18",
                           TEMPLATE.name], cwd=TEMPLATE.parent, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

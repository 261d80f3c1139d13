"""The local cloud's image builder: a Packer template's provisioners on a build host."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer.base.errors import CloudError, UnsupportedProperty
from deployer.cloud.port import Event
from deployer.localcloud.images.builder import (
    BuildFailed,
    LocalImageBuilder,
    ProvisionerState,
    flattened_vars,
    go_duration,
)
from deployer.packer.manifest import read_manifest_artifact
from deployer.packer.template import load_packer_template

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
COMMAND_TIMEOUT_S = 30


class SubprocessHost:
    """A build host that is a directory: commands run here, with cwd at its root."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.commands: list[list[str]] = []

    def run(self, argv: list[str], env: dict[str, str], log: Callable[[str], None]) -> int:
        self.commands.append(argv)
        proc = subprocess.Popen(argv, cwd=self.root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        for line in out.splitlines():
            log(line)
        return proc.returncode


@pytest.fixture
def host(tmp_path) -> SubprocessHost:
    root = tmp_path / "host"
    (root / "opt").mkdir(parents=True)
    return SubprocessHost(root, {"PATH": os.environ["PATH"], "ETHERPAD_HOME": str(root / "opt/etherpad"),
                                 "LANG": "C.UTF-8"})


@pytest.fixture
def project(tmp_path) -> Path:
    """A template folder with an asset folder beside it, like packer/ and etherpad/."""
    folder = tmp_path / "project"
    (folder / "assets" / "bin").mkdir(parents=True)
    (folder / "assets" / "bin" / "hello.sh").write_text("echo hello\n")
    (folder / "assets" / "README").write_text("assets\n")
    (folder / "tpl").mkdir()
    return folder


def write_template(project: Path, build_body: str, variables=None):
    text = """
variable "release" {
  type = string
}
source "amazon-ebs" "app" {
  ami_name      = "app-${var.release}"
  instance_type = "t3.micro"
  region        = "eu-west-1"
  source_ami    = "ami-0123456789abcdef0"
  ssh_username  = "ubuntu"
}
build {
  sources = ["source.amazon-ebs.app"]
""" + build_body + "\n}\n"
    path = project / "tpl" / "app.pkr.hcl"
    path.write_text(text)
    return load_packer_template(path, variables or {"release": "2.0"}, now=NOW)


def builder(template, tmp_path, events: list[Event]) -> LocalImageBuilder:
    return LocalImageBuilder(template, tmp_path / "work", events.append, run_uuid="run-0001")


# --- provisioning ----------------------------------------------------------------------------

def test_provisioners_run_in_order_on_the_host(project, tmp_path, host):
    (project / "tpl" / "setup.sh").write_text(
        'set -e\necho "release=$RELEASE name=$PACKER_BUILD_NAME type=$PACKER_BUILDER_TYPE"\n'
        'mkdir -p "$ETHERPAD_HOME"\ncp -R "$(dirname "$0")/assets/bin" "$ETHERPAD_HOME/"\n'
        'echo "$RELEASE" > "$ETHERPAD_HOME/RELEASE"\n')
    template = write_template(project, """
  provisioner "file" {
    source      = "${path.root}/../assets"
    destination = "/tmp"
  }
  provisioner "file" {
    content     = "built for ${var.release}\\n"
    destination = "/opt/notes.txt"
  }
  provisioner "shell" {
    script           = "setup.sh"
    environment_vars = ["RELEASE=${var.release}"]
    execute_command  = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh '{{ .Path }}'"
  }
  provisioner "shell" {
    inline = ["echo never"]
    only   = ["amazon-ebs.other"]
  }
""")
    events: list[Event] = []
    image = builder(template, tmp_path, events)
    image.provision(host)

    root = host.root
    assert (root / "tmp/assets/README").read_text() == "assets\n"
    assert (root / "opt/notes.txt").read_text() == "built for 2.0\n"
    assert (root / "opt/etherpad/RELEASE").read_text() == "2.0\n"
    assert (root / "opt/etherpad/bin/hello.sh").is_file()
    assert not list((root / "tmp").glob("script_*.sh"))  # Packer cleans its scripts up
    log = (tmp_path / "work/build.log").read_text()
    assert "provisioner 2 (shell): release=2.0 name=app type=amazon-ebs" in log

    assert [r.state for r in image.runs] == [ProvisionerState.SUCCEEDED] * 3 + [ProvisionerState.SKIPPED]
    assert [(e.resource, e.status) for e in events] == [
        ("provisioner 0 (file)", "started"), ("provisioner 0 (file)", "succeeded"),
        ("provisioner 1 (file)", "started"), ("provisioner 1 (file)", "succeeded"),
        ("provisioner 2 (shell)", "started"), ("provisioner 2 (shell)", "succeeded"),
        ("provisioner 3 (shell)", "skipped"),
    ]
    assert all(e.source == "image" for e in events)
    assert events[5].reason.endswith(" s")
    assert image.runs[2].duration_s >= 0


def test_inline_commands_stop_at_the_first_failure(project, tmp_path, host):
    template = write_template(project, """
  provisioner "shell" {
    inline = ["echo before > /dev/null", "echo about to fail", "false", "touch $ETHERPAD_HOME-after"]
  }
  provisioner "shell" {
    inline = ["touch never-run"]
  }
""")
    events: list[Event] = []
    image = builder(template, tmp_path, events)
    with pytest.raises(BuildFailed) as err:
        image.provision(host)
    assert err.value.index == 0
    assert err.value.exit_code == 1
    assert "about to fail" in err.value.last_lines
    assert "provisioner 0 (shell)" in str(err.value)
    assert "(exit code 1)" in str(err.value)
    assert isinstance(err.value, CloudError)
    assert not Path(host.env["ETHERPAD_HOME"] + "-after").exists()
    assert not (host.root / "never-run").exists()
    assert [(e.resource, e.status) for e in events][-1] == ("provisioner 0 (shell)", "failed")
    assert [r.state for r in image.runs] == [ProvisionerState.FAILED, ProvisionerState.PENDING]
    script = (tmp_path / "work/inline-0.sh").read_text()
    assert script.startswith("#!/bin/sh -e\n")


def test_sudo_runs_as_the_host_user_with_a_relative_work_dir(project, tmp_path, host, monkeypatch):
    template = write_template(project, """
  provisioner "shell" {
    inline          = ["id -u > uid"]
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E -H sh -c '{{ .Path }}'"
  }
""")
    monkeypatch.chdir(tmp_path)
    LocalImageBuilder(template, Path("work"), lambda e: None).provision(host)
    assert (host.root / "uid").read_text() == f"{os.getuid()}\n"


def test_environment_vars_reach_the_script_exactly(project, tmp_path, host):
    tricky = ["it's", 'say "hi"', "a b  c", "$HOME", "back\\slash", "semi;colon", "x=y"]
    pairs = ", ".join(f'"V{i}={v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                      for i, v in enumerate(tricky))
    template = write_template(project, f"""
  provisioner "shell" {{
    inline           = ["env > $ETHERPAD_HOME.env"]
    environment_vars = [{pairs}]
  }}
""")
    builder(template, tmp_path, []).provision(host)
    lines = Path(host.env["ETHERPAD_HOME"] + ".env").read_text().splitlines()
    seen = dict(line.split("=", 1) for line in lines if line.startswith("V"))
    assert seen == {f"V{i}": v for i, v in enumerate(tricky)}


def test_flattened_vars_are_sorted_and_quoted_like_packers():
    assert flattened_vars({"B": "it's", "A": "1"}) == "A='1' B='it'\"'\"'s' "
    assert flattened_vars({"A": "1"}, "export %s=\"%s\"; ") == 'export A="1"; '


def test_retries_then_succeeds(project, tmp_path, host):
    template = write_template(project, """
  provisioner "shell" {
    inline      = ["echo x >> attempts", "[ $(wc -l < attempts) -ge 2 ]"]
    max_retries = 2
  }
""")
    image = builder(template, tmp_path, [])
    image.provision(host)
    assert (host.root / "attempts").read_text() == "x\nx\n"
    assert image.runs[0].attempts == 2


def test_file_provisioner_rules(project, tmp_path, host):
    (host.root / "srv").mkdir()
    template = write_template(project, """
  provisioner "file" {
    source      = "../assets/"
    destination = "/srv/contents"
  }
  provisioner "file" {
    source      = "../assets/bin/hello.sh"
    destination = "/srv/"
  }
  provisioner "file" {
    source      = "../assets/README"
    destination = "/srv/renamed.txt"
  }
""")
    builder(template, tmp_path, []).provision(host)
    srv = host.root / "srv"
    assert (srv / "contents/README").is_file() and (srv / "contents/bin/hello.sh").is_file()
    assert (srv / "hello.sh").read_text() == "echo hello\n"
    assert (srv / "renamed.txt").read_text() == "assets\n"


@pytest.mark.parametrize("source, destination, error, message", [
    ("../assets/README", "/var/lib/app/README", BuildFailed,
     "destination /var/lib/app/README: its parent directory does not exist"),
    ("../nothing-here", "/tmp", BuildFailed, "source ../nothing-here does not exist"),
    ("../assets/README", "/../../escaped", CloudError, "leaves the build host's root"),
])
def test_file_provisioner_refuses(project, tmp_path, host, source, destination, error, message):
    template = write_template(project, f"""
  provisioner "file" {{
    source      = "{source}"
    destination = "{destination}"
  }}
""")
    with pytest.raises(error, match=re.escape(message)):
        builder(template, tmp_path, []).provision(host)
    assert not (tmp_path / "escaped").exists()


def test_build_variables_are_filled_in(project, tmp_path, host):
    template = write_template(project, """
  provisioner "shell" {
    inline = ["echo ${build.PackerRunUUID} ${build.ID} > ids"]
  }
""")
    builder(template, tmp_path, []).provision(host)
    assert (host.root / "ids").read_text() == "run-0001 local-run-0001\n"


def test_what_the_local_host_cannot_do_is_refused_before_anything_runs(project, tmp_path):
    template = write_template(project, 'provisioner "ansible" {\n  playbook_file = "site.yml"\n}')
    with pytest.raises(UnsupportedProperty, match="provisioner 0: property ansible"):
        builder(template, tmp_path, [])
    template = write_template(project, 'provisioner "shell" {\n  inline = ["true"]\n  timeout = "5m"\n}')
    with pytest.raises(UnsupportedProperty, match="property timeout"):
        builder(template, tmp_path, [])
    # Not for this source: nothing to refuse.
    template = write_template(project, 'provisioner "ansible" {\n  playbook_file = "x"\n'
                                       '  only = ["amazon-ebs.other"]\n}')
    assert builder(template, tmp_path, []).runs[0].type == "ansible"


def test_go_durations():
    assert go_duration("1m30s") == 90
    assert go_duration("500ms") == 0.5
    assert go_duration(None) == 0
    with pytest.raises(ValueError):
        go_duration("soon")


# --- the manifest ----------------------------------------------------------------------------

def test_manifest_after_registration(project, tmp_path, host):
    template = write_template(project, """
  post-processor "manifest" {
    output      = "out/manifest.json"
    custom_data = { release = var.release }
  }
""")
    image = builder(template, tmp_path, [])
    image.provision(host)
    path = image.write_manifest("ami-0123456789abcdef0")
    assert path == tmp_path / "work/out/manifest.json"
    assert read_manifest_artifact(path) == "ami-0123456789abcdef0"
    assert '"artifact_id": "eu-west-1:ami-0123456789abcdef0"' in path.read_text()
    assert '"custom_data": {\n        "release": "2.0"' in path.read_text()
    # The next build appends; reading still picks the latest run.
    again = LocalImageBuilder(template, tmp_path / "work", lambda e: None, run_uuid="run-0002")
    again.write_manifest("ami-0fedcba9876543210", region="local")
    assert read_manifest_artifact(path) == "ami-0fedcba9876543210"


def test_no_manifest_post_processor_no_manifest(project, tmp_path):
    template = write_template(project, "")
    assert builder(template, tmp_path, []).write_manifest("ami-1") is None


# --- the real template -----------------------------------------------------------------------

def fake_tools(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        tool = folder / name
        tool.write_text(f'#!/bin/sh\necho "{name} 10.0.0"\n')
        tool.chmod(0o755)
    return folder


def real_layout(tmp_path: Path, installer: str) -> Path:
    """packer/ from this repo beside a stand-in etherpad/ whose installer is ``installer``."""
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "packer", checkout / "packer")
    (checkout / "etherpad/bin").mkdir(parents=True)
    (checkout / "etherpad/bin/install-etherpad.sh").write_text(installer)
    return checkout / "packer" / "etherpad.pkr.hcl"


FAKE_INSTALLER = """#!/usr/bin/env bash
set -euo pipefail
assets=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$ETHERPAD_HOME/deployer"
echo "$ETHERPAD_RELEASE from $ETHERPAD_SOURCE" > "$ETHERPAD_HOME/RELEASE"
cp -R "$assets/bin" "$ETHERPAD_HOME/deployer/"
"""


def test_real_template_provisions_a_local_build_host(tmp_path, host):
    path = real_layout(tmp_path, FAKE_INSTALLER)
    template = load_packer_template(path, {"etherpad_version": "1.8.14", "etherpad_source": "npm"}, now=NOW)
    # node and npm present on the host: provision.sh must not reach for apt-get.
    tools = fake_tools(tmp_path / "tools", ["node", "npm", "git", "apt-get"])
    (tools / "apt-get").write_text("#!/bin/sh\necho apt-get must not run >&2\nexit 99\n")
    host.env["PATH"] = f"{tools}:{host.env['PATH']}"
    events: list[Event] = []
    image = LocalImageBuilder(template, tmp_path / "work", events.append, run_uuid="run-real")
    image.provision(host)

    home = host.root / "opt/etherpad"
    assert (home / "RELEASE").read_text() == "1.8.14 from npm\n"
    assert (home / "deployer/bin/install-etherpad.sh").is_file()
    assert not (host.root / "tmp/etherpad").exists()  # the upload is cleaned up
    log = (tmp_path / "work/build.log").read_text()
    assert "nothing to install" in log
    assert [e.status for e in events] == ["started", "succeeded"] * 2
    manifest = image.write_manifest("ami-0aaaabbbbccccdddd")
    assert manifest == tmp_path / "work/packer-manifest.json"
    assert read_manifest_artifact(manifest) == "ami-0aaaabbbbccccdddd"


def test_real_template_reports_a_failing_install(tmp_path, host):
    path = real_layout(tmp_path, '#!/usr/bin/env bash\necho "install-etherpad.sh: error: no such '
                                 'release (pick another)" >&2\nexit 1\n')
    template = load_packer_template(path, {"etherpad_version": "0.0.1"}, now=NOW)
    tools = fake_tools(tmp_path / "tools", ["node", "npm", "git"])
    host.env["PATH"] = f"{tools}:{host.env['PATH']}"
    with pytest.raises(BuildFailed) as err:
        LocalImageBuilder(template, tmp_path / "work", lambda e: None).provision(host)
    assert err.value.index == 1
    assert err.value.exit_code == 1
    assert "install-etherpad.sh: error: no such release (pick another)" in str(err.value)
    assert not (host.root / "opt/etherpad").exists()


def test_real_template_without_node_and_without_apt(tmp_path, host):
    path = real_layout(tmp_path, FAKE_INSTALLER)
    template = load_packer_template(path, {"etherpad_version": "1.8.14"}, now=NOW)
    # A PATH with only the basics: no node, npm, git or apt-get.
    basics = tmp_path / "basics"
    basics.mkdir()
    for name in ("sh", "chmod", "dirname", "rm", "bash"):
        (basics / name).symlink_to(shutil.which(name))
    host.env["PATH"] = str(basics)
    with pytest.raises(BuildFailed, match="missing: nodejs npm git, and no apt-get to install them"):
        LocalImageBuilder(template, tmp_path / "work", lambda e: None).provision(host)

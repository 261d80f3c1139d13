"""Reading Packer templates, and the manifest Packer writes: deployer.packer.template."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer.base.errors import CloudError, ConfigError
from deployer.packer.manifest import (
    ManifestBuild,
    parse_machine_readable_artifact,
    read_manifest_artifact,
    write_manifest,
)
from deployer.packer.model import FileProvisioner, ShellProvisioner
from deployer.packer.template import load_packer_template

REPO = Path(__file__).resolve().parents[2]
REAL_TEMPLATE = REPO / "packer" / "etherpad.pkr.hcl"
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

SOURCE = """
source "amazon-ebs" "web" {
  ami_name      = "web-${var.release}"
  instance_type = "t3.micro"
  region        = "eu-west-1"
  source_ami    = "ami-0123456789abcdef0"
  ssh_username  = "ubuntu"
}
"""
RELEASE = 'variable "release" {\n  type = string\n  default = "1.0"\n}\n'


def write(tmp_path: Path, text: str, name: str = "t.pkr.hcl") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def template(tmp_path: Path, build_body: str, extra: str = "", variables=None):
    text = RELEASE + extra + SOURCE + 'build {\n  sources = ["source.amazon-ebs.web"]\n' + build_body + "\n}\n"
    return load_packer_template(write(tmp_path, text), variables, now=NOW)


# --- the real template ------------------------------------------------------------------------

def test_real_template_with_a_release():
    t = load_packer_template(REAL_TEMPLATE, {"etherpad_version": "1.8.14"}, now=NOW)

    source = t.source("amazon-ebs.etherpad")
    assert source.ami_name == "etherpad-1.8.14-20240102030405"
    assert source.region == "us-east-1"
    assert source.instance_type == "t3.small"
    assert source.get("ssh_username") == "ubuntu"
    assert source.source_ami_filter["owners"] == ["099720109477"]
    assert "jammy-22.04" in source.source_ami_filter["filters"]["name"]
    assert source.tags["Application"] == "etherpad"
    assert source.tags["Release"] == "1.8.14"
    assert not t.needs_init  # Packer 1.6 rejects required_plugins
    assert t.required_version == ">= 1.6.6"

    (build,) = t.builds
    assert build.sources == ["amazon-ebs.etherpad"]
    upload, shell = build.provisioners
    assert isinstance(upload, FileProvisioner)
    assert Path(upload.source).resolve() == REPO / "etherpad"
    assert upload.destination == "/tmp"
    assert isinstance(shell, ShellProvisioner)
    assert Path(shell.script) == REPO / "packer" / "provision.sh"
    assert shell.environment == {"ETHERPAD_RELEASE": "1.8.14", "ETHERPAD_SOURCE": "github"}
    assert "ETHERPAD_HOME" not in shell.environment  # the host's environment decides it
    manifest = build.manifest
    assert manifest.output == "packer-manifest.json"
    assert manifest.strip_path is True
    assert manifest.custom_data == {"release": "1.8.14", "source": "github"}


def test_real_template_overrides_from_flags_and_var_files(tmp_path):
    var_file = write(tmp_path, 'region = "eu-central-1"\ninstance_type = "t3.medium"\n',
                     "aws.pkrvars.hcl")
    t = load_packer_template(REAL_TEMPLATE, {"etherpad_version": "1.8.18", "region": "eu-west-3",
                                             "etherpad_source": "npm"},
                             var_files=[var_file], now=NOW)
    source = t.source("amazon-ebs.etherpad")
    assert source.region == "eu-west-3"  # -var beats the file
    assert source.instance_type == "t3.medium"  # the file beats the default
    assert t.builds[0].provisioners[1].environment["ETHERPAD_SOURCE"] == "npm"


def test_real_template_needs_the_release():
    with pytest.raises(ConfigError) as err:
        load_packer_template(REAL_TEMPLATE, {}, now=NOW)
    assert 'Unset variable "etherpad_version"' in str(err.value)
    assert err.value.location.startswith(str(REAL_TEMPLATE))


def test_real_template_refuses_an_undeclared_variable():
    with pytest.raises(ConfigError) as err:
        load_packer_template(REAL_TEMPLATE, {"etherpad_version": "1.8.14", "foo": "x"}, now=NOW)
    assert 'Undefined -var variable: A "foo" variable was passed' in str(err.value)


def test_real_template_validation_rule():
    with pytest.raises(ConfigError, match='Invalid value for variable "etherpad_version": '
                                          "The etherpad_version variable must name a release"):
        load_packer_template(REAL_TEMPLATE, {"etherpad_version": ""}, now=NOW)
    t = load_packer_template(REAL_TEMPLATE, {"etherpad_version": "1.8.14"}, now=NOW)
    assert [v.checked for v in t.variables["etherpad_version"].validations] == [True]


@pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed")
def test_packer_accepts_the_real_template_syntax():
    result = subprocess.run(["packer", "validate", "-syntax-only", str(REAL_TEMPLATE)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed")
def test_packer_validates_the_real_template_fully(tmp_path):
    # Full validation checks that the file provisioner's source exists: give it the layout
    # of a checkout (packer/ beside etherpad/) without depending on the asset folder.
    (tmp_path / "packer").mkdir()
    (tmp_path / "etherpad").mkdir()
    for name in ("etherpad.pkr.hcl", "provision.sh"):
        shutil.copy(REPO / "packer" / name, tmp_path / "packer" / name)
    result = subprocess.run(["packer", "validate", "-var", "etherpad_version=1.8.14",
                             str(tmp_path / "packer" / "etherpad.pkr.hcl")],
                            check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    missing = subprocess.run(["packer", "validate", str(tmp_path / "packer" / "etherpad.pkr.hcl")],
                             check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert missing.returncode != 0
    assert 'Unset variable "etherpad_version"' in missing.stdout + missing.stderr


# --- variables --------------------------------------------------------------------------------

TYPED = """
variable "count" {
  type    = number
  default = 2
}
variable "enabled" {
  type    = bool
  default = false
}
variable "zones" {
  type    = list(string)
  default = ["a", "b"]
}
variable "labels" {
  type    = map(string)
  default = { team = "pads" }
}
variable "secret" {
  type      = string
  default   = "s3cret"
  sensitive = true
}
"""


def test_typed_variables_from_defaults_and_flags(tmp_path):
    t = template(tmp_path, "", TYPED)
    assert t.variable_values() | {} == {"release": "1.0", "count": 2, "enabled": False,
                                       "zones": ["a", "b"], "labels": {"team": "pads"},
                                       "secret": "s3cret"}
    assert t.variables["secret"].sensitive
    assert "s3cret" not in repr(t) and "<sensitive>" in repr(t.variables["secret"])
    t = template(tmp_path, "", TYPED, {"count": "5", "enabled": "true", "zones": '["x", "y", "z"]',
                                       "labels": '{ team = "ops", tier = "web" }'})
    assert t.variables["count"].value == 5
    assert t.variables["enabled"].value is True
    assert t.variables["zones"].value == ["x", "y", "z"]
    assert t.variables["labels"].value == {"team": "ops", "tier": "web"}


@pytest.mark.parametrize(("name", "value", "message"), [
    ("count", "many", 'variable "count": a number is required'),
    ("enabled", "yes", 'variable "enabled": a bool is required'),
    ("zones", '"x"', 'variable "zones": a list is required'),
])
def test_wrongly_typed_values_name_the_variable(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=message):
        template(tmp_path, "", TYPED, {name: value})


def test_json_var_file_and_undeclared_names_in_files_are_ignored(tmp_path):
    var_file = tmp_path / "v.pkrvars.json"
    var_file.write_text(json.dumps({"release": "2.0", "undeclared": "x"}))
    t = load_packer_template(write(tmp_path, RELEASE + SOURCE + 'build {\n sources = ["source.amazon-ebs.web"]\n}\n'),
                             var_files=[var_file], now=NOW)
    assert t.source("amazon-ebs.web").ami_name == "web-2.0"


def test_unsupported_variable_type(tmp_path):
    with pytest.raises(ConfigError, match="unsupported variable type"):
        template(tmp_path, "", 'variable "o" {\n  type = object({ a = string })\n}\n')


def test_validation_must_refer_to_its_variable(tmp_path):
    extra = 'variable "v" {\n  default = "x"\n  validation {\n    condition = true\n' \
            '    error_message = "never"\n  }\n}\n'
    with pytest.raises(ConfigError, match=r"must refer to var.v"):
        template(tmp_path, "", extra)


def test_validation_with_an_unknown_function_is_recorded_unchecked(tmp_path):
    extra = 'variable "v" {\n  default = "x"\n  validation {\n' \
            '    condition = cidrhost(var.v, 1) != ""\n    error_message = "bad"\n  }\n}\n'
    t = template(tmp_path, "", extra)
    assert [v.checked for v in t.variables["v"].validations] == [False]


def test_validation_with_regex(tmp_path):
    extra = 'variable "v" {\n  default = "1.8.18"\n  validation {\n' \
            '    condition = can(regex("^[0-9]+\\\\.[0-9]+\\\\.[0-9]+$", var.v))\n' \
            '    error_message = "The v value must look like 1.8.18."\n  }\n}\n'
    assert template(tmp_path, "", extra).variables["v"].validations[0].checked
    with pytest.raises(ConfigError, match=r"must look like 1.8.18"):
        template(tmp_path, "", extra, {"v": "latest"})


# --- locals and functions -------------------------------------------------------------------

def test_locals_refer_to_each_other_in_any_order(tmp_path):
    extra = """
locals {
  full  = "${local.base}-${formatdate("YYYY-MM-DD'T'hh.mm.ss", timestamp())}"
  base  = var.release
  parts = regex("^(\\\\d+)\\\\.(\\\\d+)$", var.release)
  pick  = var.release == "1.0" ? "first" : "later"
}
local "joined" {
  expression = "${local.parts[0]}+${local.parts[1]}"
}
"""
    t = template(tmp_path, "", extra)
    assert t.locals == {"full": "1.0-2024-01-02T03.04.05", "base": "1.0", "parts": ["1", "0"],
                        "pick": "first", "joined": "1+0"}


@pytest.mark.parametrize(("spec", "expected"), [
    ("YYYYMMDDhhmmss", "20240102030405"),
    ("DD MMM YYYY hh:mm ZZZ", "02 Jan 2024 03:04 UTC"),
    ("EEEE, MMMM D, YY h:m:s aa", "Tuesday, January 2, 24 3:4:5 am"),
    ("HH AA ZZZZZ Z", "03 AM +00:00 Z"),
    ("'literal' ''", "literal '"),
])
def test_formatdate(tmp_path, spec, expected):
    extra = f'locals {{\n  d = formatdate("{spec}", "2024-01-02T03:04:05Z")\n}}\n'
    assert template(tmp_path, "", extra).locals["d"] == expected


def test_local_cycle(tmp_path):
    with pytest.raises(ConfigError, match="cycle: a -> b -> a"):
        template(tmp_path, "", "locals {\n  a = local.b\n  b = local.a\n}\n")


def test_unsupported_function(tmp_path):
    with pytest.raises(ConfigError, match=r'local.x: unsupported function "uuidv4"'):
        template(tmp_path, "", "locals {\n  x = uuidv4()\n}\n")


def test_undeclared_reference(tmp_path):
    with pytest.raises(ConfigError, match='"nope" has not been declared'):
        template(tmp_path, "", "locals {\n  x = var.nope\n}\n")


def test_raw_timestamp_is_not_a_valid_ami_name(tmp_path):
    text = RELEASE + SOURCE.replace('"web-${var.release}"', '"web-${timestamp()}"') + \
        'build {\n  sources = ["source.amazon-ebs.web"]\n}\n'
    with pytest.raises(ConfigError, match="ami_name 'web-2024-01-02T03:04:05Z' should only contain"):
        load_packer_template(write(tmp_path, text), now=NOW)


# --- builds ----------------------------------------------------------------------------------

def test_provisioners_and_post_processors(tmp_path):
    t = template(tmp_path, """
  provisioner "shell" {
    inline = ["echo ${source.name} ${build.ID}", "echo $${HOME}"]
    environment_vars = ["A=${var.release}", "B=x=y"]
    only = ["amazon-ebs.web"]
  }
  provisioner "file" {
    content     = <<-EOT
      line one ${var.release}
        indented
    EOT
    destination = "/tmp/notes.txt"
    except      = ["source.amazon-ebs.other"]
  }
  provisioner "shell-local" {
    inline = ["echo local"]
  }
  post-processor "manifest" {
    strip_time = true
  }
  post-processor "checksum" {
    checksum_types = ["sha256"]
  }
""")
    shell, upload, other = t.builds[0].provisioners
    assert shell.inline == ["echo web ${build.ID}", "echo ${HOME}"]
    assert shell.environment == {"A": "1.0", "B": "x=y"}
    assert shell.applies_to("amazon-ebs.web") and not shell.applies_to("amazon-ebs.other")
    assert shell.execute_command == "chmod +x {{.Path}}; {{.Vars}} {{.Path}}"
    assert shell.inline_shebang == "/bin/sh -e"
    assert upload.content == "line one 1.0\n  indented\n"
    assert upload.applies_to("amazon-ebs.web") and not upload.applies_to("amazon-ebs.other")
    assert (other.type, other.attributes) == ("shell-local", {"inline": ["echo local"]})
    manifest, checksum = t.builds[0].post_processors
    assert (manifest.output, manifest.strip_time, manifest.custom_data) == ("packer-manifest.json", True, None)
    assert checksum.attributes == {"checksum_types": ["sha256"]}


@pytest.mark.parametrize(("body", "message"), [
    ('provisioner "shell" {\n inline = ["a"]\n script = "b.sh"\n}',
     "Only one of inline, script, or scripts can be specified."),
    ('provisioner "shell" {\n environment_vars = ["A=1"]\n}',
     "Either a script file or inline script must be specified."),
    ('provisioner "shell" {\n inline = ["a"]\n environment_vars = ["NOEQUALS"]\n}',
     "Environment variable not in format 'key=value': NOEQUALS"),
    ('provisioner "shell" {\n inline = ["a"]\n colour = "blue"\n}',
     r'provisioner 0 \(shell\).*An argument named "colour" is not expected here.'),
    ('provisioner "shell" {\n inline = ["a"]\n expect_disconnect = "maybe"\n}',
     "expect_disconnect: Input should be a valid boolean"),
    ('provisioner "file" {\n source = "a"\n}', "destination: Field required"),
    ('provisioner "file" {\n source = "a"\n content = "b"\n destination = "/tmp/x"\n}',
     "exactly one of source, sources or content"),
])
def test_wrong_provisioners_name_block_and_field(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        template(tmp_path, body)


def test_build_with_an_unknown_source(tmp_path):
    text = RELEASE + SOURCE + 'build {\n  sources = ["source.amazon-ebs.missing"]\n}\n'
    with pytest.raises(ConfigError, match=r'Unknown source "source.amazon-ebs.missing"'):
        load_packer_template(write(tmp_path, text), now=NOW)


def test_amazon_ebs_source_needs_its_fields(tmp_path):
    text = RELEASE + SOURCE.replace('  source_ami    = "ami-0123456789abcdef0"\n', "") + \
        'build {\n  sources = ["source.amazon-ebs.web"]\n}\n'
    with pytest.raises(ConfigError, match=r"source amazon-ebs.web: missing source_ami or source_ami_filter") as err:
        load_packer_template(write(tmp_path, text), now=NOW)
    assert err.value.location == f"{tmp_path / 't.pkr.hcl'}:6"


def test_required_plugins_are_recorded(tmp_path):
    extra = 'packer {\n  required_plugins {\n    amazon = {\n      version = ">= 1.2.8"\n' \
            '      source = "github.com/hashicorp/amazon"\n    }\n  }\n}\n'
    t = template(tmp_path, "", extra)
    assert t.needs_init
    assert t.required_plugins["amazon"].source == "github.com/hashicorp/amazon"


def test_bad_hcl_names_file_and_line(tmp_path):
    path = write(tmp_path, 'variable "a" {\n  default = "x"\n}\nsource "amazon-ebs" "b" {\n  x = = 1\n}\n')
    with pytest.raises(ConfigError, match="invalid HCL") as err:
        load_packer_template(path, now=NOW)
    assert err.value.location.startswith(f"{path}:5")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read Packer template"):
        load_packer_template(tmp_path / "nope.pkr.hcl")


# --- the manifest ----------------------------------------------------------------------------

def build(uuid: str, artifact: str, name: str = "etherpad", when: int = 1700000000) -> ManifestBuild:
    return ManifestBuild(name=name, builder_type="amazon-ebs", build_time=when, artifact_id=artifact,
                         packer_run_uuid=uuid, custom_data={"release": "1.8.18"})


def test_manifest_is_written_in_packers_format(tmp_path):
    path = tmp_path / "packer-manifest.json"
    write_manifest(path, [build("run-1", "us-east-1:ami-0abc")])
    assert path.read_text() == """{
  "builds": [
    {
      "name": "etherpad",
      "builder_type": "amazon-ebs",
      "build_time": 1700000000,
      "files": null,
      "artifact_id": "us-east-1:ami-0abc",
      "packer_run_uuid": "run-1",
      "custom_data": {
        "release": "1.8.18"
      }
    }
  ],
  "last_run_uuid": "run-1"
}"""


def test_manifest_keeps_older_runs_and_reading_picks_the_last(tmp_path):
    path = tmp_path / "m.json"
    write_manifest(path, [build("run-1", "us-east-1:ami-0old")])
    write_manifest(path, [build("run-2", "us-east-1:ami-0new,eu-west-1:ami-0eu")])
    data = json.loads(path.read_text())
    assert [b["packer_run_uuid"] for b in data["builds"]] == ["run-1", "run-2"]
    assert read_manifest_artifact(path) == "ami-0new"
    assert read_manifest_artifact(path, region="eu-west-1") == "ami-0eu"
    write_manifest(path, [build("run-3", "us-east-1:ami-0forced")], force=True)
    assert [b["packer_run_uuid"] for b in json.loads(path.read_text())["builds"]] == ["run-3"]


def test_reading_a_manifest_written_by_packer(tmp_path):
    # As Packer writes it: stale builds of an earlier run first, strip_time leaves no build_time.
    path = tmp_path / "packer-manifest.json"
    path.write_text(json.dumps({"builds": [
        {"name": "etherpad", "builder_type": "amazon-ebs", "build_time": 1600000000, "files": None,
         "artifact_id": "us-east-1:ami-0aaa", "packer_run_uuid": "old", "custom_data": None},
        {"name": "etherpad", "builder_type": "amazon-ebs", "files": None,
         "artifact_id": "us-east-1:ami-0bbb", "packer_run_uuid": "new", "custom_data": None},
        {"name": "etherpad", "builder_type": "amazon-ebs", "build_time": 1600000002, "files": None,
         "artifact_id": "us-east-1:ami-0ccc", "packer_run_uuid": "older", "custom_data": None},
    ], "last_run_uuid": "new"}))
    assert read_manifest_artifact(path) == "ami-0bbb"


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read Packer manifest"),
    ('{"builds": [], "last_run_uuid": "x"}', "no build for the last run x"),
    ('{"builds": "no"}', "is not a manifest"),
    (('{"builds": [{"name": "e", "builder_type": "amazon-ebs", "files": null, "artifact_id": "ami-1",'
     ' "packer_run_uuid": "x", "custom_data": null}], "last_run_uuid": "x"}'), "names no image"),
])
def test_unreadable_manifests(tmp_path, content, message):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CloudError, match=message):
        read_manifest_artifact(path)


def test_machine_readable_artifact_lines():
    lines = [
        "1700000000,,ui,say,==> amazon-ebs.etherpad: Creating AMI etherpad-1.8.18",
        "1700000001,amazon-ebs.etherpad,artifact-count,1",
        "1700000001,amazon-ebs.etherpad,artifact,0,builder-id,mitchellh.amazonebs",
        "1700000001,amazon-ebs.etherpad,artifact,0,id,us-east-1:ami-0123%!(PACKER_COMMA)eu-west-1:ami-0456\n",
        "1700000001,amazon-ebs.etherpad,artifact,0,string,AMIs were created:\\nus-east-1: ami-0123",
        "1700000001,amazon-ebs.etherpad,artifact,0,end",
    ]
    assert parse_machine_readable_artifact(lines) == "ami-0123"
    assert parse_machine_readable_artifact(lines, region="eu-west-1") == "ami-0456"
    assert parse_machine_readable_artifact(lines[:3]) is None
    assert parse_machine_readable_artifact(["1700000000,,ui,error,Build 'x' errored"]) is None

"""Inputs the property tests (test_reader_properties.py) found escaping the readers as
something other than a DeployerError — each now a one-line ConfigError that says where."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.appspec.reader import parse_appspec
from deployer.base.errors import ConfigError
from deployer.cfn.templates import load_stack
from deployer.packer.template import load_packer_template


def one_line(error: ConfigError) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


def test_a_control_character_in_a_template_is_a_config_error(tmp_path: Path):
    # yaml.reader.ReaderError is raised while the loader is built, before it parses.
    path = tmp_path / "t.yaml"
    path.write_text('\x1b "2010-09-09"\nResources: {}\n')
    with pytest.raises(ConfigError) as caught:
        load_stack(path, {}, stack_name="test")
    assert "unacceptable character #x001b" in one_line(caught.value)
    assert str(path) in str(caught.value)


def test_a_control_character_in_an_appspec_is_one_line():
    with pytest.raises(ConfigError) as caught:
        parse_appspec("version: 0.0\nos: linux\x07\n")
    assert "not valid YAML" in one_line(caught.value)


@pytest.mark.parametrize("section,value,kind", [
    ("Resources", "true", "bool"), ("Parameters", "[A, B]", "list"),
    ("Outputs", "just text", "str"), ("Conditions", "7", "int"), ("Mappings", "[]", "list")])
def test_a_section_that_is_not_a_mapping_names_itself(tmp_path: Path, section, value, kind):
    path = tmp_path / "t.yaml"
    path.write_text(f"Description: x\n{section}: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_stack(path, {}, stack_name="test")
    assert f"section {section} must be a mapping of names to definitions, not {kind}" in \
        one_line(caught.value)
    assert caught.value.location == f"{path}:2"


# min() and max() were the first finds; the evaluator has since dropped them (it implements
# what the template language needs, deployer.packer.expressions), so they are unsupported
# functions now, and what Python refuses in the functions that remain stays a ConfigError.
@pytest.mark.parametrize("text,says", [
    ('variable "x" {\n  default = min()\n}\n', 'unsupported function "min"'),
    ('variable "x" {\n  default = max()\n}\n', 'unsupported function "max"'),
    ('variable "x" {\n  default = regex("x", 1)\n}\n',
     "regex(): wrong number or type of arguments"),
    ('variable "x" {\n  default = formatdate(1, "2024-01-02T03:04:05Z")\n}\n',
     "formatdate(): wrong number or type of arguments"),
])
def test_a_function_python_refuses_is_a_config_error(tmp_path: Path, text: str, says: str):
    path = tmp_path / "t.pkr.hcl"
    path.write_text(text + 'source "null" "s" {}\nbuild {\n  sources = ["source.null.s"]\n}\n')
    with pytest.raises(ConfigError) as caught:
        load_packer_template(path, {})
    assert says in one_line(caught.value)


@pytest.mark.parametrize("suffix,text", [
    (".yaml", "Resources:\n  A:\n    Type: AWS::S3::Bucket\n    Properties:\n      Tags: "
              + '{"Fn::Base64": ' * 5000 + '"x"' + "}" * 5000 + "\n"),
    (".json", '{"Resources": {"A": {"Type": "AWS::S3::Bucket", "Properties": {"Tags": '
              + "[" * 50000 + "]" * 50000 + "}}}}"),
])
def test_absurd_nesting_in_a_template_is_a_config_error(tmp_path: Path, suffix: str, text: str):
    path = tmp_path / f"t{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match="nests values too deeply"):
        load_stack(path, {}, stack_name="test")


def test_absurd_nesting_in_hcl_is_a_config_error(tmp_path: Path):
    path = tmp_path / "t.pkr.hcl"
    path.write_text('variable "x" {\n  default = ' + "(" * 20000 + "1" + ")" * 20000
                    + '\n}\nsource "null" "s" {}\nbuild {\n  sources = ["source.null.s"]\n}\n')
    with pytest.raises(ConfigError):
        load_packer_template(path, {})

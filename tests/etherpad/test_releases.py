"""One rule for release names and sources, applied by every place that takes them."""

from __future__ import annotations

import re

import pytest
import yaml

from deployer.base.assets import asset_path
from deployer.base.errors import SourceError
from deployer.cfn.document import load_document
from deployer.etherpad.install import script_path
from deployer.etherpad.releases import (
    RELEASE_NAME_PATTERN,
    SOURCE_PATTERN,
    check_release_name,
    check_source_spec,
)

GOOD_SOURCES = ["github", "npm", "https://git.example.com/ether/etherpad-lite.git",
                "ssh://git@git.example.com:2222/etherpad-lite.git",
                "git@git.example.com:ether/etherpad-lite.git", "file:///srv/etherpad-lite.git",
                "/srv/mirrors/etherpad-lite.git", "~/mirrors/etherpad-lite.git",
                "./etherpad-1.8.18.tar.gz", "https://mirror.example.com/a%20b/x.git"]
BAD_SOURCES = ["--upload-pack=touch pwned;://", "-x", "https://127.0.0.1;id>pwned;#/x.git",
               "/srv/it's.git", "/srv/a b.git", "$(id)", "`id`", "a|b", "a&b", "x\ny", ""]


@pytest.mark.parametrize("spec", GOOD_SOURCES)
def test_sources_a_release_manager_gives_pass(spec):
    check_source_spec(spec)


@pytest.mark.parametrize("spec", BAD_SOURCES)
def test_sources_with_shell_or_option_characters_fail_in_one_line(spec):
    with pytest.raises(SourceError) as err:
        check_source_spec(spec)
    assert "\n" not in str(err.value).replace(repr(spec), "")


@pytest.mark.parametrize("name", ["1.8.18", "1.8.14-r2", "v2.0.0-beta.1"])
def test_release_names_pass(name):
    check_release_name(name)


@pytest.mark.parametrize("name", ["../1.8.18", "1.8.18;rm -rf /", "-1", "1.8.18'", "1.8.18\n",
                                  ""])
def test_release_names_that_are_not_fail(name):
    with pytest.raises(SourceError, match="is not a release name"):
        check_release_name(name)


def _parameters(stack: str) -> dict:
    return load_document(asset_path("etherpad", "stacks", f"{stack}.yaml"))["Parameters"]


@pytest.mark.parametrize("stack", ["cloudformation", "codedeploy", "packer"])
def test_the_stacks_allow_what_the_cli_allows(stack):
    parameters = _parameters(stack)
    assert parameters["EtherpadVersion"]["AllowedPattern"] == RELEASE_NAME_PATTERN
    if "EtherpadSource" in parameters:
        assert parameters["EtherpadSource"]["AllowedPattern"] == SOURCE_PATTERN


def test_every_stack_parameter_that_reaches_user_data_quoted_has_the_rule():
    """User data writes them inside single quotes: a parameter without a pattern could
    carry a quote and run shell on the instance as root."""
    for stack in ("cloudformation", "codedeploy", "packer"):
        text = asset_path("etherpad", "stacks", f"{stack}.yaml").read_text()
        for name in re.findall(r"='\$\{(Etherpad\w+)\}'", text):
            assert "AllowedPattern" in _parameters(stack)[name], (stack, name)


def test_the_installer_checks_with_the_same_rule():
    text = script_path("install-etherpad.sh").read_text()
    assert f"RELEASE_NAME_PATTERN='{RELEASE_NAME_PATTERN}'" in text
    assert f"SOURCE_PATTERN='{SOURCE_PATTERN}'" in text


def test_yaml_reads_the_patterns_as_written():
    # Double-quoted YAML would turn a backslash into an escape: the patterns have none.
    assert "\\" not in RELEASE_NAME_PATTERN + SOURCE_PATTERN
    assert yaml.safe_load(f'p: "{SOURCE_PATTERN}"')["p"] == SOURCE_PATTERN

"""Stack parameters: defaults, types, constraints, NoEcho, SSM-typed, pseudo parameters."""

from __future__ import annotations

import pytest

from .conftest import assert_at

RESOURCES = """
Resources:
  Logs:
    Type: AWS::Logs::LogGroup
"""


def template(parameters: str) -> str:
    return "Parameters:\n" + parameters + RESOURCES


def test_defaults_given_values_and_types(templates):
    stack = templates.load(template("""
  Version:
    Type: String
    Default: 1.8.17
  Count:
    Type: Number
    Default: 2
  Zones:
    Type: CommaDelimitedList
    Default: a, b ,c
  Ports:
    Type: List<Number>
  Subnets:
    Type: List<AWS::EC2::Subnet::Id>
    Default: subnet-1,subnet-2
  Image:
    Type: AWS::EC2::Image::Id
    Default: ami-123
  Flag:
    Type: String
    Default: true
"""), {"Version": "1.8.18", "Ports": "80,443"})
    assert stack.parameters == {
        "Version": "1.8.18", "Count": "2", "Zones": ["a", "b", "c"], "Ports": ["80", "443"],
        "Subnets": ["subnet-1", "subnet-2"], "Image": "ami-123", "Flag": "true",
    }


def test_missing_value_without_default_names_the_parameter(templates):
    text = template("""
  Version:
    Type: String
  DbPassword:
    Type: String
    NoEcho: true
""")
    error = templates.error(text, {"Version": "1"})
    assert "parameter DbPassword: no value given and no Default" in str(error)
    assert_at(error, text, "DbPassword:")


def test_unknown_parameter_is_refused(templates):
    error = templates.error(template("""
  Version:
    Type: String
"""), {"Version": "1", "Verison": "2"})
    assert "parameter Verison is not declared" in str(error)
    assert "Version" in str(error)


@pytest.mark.parametrize("declaration, value, message", [
    ("Type: String\n    AllowedValues: [dev, prod]", "test",
     "'test' is not one of the AllowedValues"),
    ("Type: String\n    AllowedPattern: '\\d+\\.\\d+\\.\\d+'", "1.8",
     "does not match AllowedPattern"),
    ("Type: String\n    AllowedPattern: '\\d+'", "12a", "does not match AllowedPattern"),
    ("Type: String\n    MinLength: 3", "ab", "shorter than MinLength 3"),
    ("Type: String\n    MaxLength: 3", "abcd", "longer than MaxLength 3"),
    ("Type: Number", "many", "'many' is not a number"),
    ("Type: Number\n    MinValue: 1", "0", "below MinValue 1"),
    ("Type: Number\n    MaxValue: 4", "4.5", "above MaxValue 4"),
    ("Type: List<Number>", "1,x", "'x' is not a number"),
    ("Type: CommaDelimitedList\n    AllowedValues: [a, b]", "a,c", "'c' is not one of"),
    ("Type: Strin", "x", "unknown type Strin"),
    ("Type: String\n    Defualt: x", "x", "unknown key Defualt"),
])
def test_constraints_name_the_parameter(templates, declaration, value, message):
    text = template(f"  Checked:\n    {declaration}\n")
    error = templates.error(text, {"Checked": value})
    assert str(error).startswith(f"{error.location}: parameter Checked: ")
    assert message in str(error)
    assert_at(error, text, "Checked:")


def test_constraint_description_replaces_the_message(templates):
    error = templates.error(template("""
  Version:
    Type: String
    AllowedPattern: '\\d+\\.\\d+\\.\\d+'
    ConstraintDescription: an Etherpad release such as 1.8.18
"""), {"Version": "latest"})
    assert "parameter Version: an Etherpad release such as 1.8.18" in str(error)


def test_default_is_validated_too(templates):
    error = templates.error(template("""
  Size:
    Type: Number
    Default: 10
    MaxValue: 5
"""))
    assert "parameter Size: '10' is above MaxValue 5" in str(error)


def test_noecho_values_are_remembered_and_never_shown(templates):
    text = template("""
  Password:
    Type: String
    NoEcho: true
    MinLength: 8
  Region:
    Type: String
    Default: eu
""")
    stack = templates.load(text, {"Password": "hunter2-long"})
    assert stack.noecho_parameters == frozenset({"Password"})
    assert stack.parameters["Password"] == "hunter2-long"
    assert stack.displayed_parameters() == {"Password": "****", "Region": "eu"}
    assert "hunter2-long" not in repr(stack) and "hunter2-long" not in str(stack)
    assert stack.redact("pw=hunter2-long;") == "pw=****;"

    error = templates.error(template("""
  Password:
    Type: String
    NoEcho: true
    AllowedPattern: '[a-z]+'
"""), {"Password": "Secret123"})
    assert "Secret123" not in str(error)
    assert "**** does not match AllowedPattern" in str(error)


def test_ssm_typed_parameters_read_the_parameter_store(templates):
    text = template("""
  BaseImage:
    Type: AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>
    Default: /images/etherpad/latest
  Names:
    Type: AWS::SSM::Parameter::Value<List<String>>
    Default: /names
""")
    store = {"/images/etherpad/latest": "ami-42", "/names": "a,b"}
    stack = templates.load(text, ssm_resolver=store.get)
    assert stack.parameters["BaseImage"] == "ami-42"
    assert stack.parameters["Names"] == ["a", "b"]

    error = templates.error(text)
    assert "parameter BaseImage: type AWS::SSM::Parameter::Value<AWS::EC2::Image::Id> needs " \
           "an SSM parameter store" in str(error)
    error = templates.error(text, {"BaseImage": "/nope"}, ssm_resolver=store.get)
    assert "parameter BaseImage: SSM parameter /nope does not exist" in str(error)


def test_pseudo_parameters(templates):
    stack = templates.load("""
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              LogGroupName: !Join
                - '|'
                - [!Ref AWS::StackName, !Ref AWS::Region, !Ref AWS::AccountId,
                   !Ref AWS::Partition, !Ref AWS::URLSuffix, !Ref AWS::StackId]
        """, stack_name="etherpad-cd", region="cn-north-1", account_id="000000000042")
    name, region, account, partition, suffix, stack_id = \
        stack.resources["Logs"].properties["LogGroupName"].split("|")
    assert (name, region, account, partition, suffix) == (
        "etherpad-cd", "cn-north-1", "000000000042", "aws-cn", "amazonaws.com.cn")
    assert stack_id.startswith("arn:aws-cn:cloudformation:cn-north-1:000000000042:stack/"
                               "etherpad-cd/")
    again = templates.load("""
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              LogGroupName: !Ref AWS::StackId
        """, stack_name="etherpad-cd", region="cn-north-1", account_id="000000000042")
    assert again.resources["Logs"].properties["LogGroupName"] == stack_id  # deterministic


def test_stack_name_is_checked(templates):
    error = templates.error(RESOURCES, stack_name="9-lives")
    assert "stack name '9-lives'" in str(error)

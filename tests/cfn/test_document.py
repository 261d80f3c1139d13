"""Reading template files: short-form tags become long forms; errors name file:line."""

from __future__ import annotations

import json

import pytest

from deployer.base.errors import ConfigError
from deployer.cfn.document import Mapping, line_of, load_document

from .conftest import assert_at


def load(templates, text):
    return load_document(templates.write(text))


def test_short_forms_become_long_forms(templates):
    doc = load(templates, """
        A: !Ref Thing
        B: !GetAtt Db.Endpoint.Address
        C: !GetAtt [Lb, DNSName]
        D: !Sub 'x-${AWS::Region}'
        E: !Sub ['${A}-${B}', {A: 1, B: !Ref Thing}]
        F: !FindInMap [Map, !Ref Env, Key]
        G: !Select [0, !GetAZs '']
        H: !Join ['', [a, b]]
        I: !Split [',', 'a,b']
        J: !If [Cond, yes-value, no-value]
        K: !Equals [a, b]
        L: !Not [!Condition Other]
        M: !And [!Condition A, !Or [!Condition B, !Condition C]]
        N: !Base64 text
        O: !Cidr [10.0.0.0/16, 2, 8]
        P: !ImportValue shared
        Q:
          Fn::Base64: !Sub "${AWS::StackName}"
    """)
    assert doc["A"] == {"Ref": "Thing"}
    assert doc["B"] == {"Fn::GetAtt": ["Db", "Endpoint.Address"]}
    assert doc["C"] == {"Fn::GetAtt": ["Lb", "DNSName"]}
    assert doc["D"] == {"Fn::Sub": "x-${AWS::Region}"}
    assert doc["E"] == {"Fn::Sub": ["${A}-${B}", {"A": 1, "B": {"Ref": "Thing"}}]}
    assert doc["F"] == {"Fn::FindInMap": ["Map", {"Ref": "Env"}, "Key"]}
    assert doc["G"] == {"Fn::Select": [0, {"Fn::GetAZs": ""}]}
    assert doc["H"] == {"Fn::Join": ["", ["a", "b"]]}
    assert doc["I"] == {"Fn::Split": [",", "a,b"]}
    assert doc["J"] == {"Fn::If": ["Cond", "yes-value", "no-value"]}
    assert doc["K"] == {"Fn::Equals": ["a", "b"]}
    assert doc["L"] == {"Fn::Not": [{"Condition": "Other"}]}
    assert doc["M"] == {"Fn::And": [{"Condition": "A"},
                                    {"Fn::Or": [{"Condition": "B"}, {"Condition": "C"}]}]}
    assert doc["N"] == {"Fn::Base64": "text"}
    assert doc["O"] == {"Fn::Cidr": ["10.0.0.0/16", 2, 8]}
    assert doc["P"] == {"Fn::ImportValue": "shared"}
    assert doc["Q"] == {"Fn::Base64": {"Fn::Sub": "${AWS::StackName}"}}


def test_dates_stay_text_and_mappings_know_their_lines(templates):
    doc = load(templates, """
        AWSTemplateFormatVersion: 2010-09-09
        Resources:
          Bucket:
            Type: AWS::S3::Bucket
            Properties:
              BucketName: !Ref Name
    """)
    assert doc["AWSTemplateFormatVersion"] == "2010-09-09"
    resources = doc["Resources"]
    assert isinstance(resources, Mapping)
    assert line_of(resources, "Bucket") == 3
    assert line_of(resources["Bucket"]["Properties"], "BucketName") == 6
    assert line_of(resources["Bucket"]["Properties"]["BucketName"]) == 6


def test_json_templates_load_with_lines(templates):
    path = templates.write(json.dumps({
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket",
                                 "Properties": {"BucketName": {"Fn::Sub": "b-${AWS::Region}"}}}},
    }, indent=2), suffix=".json")
    doc = load_document(path)
    assert doc["Resources"]["Bucket"]["Properties"]["BucketName"] == {"Fn::Sub": "b-${AWS::Region}"}
    assert line_of(doc["Resources"], "Bucket") == 3


def test_json_indented_with_tabs_still_loads(templates):
    path = templates.write('{\n\t"Resources": {\n\t\t"B": {"Type": "AWS::S3::Bucket"}\n\t}\n}\n',
                           suffix=".json")
    assert load_document(path)["Resources"]["B"] == {"Type": "AWS::S3::Bucket"}


@pytest.mark.parametrize("text, fragment, message", [
    ("A: 1\nB: [unclosed\nC: 3\n", "C: 3", "invalid YAML"),
    ("A:\n  B: !Reff Thing\n", "!Reff", "unknown tag !Reff"),
    ("A: 1\nB: 2\nA: 3\n", "A: 3", "duplicate key 'A'"),
    ("A: &anchor 1\nB: *anchor\n", "B: *anchor", "aliases"),
    ("A: !Base64 !Sub '${X}'\n", "A: !Base64", "invalid YAML"),
])
def test_bad_yaml_names_file_and_line(templates, text, fragment, message):
    path = templates.write(text)
    with pytest.raises(ConfigError) as caught:
        load_document(path)
    assert message in str(caught.value)
    assert caught.value.location.startswith(str(path))
    assert_at(caught.value, text, fragment)


def test_nested_short_forms_get_a_hint(templates):
    with pytest.raises(ConfigError) as caught:
        load_document(templates.write("A: !Base64 !Sub '${X}'\n"))
    assert "Fn::Base64: !Sub" in str(caught.value)


def test_bad_json_names_line(templates):
    path = templates.write('{\n  "Resources": {\n    "B": }\n}\n', suffix=".json")
    with pytest.raises(ConfigError) as caught:
        load_document(path)
    assert "invalid JSON" in str(caught.value)
    assert caught.value.location == f"{path}:3"


def test_missing_file_and_non_mapping(templates, tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_document(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        load_document(templates.write("- just\n- a list\n"))

"""Intrinsic functions, conditions and references, as CloudFormation evaluates them."""

from __future__ import annotations

import pytest

from deployer.base.errors import ConfigError, UnsupportedProperty
from deployer.cfn.values import Base64Text, Reference

from .conftest import assert_at


def props(stack, logical_id="Logs"):
    return stack.resources[logical_id].properties


def test_ref_to_parameter_pseudo_parameter_and_resource(templates):
    stack = templates.load("""
        Parameters:
          Env: {Type: String, Default: dev}
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              LogGroupName: !Ref Env
              Tags:
                - {Key: stack, Value: !Ref AWS::StackName}
                - {Key: bucket, Value: !Ref Artifacts}
                - {Key: named, Value: !Ref Named}
                - {Key: group, Value: !Ref Vpc}
          Artifacts:
            Type: AWS::S3::Bucket
          Named:
            Type: AWS::S3::Bucket
            Properties:
              BucketName: !Sub 'releases-${Env}'
          Vpc:
            Type: AWS::EC2::VPC
        """, stack_name="Etherpad-CD")
    p = props(stack)
    assert p["LogGroupName"] == "dev"
    stack_tag, bucket, named, vpc = (tag["Value"] for tag in p["Tags"])
    assert stack_tag == "Etherpad-CD"
    assert bucket == "etherpad-cd-artifacts"  # bucket names are lowercase
    assert named == "releases-dev"  # Ref returns the name the template gives
    assert vpc == "Etherpad-CD-Vpc"
    assert isinstance(bucket, Reference) and bucket.logical_id == "Artifacts"
    assert stack.resources["Named"].physical_id == "releases-dev"


def test_getatt_asks_the_attribute_resolver(templates):
    calls = []

    def resolver(logical_id, attribute):
        calls.append((logical_id, attribute))
        return {"DNSName": "127.0.0.1:8080"}.get(attribute)

    stack = templates.load("""
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              LogGroupName: !GetAtt Lb.DNSName
              Tags:
                - {Key: a, Value: !GetAtt [Lb, CanonicalHostedZoneID]}
                - {Key: b, Value: !Sub 'http://${Lb.DNSName}/'}
          Lb:
            Type: AWS::ElasticLoadBalancingV2::LoadBalancer
        Outputs:
          Zone:
            Value: !Sub '${Lb.CanonicalHostedZoneID}.zone'
          Url:
            Value: !Sub 'http://${Lb.DNSName}'
        """, attribute_resolver=resolver)
    p = props(stack)
    assert p["LogGroupName"] == "127.0.0.1:8080"
    assert p["LogGroupName"].logical_id == "Lb" and p["LogGroupName"].attribute == "DNSName"
    # Nobody knows the hosted zone: a placeholder, fine in a recorded resource and outputs.
    assert p["Tags"][0]["Value"] == "Lb.CanonicalHostedZoneID"
    assert p["Tags"][1]["Value"] == "http://127.0.0.1:8080/"
    assert stack.outputs == {"Zone": "Lb.CanonicalHostedZoneID.zone", "Url": "http://127.0.0.1:8080"}
    assert stack.unresolved_outputs == {"Zone": ["Lb.CanonicalHostedZoneID"]}
    assert ("Lb", "DNSName") in calls and ("Lb", "CanonicalHostedZoneID") in calls


def test_unresolved_attribute_is_refused_where_the_local_cloud_acts_on_it(templates):
    text = """
        Resources:
          Template:
            Type: AWS::EC2::LaunchTemplate
            Properties:
              LaunchTemplateData:
                ImageId: ami-1
                UserData:
                  Fn::Base64: !Sub |
                    #!/bin/sh
                    echo ${Db.Endpoint.Address}
          Db:
            Type: AWS::RDS::DBInstance
            Properties:
              Engine: postgres
              MasterUsername: etherpad
              MasterUserPassword: password1
        """
    error = templates.error(text)
    assert "resource Template: property LaunchTemplateData.UserData: uses Db.Endpoint.Address, " \
           "which the local cloud could not resolve" in str(error)
    assert_at(error, text, "UserData:")
    stack = templates.load(text, attribute_resolver=lambda logical, attribute: "127.0.0.1")
    assert stack.launch_templates["Template"].user_data == "#!/bin/sh\necho 127.0.0.1\n"


def test_getatt_attribute_names_are_checked_for_supported_types(templates):
    text = """
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              LogGroupName: !GetAtt Lb.DnsName
          Lb:
            Type: AWS::ElasticLoadBalancingV2::LoadBalancer
        """
    error = templates.error(text)
    assert "resource Logs: property LogGroupName: AWS::ElasticLoadBalancingV2::LoadBalancer " \
           "has no attribute 'DnsName'" in str(error)
    assert "DNSName" in str(error)
    assert_at(error, text, "!GetAtt Lb.DnsName")


def test_attributes_the_template_determines(templates):
    stack = templates.load("""
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              Tags:
                - {Key: a, Value: !GetAtt Named.TargetGroupName}
                - {Key: b, Value: !GetAtt Unnamed.TargetGroupName}
                - {Key: c, Value: !GetAtt Release.Value}
                - {Key: d, Value: !GetAtt Artifacts.Arn}
          Named:
            Type: AWS::ElasticLoadBalancingV2::TargetGroup
            Properties: {Name: etherpad, Port: 9001}
          Unnamed:
            Type: AWS::ElasticLoadBalancingV2::TargetGroup
            Properties: {Port: 9001}
          Release:
            Type: AWS::SSM::Parameter
            Properties: {Type: String, Value: 1.8.18}
          Artifacts:
            Type: AWS::S3::Bucket
        """)
    assert [tag["Value"] for tag in props(stack)["Tags"]] == [
        "etherpad", "test-Unnamed", "1.8.18", "arn:aws:s3:::test-artifacts"]


def test_sub_forms(templates):
    stack = templates.load("""
        Parameters:
          Version: {Type: String, Default: 1.8.18}
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              Tags:
                - {Key: a, Value: !Sub 'etherpad-${Version}-${AWS::Region}'}
                - {Key: b, Value: !Sub 'bucket ${Artifacts}, ${!Literal} and $HOME'}
                - Key: c
                  Value: !Sub
                    - '${Name}:${Port}/${Version}'
                    - Name: !Ref Artifacts
                      Port: 9001
                - {Key: d, Value: !Sub '${Artifacts}'}
          Artifacts:
            Type: AWS::S3::Bucket
        """)
    a, b, c, d = (tag["Value"] for tag in props(stack)["Tags"])
    assert a == "etherpad-1.8.18-us-east-1"
    assert b == "bucket test-artifacts, ${Literal} and $HOME"
    assert c == "test-artifacts:9001/1.8.18"
    assert isinstance(d, Reference) and d.logical_id == "Artifacts"  # still a reference


@pytest.mark.parametrize("value, message", [
    ("!Sub '${Nope}'", "Fn::Sub names ${Nope}, which is not a parameter, resource or variable"),
    ("!Sub '${Zones}'", "${Zones} must be a string, not a list"),
    ("!Sub [a, b, c]", "Fn::Sub takes a list of 2"),
    ("!Select [5, !Ref Zones]", "Fn::Select index 5 is out of range (2 values)"),
    ("!Select [x, !Ref Zones]", "Fn::Select takes [index, [values...]]"),
    ("!FindInMap [Sizes, huge, Max]", "Fn::FindInMap: no top-level key 'huge' in Sizes"),
    ("!FindInMap [Sizes, dev, Min]", "Fn::FindInMap: no second-level key 'Min' in Sizes/dev"),
    ("!FindInMap [Colours, dev, Max]", "Fn::FindInMap: no mapping 'Colours' in Mappings"),
    ("!ImportValue shared-vpc", "Fn::ImportValue is not supported by the local cloud"),
    ("!Equals [a, b]", "Fn::Equals belongs in Conditions"),
    ("{'Fn::Length': [a]}", "Fn::Length is not supported by the local cloud"),
    ("!Ref Nothing", "Ref to Nothing: no such parameter or resource"),
    ("!GetAtt Nothing.Arn", "Fn::GetAtt to Nothing: no such parameter or resource"),
    ("!If [Undefined, a, b]", "condition Undefined is not defined"),
    ("!Cidr [10.0.0.0/24, 4, 8]", "Fn::Cidr cannot cut 4 blocks of 8 host bits"),
    ("!Join [',', !Ref Version]", "Fn::Join takes [delimiter, [values...]]"),
])
def test_intrinsic_errors_name_resource_property_and_line(templates, value, message):
    text = f"""
        Parameters:
          Version: {{Type: String, Default: 1.8.18}}
          Zones: {{Type: CommaDelimitedList, Default: 'a,b'}}
        Mappings:
          Sizes:
            dev: {{Max: 2}}
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              RetentionInDays: 7
              LogGroupName: {value}
        """
    error = templates.error(text)
    assert "resource Logs: property LogGroupName: " in str(error)
    assert message in str(error)
    assert_at(error, text, "LogGroupName:")


def test_join_split_select_findinmap_getazs_cidr_base64(templates):
    stack = templates.load("""
        Parameters:
          Env: {Type: String, Default: prod}
        Mappings:
          Sizes:
            dev: {Max: 2, Zones: [a]}
            prod: {Max: 4, Zones: [a, b]}
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              Tags:
                - {Key: join, Value: !Join ['-', [a, 1, true, !Ref Env]]}
                - {Key: split, Value: !Select [2, !Split [',', 'x,y,z']]}
                - {Key: map, Value: !FindInMap [Sizes, !Ref Env, Max]}
                - {Key: maplist, Value: !Join [',', !FindInMap [Sizes, !Ref Env, Zones]]}
                - {Key: azs, Value: !Join [',', !GetAZs '']}
                - {Key: azs2, Value: !Select [1, !GetAZs eu-west-1]}
                - {Key: cidr, Value: !Join [',', !Cidr [10.0.0.0/16, 3, 8]]}
                - {Key: b64, Value: !Base64 'echo hi'}
        """)
    values = {tag["Key"]: tag["Value"] for tag in props(stack)["Tags"]}
    assert values["join"] == "a-1-true-prod"
    assert values["split"] == "z"
    assert values["map"] == 4
    assert values["maplist"] == "a,b"
    assert values["azs"] == "us-east-1a,us-east-1b,us-east-1c"
    assert values["azs2"] == "eu-west-1b"
    assert values["cidr"] == "10.0.0.0/24,10.0.1.0/24,10.0.2.0/24"
    assert values["b64"] == "echo hi" and isinstance(values["b64"], Base64Text)


def test_conditions_if_and_novalue(templates):
    text = """
        Parameters:
          Env: {Type: String, Default: dev, AllowedValues: [dev, prod]}
          Count: {Type: Number, Default: 2}
        Conditions:
          IsProd: !Equals [!Ref Env, prod]
          IsDev: !Not [!Condition IsProd]
          TwoOfThem: !Equals [!Ref Count, 2]
          DevPair: !And [!Condition IsDev, !Condition TwoOfThem]
          Either: !Or [!Condition IsProd, !Equals [a, a]]
        Resources:
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              RetentionInDays: !If [IsProd, 90, !Ref AWS::NoValue]
              LogGroupName: !If [DevPair, dev-pair, other]
              Tags:
                - !If [IsProd, {Key: prod, Value: 'yes'}, !Ref AWS::NoValue]
                - {Key: kept, Value: !If [Either, 'yes', 'no']}
          ProdOnly:
            Type: AWS::Logs::LogGroup
            Condition: IsProd
          DependsOnProd:
            Type: AWS::Logs::LogGroup
            DependsOn: [ProdOnly, Logs]
        """
    stack = templates.load(text)
    assert stack.conditions == {"IsProd": False, "IsDev": True, "TwoOfThem": True,
                                "DevPair": True, "Either": True}
    assert props(stack) == {"LogGroupName": "dev-pair", "Tags": [{"Key": "kept", "Value": "yes"}]}
    assert "ProdOnly" not in stack.resources and stack.skipped == {"ProdOnly": "IsProd"}
    assert stack.resources["DependsOnProd"].depends_on == ["Logs"]

    prod = templates.load(text, {"Env": "prod"})
    assert props(prod)["RetentionInDays"] == 90
    assert props(prod)["Tags"][0] == {"Key": "prod", "Value": "yes"}
    assert "ProdOnly" in prod.resources and prod.resources["DependsOnProd"].depends_on == [
        "ProdOnly", "Logs"]


@pytest.mark.parametrize("conditions, resource, message, fragment", [
    ("A: !Condition B\n  B: !Not [!Condition A]", "", "condition A depends on itself", "B: !Not"),
    ("A: !Equals [!Ref Logs, x]", "", "conditions cannot refer to resources (Logs)", "A: !Equals"),
    ("A: !Ref Env", "", "Ref cannot be used as a condition", "A: !Ref Env"),
    ("A: [x]", "", "a condition must be Fn::Equals", "A: [x]"),
    ("A: !Or [!Condition A]", "", "Fn::Or takes a list of 2 to 10 conditions", "A: !Or"),
    ("A: !Equals [x, x]", "    Condition: Missing\n", "condition Missing is not defined",
     "Condition: Missing"),
])
def test_condition_errors(templates, conditions, resource, message, fragment):
    text = ("Parameters:\n  Env: {Type: String, Default: dev}\n"
            f"Conditions:\n  {conditions}\n"
            f"Resources:\n  Logs:\n    Type: AWS::Logs::LogGroup\n{resource}")
    error = templates.error(text)
    assert message in str(error)
    assert_at(error, text, fragment)


def test_references_to_switched_off_resources_fail(templates):
    text = """
        Conditions:
          Never: !Equals [a, b]
        Resources:
          Disabled:
            Type: AWS::Logs::LogGroup
            Condition: Never
          Logs:
            Type: AWS::Logs::LogGroup
            Properties:
              LogGroupName: !Ref Disabled
        """
    error = templates.error(text)
    assert "resource Logs: property LogGroupName: Ref to Disabled, which condition Never " \
           "switched off" in str(error)
    assert_at(error, text, "LogGroupName:")


@pytest.mark.parametrize("text, message, fragment", [
    ("Resources:\n  Logs:\n    Type: AWS::Logs::LogGroup\n    DependsOn: Ghost\n",
     "resource Logs: DependsOn names Ghost, which is not a resource", "DependsOn"),
    ("Resources:\n  Logs:\n    Type: AWS::Logs::LogGroup\n    Propertys: {}\n",
     "resource Logs: unknown resource attribute Propertys", "Propertys"),
    ("Resources:\n  Logs:\n    Properties: {}\n", "resource Logs: needs a Type", "Logs:"),
    ("Resources:\n  Logs:\n    Type: AWS::Logs::LogGroup\n    Properties: [a]\n",
     "resource Logs: Properties must be a mapping", "Properties"),
    ("Resources:\n  log-group:\n    Type: AWS::Logs::LogGroup\n",
     "Resources: 'log-group' is not alphanumeric", "log-group"),
    ("Resources: {}\n", "needs a non-empty Resources section", "Resources"),
    ("Transform: AWS::Serverless-2016-10-31\nResources:\n  L:\n    Type: AWS::Logs::LogGroup\n",
     "section Transform is not supported: macros and transforms", "Transform"),
    ("Resources:\n  L:\n    Type: AWS::Logs::LogGroup\nOutput:\n  A: {Value: x}\n",
     "section Output is not supported", "Output:"),
    ("Resources:\n  L:\n    Type: AWS::Logs::LogGroup\nOutputs:\n  A: {Valeu: x}\n",
     "output A: needs a Value", "A: {"),
    ("Resources:\n  L:\n    Type: AWS::Logs::LogGroup\nOutputs:\n  A:\n    Value: x\n"
     "    Exports: {Name: y}\n", "output A: unknown key Exports", "Exports"),
    ("Resources:\n  L:\n    Type: AWS::Logs::LogGroup\nOutputs:\n  A:\n    Value: !GetAZs ''\n",
     "output A: an output value must be a string, not a list", "A:"),
])
def test_template_structure_errors(templates, text, message, fragment):
    error = templates.error(text)
    assert message in str(error)
    assert_at(error, text, fragment)


def test_circular_names_are_detected(templates):
    text = """
        Resources:
          Artifacts:
            Type: AWS::S3::Bucket
            Properties:
              BucketName: !Sub '${Release}-bucket'
          Release:
            Type: AWS::SSM::Parameter
            Properties:
              Name: !Sub '/${Artifacts}/release'
              Type: String
              Value: x
        """
    error = templates.error(text)
    assert "circular reference" in str(error)


def test_dynamic_references(templates):
    text = """
        Resources:
          Release:
            Type: AWS::SSM::Parameter
            Properties:
              Type: String
              Value: '{{resolve:ssm:/etherpad/release}} and {{resolve:ssm:/etherpad/build:3}}'
        """
    store = {"/etherpad/release": "1.8.18", "/etherpad/build": "42"}
    stack = templates.load(text, ssm_resolver=store.get)
    assert stack.ssm_parameters["Release"].value == "1.8.18 and 42"
    error = templates.error(text)
    assert "resource Release: property Value: SSM parameter /etherpad/release (in a dynamic " \
           "reference) does not exist" in str(error)
    assert_at(error, text, "Value:")

    for service in ("ssm-secure", "secretsmanager"):
        error = templates.error(text.replace("resolve:ssm:/etherpad/release",
                                             f"resolve:{service}:x"),
                                error=UnsupportedProperty, ssm_resolver=store.get)
        assert error.resource == "Release" and error.prop == "Value"
        assert f"{service} dynamic references are not resolved" in str(error)


def test_resolution_errors_are_config_errors(templates):
    assert issubclass(UnsupportedProperty, ConfigError)

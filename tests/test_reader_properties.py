"""Property tests of the three readers of user files: whatever the input, the only thing they
raise is one of the project's own errors (a :class:`DeployerError`), which the CLI prints as
one line. A ``TypeError`` or ``KeyError`` escaping a reader is a traceback for the user.

Inputs come three ways: free text; documents built from the readers' own vocabulary (keys,
intrinsic functions, lifecycle events, HCL blocks and functions) with values of every type;
and the real assets with random lines dropped, doubled or rewritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployer.appspec.reader import LifecycleEvent, parse_appspec
from deployer.base.assets import asset_path
from deployer.base.errors import DeployerError
from deployer.cfn.templates import load_stack
from deployer.packer.template import load_packer_template

# 200 examples each keep the file to seconds; DEPLOYER_PROPERTY_EXAMPLES=5000 hunts longer.
EXAMPLES = settings(max_examples=int(os.environ.get("DEPLOYER_PROPERTY_EXAMPLES", "200")),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- shared pieces --------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["", "0", "0.0", "/", "..", "../x", "/opt/x", "0644",
                                     "linux", "PT5M", "true", "*"]))


def values(keys: st.SearchStrategy[str] | None = None, depth: int = 3):
    keys = keys or st.text(max_size=8)
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
        max_leaves=12 if depth else 1)


def mutated(text: str) -> st.SearchStrategy[str]:
    """The text with a few lines dropped, doubled, or with a token rewritten."""
    lines = text.splitlines()

    @st.composite
    def build(draw):
        out = list(lines)
        for _ in range(draw(st.integers(1, 4))):
            if not out:
                break
            i = draw(st.integers(0, len(out) - 1))
            action = draw(st.sampled_from(["drop", "double", "token", "insert"]))
            if action == "drop":
                out.pop(i)
            elif action == "double":
                out.insert(i, out[i])
            elif action == "insert":
                out.insert(i, draw(st.sampled_from(
                    ["{", "}", "[", "]", "  - ", "!Ref", "${", "}}", '"', "=", ":", "  x: !GetAtt",
                     "\t", "<<EOF", "EOF", "#", "  ? a", "&a", "*a"])))
            else:
                words = out[i].split()
                if words:
                    j = draw(st.integers(0, len(words) - 1))
                    words[j] = draw(st.one_of(st.text(max_size=6), st.sampled_from(
                        ["!Ref", "!Sub", "!If", "!GetAtt", "!Join", "!Select", "null", "[]",
                         "{}", "-1", "1e400", "${var.x}", "${local.y}", "(", ")", '"']))).strip()
                    indent = out[i][:len(out[i]) - len(out[i].lstrip())]
                    out[i] = indent + " ".join(words)
        return "\n".join(out) + "\n"

    return build()


def write(suffix: str, text: str) -> Path:
    handle = tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False, encoding="utf-8",
                                         errors="surrogatepass")
    with handle:
        handle.write(text)
    return Path(handle.name)


# -- appspec.yml ----------------------------------------------------------------------------
hook_entry = st.dictionaries(st.sampled_from(["location", "timeout", "runas", "other"]),
                             scalars, max_size=4)
appspec_documents = st.fixed_dictionaries({}, optional={
    "version": scalars,
    "os": st.one_of(scalars, st.sampled_from(["linux", "windows"])),
    "files": st.one_of(scalars, st.lists(st.one_of(scalars, st.dictionaries(
        st.sampled_from(["source", "destination", "x"]), scalars, max_size=3)), max_size=3)),
    "permissions": st.one_of(scalars, st.lists(st.one_of(scalars, st.dictionaries(
        st.sampled_from(["object", "pattern", "except", "owner", "group", "mode", "type",
                         "acls", "context"]), values(), max_size=5)), max_size=3)),
    "hooks": st.one_of(scalars, st.dictionaries(
        st.one_of(st.sampled_from([e.value for e in LifecycleEvent]), scalars),
        st.one_of(scalars, st.lists(st.one_of(scalars, hook_entry), max_size=3)), max_size=4)),
    "file_exists_behavior": scalars,
    "extra": values(),
})


def _yaml(document) -> str:
    try:
        return yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return json.dumps(document, default=str)


@EXAMPLES
@given(st.one_of(st.text(max_size=300), appspec_documents.map(_yaml),
                 mutated(asset_path("appspec", "appspec.yml").read_text())))
def test_appspec_reader_raises_only_config_errors(text: str):
    try:
        parse_appspec(text, source="appspec.yml")
    except DeployerError:
        pass


# -- CloudFormation templates ---------------------------------------------------------------
NAMES = ["A", "B", "Db", "Group", "Lb", "P", "Cond", "AWS::Region", "AWS::StackName",
         "AWS::NoValue", "Missing"]
TYPES = ["AWS::AutoScaling::AutoScalingGroup", "AWS::EC2::LaunchTemplate",
         "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::ElasticLoadBalancingV2::Listener",
         "AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::RDS::DBInstance",
         "AWS::SecretsManager::Secret", "AWS::CodeDeploy::DeploymentGroup",
         "AWS::CodeDeploy::Application", "AWS::EC2::SecurityGroup", "AWS::S3::Bucket",
         "AWS::IAM::Role", "AWS::SSM::Parameter", "AWS::Lambda::Function", "Custom::X", "x"]
PROPERTIES = ["LaunchTemplateData", "UserData", "ImageId", "MinSize", "MaxSize",
              "DesiredCapacity", "LaunchTemplate", "Version", "LaunchTemplateId",
              "HealthCheckPath", "HealthCheckIntervalSeconds", "Matcher", "HttpCode", "Port",
              "TargetGroupAttributes", "Key", "Value", "Engine", "MasterUserPassword",
              "MasterUsername", "GenerateSecretString", "SecretStringTemplate",
              "GenerateStringKey", "PasswordLength", "DefaultActions", "TargetGroupArn",
              "AutoScalingGroups", "DeploymentConfigName", "Name", "Type", "Tags",
              "HealthCheckType", "TargetGroupARNs", "LoadBalancerInfo", "ApplicationName"]


def intrinsics(inner):
    name = st.sampled_from(NAMES)
    return st.one_of(
        st.builds(lambda n: {"Ref": n}, st.one_of(name, scalars)),
        st.builds(lambda a, b: {"Fn::GetAtt": [a, b]}, name,
                  st.sampled_from(["DNSName", "Endpoint.Address", "Arn", "X"])),
        st.builds(lambda s: {"Fn::GetAtt": s}, st.one_of(scalars, st.text(max_size=10))),
        st.builds(lambda s: {"Fn::Sub": s}, st.one_of(
            st.text(max_size=20), st.sampled_from(["${A}", "${A.DNSName}", "${!x}", "${",
                                                   "${AWS::Region}-${Missing}"]),
            st.lists(inner, max_size=2))),
        st.builds(lambda s, v: {"Fn::Sub": [s, v]}, st.text(max_size=10),
                  st.dictionaries(st.sampled_from(NAMES), inner, max_size=2)),
        st.builds(lambda s, v: {"Fn::Join": [s, v]}, scalars, st.one_of(inner, st.lists(inner))),
        st.builds(lambda c, a, b: {"Fn::If": [c, a, b]}, name, inner, inner),
        st.builds(lambda x: {"Fn::If": x}, inner),
        st.builds(lambda i, v: {"Fn::Select": [i, v]}, scalars, st.one_of(inner, st.lists(inner))),
        st.builds(lambda v: {"Fn::FindInMap": v}, st.lists(st.one_of(name, inner), max_size=4)),
        st.builds(lambda v: {"Fn::Base64": v}, inner),
        st.builds(lambda v: {"Fn::Equals": v}, st.lists(inner, max_size=3)),
        st.builds(lambda v: {"Fn::Not": v}, st.one_of(inner, st.lists(inner, max_size=2))),
        st.builds(lambda v: {"Fn::And": v}, st.lists(inner, max_size=3)),
        st.builds(lambda v: {"Fn::Or": v}, st.one_of(inner, st.lists(inner, max_size=3))),
        st.builds(lambda v: {"Fn::GetAZs": v}, inner),
        st.builds(lambda v: {"Fn::Split": v}, st.lists(inner, max_size=3)),
        st.builds(lambda v: {"Fn::ImportValue": v}, inner),
        st.builds(lambda v: {"Condition": v}, name),
        st.builds(lambda v: {"Fn::Cidr": v}, inner),
    )


cfn_values = st.recursive(scalars, lambda inner: st.one_of(
    intrinsics(inner), st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.sampled_from(PROPERTIES), st.text(max_size=6)), inner,
                    max_size=4)), max_leaves=15)
parameters = st.dictionaries(st.sampled_from([*NAMES[:7], "Bad-Name", ""]), st.one_of(
    scalars, st.fixed_dictionaries({"Type": st.one_of(st.sampled_from(
        ["String", "Number", "List<Number>", "CommaDelimitedList", "AWS::EC2::Image::Id",
         "AWS::SSM::Parameter::Value<String>", "Bogus"]), scalars)}, optional={
        "Default": scalars, "AllowedValues": st.one_of(scalars, st.lists(scalars, max_size=3)),
        "AllowedPattern": st.one_of(scalars, st.sampled_from(["[", "^a+$", "(?P<"])),
        "NoEcho": scalars, "MinValue": scalars, "MaxValue": scalars, "MinLength": scalars,
        "MaxLength": scalars})), max_size=3)
resources = st.dictionaries(st.sampled_from([*NAMES[:7], "Bad-Name"]), st.one_of(
    scalars, st.fixed_dictionaries({"Type": st.one_of(st.sampled_from(TYPES), scalars)},
                                   optional={
        "Properties": st.one_of(scalars, st.dictionaries(st.sampled_from(PROPERTIES),
                                                         cfn_values, max_size=5)),
        "Condition": st.one_of(st.sampled_from(NAMES), scalars),
        "DependsOn": st.one_of(st.sampled_from(NAMES), st.lists(scalars, max_size=2), scalars),
        "UpdatePolicy": cfn_values, "CreationPolicy": cfn_values, "DeletionPolicy": scalars,
        "Metadata": cfn_values})), max_size=4)
templates = st.fixed_dictionaries({}, optional={
    "AWSTemplateFormatVersion": scalars, "Description": scalars, "Parameters": parameters,
    "Mappings": st.one_of(scalars, st.dictionaries(st.sampled_from(NAMES), values(), max_size=2)),
    "Conditions": st.one_of(scalars, st.dictionaries(st.sampled_from(NAMES), cfn_values,
                                                     max_size=3)),
    "Resources": st.one_of(scalars, resources),
    "Outputs": st.one_of(scalars, st.dictionaries(st.sampled_from(NAMES), st.one_of(
        scalars, st.dictionaries(st.sampled_from(["Value", "Condition", "Export"]), cfn_values,
                                 max_size=3)), max_size=2)),
    "Transform": scalars, "Rules": scalars,
})
REAL_TEMPLATES = [asset_path("etherpad", "stacks", f"{n}.yaml").read_text()
                  for n in ("packer", "cloudformation", "codedeploy")]


def _load(text: str, suffix: str, parameters: dict) -> None:
    path = write(suffix, text)
    try:
        load_stack(path, parameters, stack_name="etherpad-test",
                   attribute_resolver=lambda logical, attribute: (
                       None if attribute == "X" else "127.0.0.1:80"),
                   ssm_resolver={"/p": "ami-0123456789abcdef0"}.get)
    except DeployerError:
        pass
    finally:
        path.unlink()


@EXAMPLES
@given(st.one_of(templates.map(_yaml).map(lambda t: (t, ".yaml")),
                 templates.map(lambda t: (json.dumps(t, default=str), ".json")),
                 st.one_of(*[mutated(t) for t in REAL_TEMPLATES]).map(lambda t: (t, ".yaml")),
                 st.text(max_size=200).map(lambda t: (t, ".yaml"))),
       st.dictionaries(st.sampled_from([*NAMES[:7], "AMI", "EtherpadVersion"]),
                       st.text(max_size=8), max_size=3))
def test_template_reader_raises_only_config_errors(source, parameters):
    text, suffix = source
    _load(text, suffix, {"AMI": "ami-0123456789abcdef0", "EtherpadVersion": "1.8.18",
                         **parameters})


# -- Packer HCL -----------------------------------------------------------------------------
ident = st.sampled_from(["etherpad_version", "x", "region", "name", "list", "n", "b", "m"])
hcl_expr = st.recursive(
    st.one_of(st.integers(-5, 99).map(str), st.sampled_from(
        ['"a"', '""', "true", "null", '"${var.x}"', '"${local.y}"', '"%{ if true }a%{ endif }"',
         "var.x", "var.nope", "local.y", "local.nope", "path.root", "source.name", "build.ID",
         '"${upper(var.x)}"', "[]", "{}", '"\\n"'])),
    lambda inner: st.one_of(
        st.builds(lambda f, a: f"{f}({', '.join(a)})", st.sampled_from(
            ["length", "upper", "lower", "concat", "join", "split", "replace", "format",
             "formatdate", "timestamp", "substr", "lookup", "merge", "min", "max", "coalesce",
             "element", "keys", "contains", "tostring", "tonumber", "regex_replace",
             "uuidv4", "nofunction"]), st.lists(inner, max_size=3)),
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner,
                  st.sampled_from(["+", "-", "*", "/", "%", "==", "!=", "&&", "||", "<", ">"]),
                  inner),
        st.builds(lambda c, a, b: f"{c} ? {a} : {b}", inner, inner, inner),
        st.builds(lambda a, i: f"{a}[{i}]", inner, inner),
        st.builds(lambda a: f"[{', '.join(a)}]", st.lists(inner, max_size=3)),
        st.builds(lambda k, v: "{ " + " ".join(f"{x} = {y}" for x, y in zip(k, v, strict=False)) + " }",
                  st.lists(ident, max_size=2), st.lists(inner, max_size=2)),
        st.builds(lambda a: f"!{a}", inner), st.builds(lambda a: f"-{a}", inner),
        st.builds(lambda a: f"({a})", inner),
        st.builds(lambda a: f'"pre-${{{a}}}-post"', inner),
    ), max_leaves=8)


@st.composite
def hcl_templates(draw) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        body = []
        if draw(st.booleans()):
            body.append(f"type = {draw(st.sampled_from(['string', 'number', 'bool', 'list(string)', 'map(string)', 'any', 'strin', 'object({a=string})']))}")
        if draw(st.booleans()):
            body.append(f"default = {draw(hcl_expr)}")
        if draw(st.booleans()):
            body.append(f"sensitive = {draw(hcl_expr)}")
        if draw(st.booleans()):
            body.append("validation {\n condition = " + draw(hcl_expr)
                        + "\n error_message = " + draw(hcl_expr) + "\n}")
        parts.append(f'variable "{draw(ident)}" {{\n' + "\n".join(body) + "\n}")
    if draw(st.booleans()):
        parts.append("locals {\n" + "\n".join(f"{draw(ident)} = {draw(hcl_expr)}"
                                              for _ in range(draw(st.integers(1, 3)))) + "\n}")
    if draw(st.booleans()):
        attrs = {"ami_name": draw(hcl_expr), "instance_type": draw(hcl_expr),
                 "region": draw(hcl_expr), "source_ami": draw(hcl_expr),
                 "ssh_username": draw(hcl_expr), "tags": draw(hcl_expr)}
        kept = draw(st.lists(st.sampled_from(sorted(attrs)), unique=True))
        kind = draw(st.sampled_from(["amazon-ebs", "null", "docker"]))
        parts.append(f'source "{kind}" "s" {{\n' + "\n".join(f"{k} = {attrs[k]}" for k in kept)
                     + "\n}")
    if draw(st.booleans()):
        provisioners = []
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["shell", "file", "ansible"]))
            provisioners.append(f'provisioner "{kind}" {{\n'
                                + "\n".join(f"{k} = {draw(hcl_expr)}" for k in draw(st.lists(
                                    st.sampled_from(["inline", "script", "source", "destination",
                                                     "environment_vars", "only", "except",
                                                     "execute_command", "max_retries"]),
                                    unique=True, max_size=3)))
                                + "\n}")
        post = ('post-processor "manifest" {\n output = ' + draw(hcl_expr) + "\n}"
                if draw(st.booleans()) else "")
        parts.append("build {\n sources = " + draw(st.sampled_from(
            ['["source.amazon-ebs.s"]', '["source.null.s"]', '[]', '"x"', '["source.x.y"]']))
            + "\n" + "\n".join(provisioners) + "\n" + post + "\n}")
    return "\n\n".join(parts) + "\n"


@EXAMPLES
@given(st.one_of(hcl_templates(), mutated(asset_path("packer", "etherpad.pkr.hcl").read_text()),
                 st.text(max_size=200)),
       st.dictionaries(ident, st.text(max_size=10), max_size=3))
def test_packer_reader_raises_only_config_errors(text: str, variables: dict[str, str]):
    path = write(".pkr.hcl", text)
    try:
        load_packer_template(path, variables)
    except DeployerError:
        pass
    finally:
        path.unlink()

"""What the AWS tests share: a fake clock, the real templates reduced to what moto can run,
and moto's gaps filled where the adapter would otherwise be tested against a wrong answer.
"""

from __future__ import annotations

import json
from pathlib import Path

from deployer.base.assets import asset_path
from deployer.cfn.document import load_document
from tests.support.clock import FakeClock

__all__ = ["FakeClock", "reduced_template"]

STACKS = asset_path("etherpad", "stacks")

# moto 5's CloudFormation has no model for these: it skips them with a warning, and a
# template that reads their attributes (the database endpoint in user data) fails to create.
# The stack paths that need them are tested with botocore's Stubber on the real templates.
MOTO_UNSUPPORTED = {"AWS::SecretsManager::Secret", "AWS::RDS::DBInstance",
                    "AWS::RDS::DBSubnetGroup", "AWS::CodeDeploy::Application",
                    "AWS::CodeDeploy::DeploymentGroup"}


MOTO_PUBLIC_AMI = "ami-12c6146b"  # one of the public images moto ships


def reduced_template(strategy: str, folder: Path) -> Path:
    """The real template of ``strategy`` without what moto cannot create.

    Network, load balancer, target group, launch template (with its UpdatePolicy'd group),
    IAM and the artifact bucket stay as they are; the database, its secret and the
    CodeDeploy resources go (the CodeDeploy outputs then name what the test creates by hand
    through moto's CodeDeploy API, as CloudFormation would have), and the user data, which
    reads the database endpoint, becomes an empty script.
    """
    document = json.loads(json.dumps(load_document(STACKS / f"{strategy}.yaml")))
    resources = document["Resources"]
    for name in [n for n, r in resources.items() if r["Type"] in MOTO_UNSUPPORTED]:
        del resources[name]
    resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"] = {
        "Fn::Base64": "#!/bin/bash\n"}
    policy = resources["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    policy["Statement"] = [s for s in policy["Statement"] if "DatabaseSecret" not in json.dumps(s)]
    outputs = document["Outputs"]
    if "ApplicationName" in outputs:
        outputs["ApplicationName"]["Value"] = {"Ref": "AWS::StackName"}
        outputs["DeploymentGroupName"]["Value"] = {"Fn::Sub": "${AWS::StackName}-group"}
    if "LatestAmiId" in document.get("Parameters", {}):
        # moto serves no Canonical public parameters, and on an update it resolves the
        # previous (already resolved) value of an SSM-typed parameter again as a path.
        document["Parameters"]["LatestAmiId"] = {"Type": "AWS::EC2::Image::Id",
                                                 "Default": MOTO_PUBLIC_AMI}
    path = folder / f"{strategy}.json"
    path.write_text(json.dumps(document, indent=1))
    return path


def patch_moto_change_sets(monkeypatch) -> None:
    """moto 5 executes a change set without recomputing the stack's outputs and parameters
    (AWS does); without this a stack created through a change set would have no outputs."""
    from moto.cloudformation import models

    original = models.ChangeSet.apply

    def apply(self) -> None:
        original(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.parameters = dict(self.parameters)
        stack.output_map = stack._create_output_map()

    monkeypatch.setattr(models.ChangeSet, "apply", apply)

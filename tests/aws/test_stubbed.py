"""Timelines moto cannot play (its operations finish at once), scripted with botocore's
Stubber on the real templates: a stack update followed event by event to UPDATE_COMPLETE,
a failed update that rolls back, a deployment's lifecycle events to Succeeded, a failed
deployment and its rollback, and Ctrl-C stopping a deployment. The fake clock records every
sleep, so the tests also see that AWS is asked about once a second.
"""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber

from deployer.aws.codedeploy import Deployments
from deployer.aws.errors import Caller
from deployer.aws.provider import AwsCloud
from deployer.aws.session import Identity
from deployer.base.clock import POLL_S
from deployer.base.errors import RolloutFailed
from tests.aws.support import STACKS, FakeClock

STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/etherpad-packer/1"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/etherpad/1"
GROUP = "etherpad-packer-AutoScalingGroup-1"
T0 = 1_700_000_000.0


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, tz=UTC)


def clients(*services: str) -> dict:
    # Static fake credentials: Stubber answers before anything could be sent.
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x",
                            region_name="us-east-1")
    return {s: session.client(s) for s in services}


class Script:
    """Stubbers for several clients; every queued answer must be used."""

    def __init__(self, *services: str) -> None:
        self.clients = clients(*services)
        self.stubs = {s: Stubber(c) for s, c in self.clients.items()}
        for stub in self.stubs.values():
            stub.activate()

    def __call__(self, service: str, method: str, response: dict,
                 params: dict | None = None) -> None:
        self.stubs[service].add_response(method, response, params)

    def error(self, service: str, method: str, code: str, message: str) -> None:
        self.stubs[service].add_client_error(method, code, message, http_status_code=400)

    def done(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


def stack_event(n: int, resource: str, status: str, reason: str = "", seconds: float = 0,
                kind: str | None = None) -> dict:
    is_stack = resource == "etherpad-packer"
    return {"StackId": STACK_ID, "EventId": f"e{n}", "StackName": "etherpad-packer",
            "LogicalResourceId": resource,
            "PhysicalResourceId": STACK_ID if is_stack else f"{resource}-id",
            "ResourceType": kind or ("AWS::CloudFormation::Stack" if is_stack
                                     else "AWS::AutoScaling::AutoScalingGroup"),
            "Timestamp": at(seconds), "ResourceStatus": status,
            **({"ResourceStatusReason": reason} if reason else {})}


def stack(status: str) -> dict:
    return {"Stacks": [{"StackName": "etherpad-packer", "StackId": STACK_ID,
                        "CreationTime": at(-3600), "StackStatus": status,
                        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in (
                            ("AMI", "ami-old"), ("EtherpadVersion", "1.8.17"),
                            ("InstanceType", "t3.small"), ("DBInstanceClass", "db.t3.micro"))]}]}


def script_update(script: Script, timeline: list[list[dict]], final: str) -> None:
    """update_stack's calls: the stack, its template, the change set, then one look a second."""
    script("cloudformation", "describe_stacks", stack("CREATE_COMPLETE"),
           {"StackName": "etherpad-packer"})
    script("cloudformation", "get_template",
           {"TemplateBody": (STACKS / "packer.yaml").read_text()},
           {"StackName": STACK_ID, "TemplateStage": "Original"})
    script("cloudformation", "create_change_set", {"Id": "cs-1", "StackId": STACK_ID}, {
        "StackName": "etherpad-packer", "ChangeSetType": "UPDATE", "ChangeSetName": ANY,
        "Description": ANY, "UsePreviousTemplate": True, "Capabilities": ["CAPABILITY_IAM"],
        "Parameters": [{"ParameterKey": "AMI", "ParameterValue": "ami-new"},
                       {"ParameterKey": "EtherpadVersion", "ParameterValue": "1.8.18"},
                       {"ParameterKey": "InstanceType", "UsePreviousValue": True},
                       {"ParameterKey": "DBInstanceClass", "UsePreviousValue": True}]})
    script("cloudformation", "describe_change_set",
           {"Status": "CREATE_IN_PROGRESS", "StackName": "etherpad-packer"})
    script("cloudformation", "describe_change_set", {
        "Status": "CREATE_COMPLETE", "StackName": "etherpad-packer", "StackId": STACK_ID,
        "Changes": [{"Type": "Resource", "ResourceChange": {
            "Action": "Modify", "LogicalResourceId": "LaunchTemplate",
            "ResourceType": "AWS::EC2::LaunchTemplate", "Replacement": "False"}}]})
    history = [stack_event(0, "etherpad-packer", "CREATE_COMPLETE", seconds=-3000)]
    script("cloudformation", "describe_stack_events", {"StackEvents": history})  # primed
    script("cloudformation", "execute_change_set", {}, {"ChangeSetName": "cs-1"})
    shown = list(history)
    for second, new in enumerate(timeline):
        shown = new[::-1] + shown
        script("cloudformation", "describe_stack_events", {"StackEvents": shown},
               {"StackName": STACK_ID})
        if second == 0:
            script("cloudformation", "list_stack_resources", {"StackResourceSummaries": [
                {"LogicalResourceId": "AutoScalingGroup", "PhysicalResourceId": GROUP,
                 "ResourceType": "AWS::AutoScaling::AutoScalingGroup",
                 "LastUpdatedTimestamp": at(0), "ResourceStatus": "UPDATE_IN_PROGRESS"},
                {"LogicalResourceId": "TargetGroup", "PhysicalResourceId": TG,
                 "ResourceType": "AWS::ElasticLoadBalancingV2::TargetGroup",
                 "LastUpdatedTimestamp": at(0), "ResourceStatus": "CREATE_COMPLETE"}]})
        activities = [{"ActivityId": "a1", "AutoScalingGroupName": GROUP, "Cause": "update",
                       "StartTime": at(1), "StatusCode": "InProgress" if second == 1 else "Successful",
                       "Description": "Launching a new EC2 instance: i-new"}] if second >= 1 else []
        script("autoscaling", "describe_scaling_activities", {"Activities": activities},
               {"AutoScalingGroupName": GROUP, "MaxRecords": 20})
        targets = [{"Target": {"Id": "i-old", "Port": 9001},
                    "TargetHealth": {"State": "healthy" if second < 2 else "draining"}}]
        if second >= 1:
            targets.append({"Target": {"Id": "i-new", "Port": 9001},
                            "TargetHealth": {"State": "initial" if second == 1 else "healthy"}})
        script("elbv2", "describe_target_health", {"TargetHealthDescriptions": targets},
               {"TargetGroupArn": TG})


def cloud_for(script: Script, clock: FakeClock) -> AwsCloud:
    return AwsCloud(clock=clock, caller=Caller(sleep=clock.sleep), clients=script.clients,
                    identity=Identity(account="123456789012", arn="arn:aws:iam::1:user/me",
                                      region="us-east-1"))


def test_update_followed_live_to_update_complete():
    script = Script("cloudformation", "autoscaling", "elbv2")
    clock = FakeClock(T0)
    script_update(script, [
        [stack_event(1, "etherpad-packer", "UPDATE_IN_PROGRESS", "User Initiated", 0)],
        [stack_event(2, "LaunchTemplate", "UPDATE_IN_PROGRESS", seconds=0.5,
                     kind="AWS::EC2::LaunchTemplate"),
         stack_event(3, "LaunchTemplate", "UPDATE_COMPLETE", seconds=0.8,
                     kind="AWS::EC2::LaunchTemplate"),
         stack_event(4, "AutoScalingGroup", "UPDATE_IN_PROGRESS", seconds=1)],
        [stack_event(5, "AutoScalingGroup", "UPDATE_COMPLETE", seconds=1.9),
         stack_event(6, "etherpad-packer", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", seconds=2),
         stack_event(7, "etherpad-packer", "UPDATE_COMPLETE", seconds=2.1)],
    ], "UPDATE_COMPLETE")
    events: list = []
    cloud = cloud_for(script, clock)
    result = cloud.update_stack("packer", {"AMI": "ami-new", "EtherpadVersion": "1.8.18"},
                                events.append)
    script.done()
    assert result.status == "UPDATE_COMPLETE" and not result.rolled_back
    stack_events = [(e.resource, e.status) for e in events if e.source == "stack"]
    assert stack_events == [
        ("etherpad-packer", "UPDATE_IN_PROGRESS"), ("LaunchTemplate", "UPDATE_IN_PROGRESS"),
        ("LaunchTemplate", "UPDATE_COMPLETE"), ("AutoScalingGroup", "UPDATE_IN_PROGRESS"),
        ("AutoScalingGroup", "UPDATE_COMPLETE"),
        ("etherpad-packer", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
        ("etherpad-packer", "UPDATE_COMPLETE")]  # each once, oldest first, history left out
    assert [e.status for e in events if e.source == "autoscaling"] == ["InProgress", "Successful"]
    # Looks at AWS a second apart (0.5 s while the change set was being worked out).
    assert clock.slept == [0.5, POLL_S, POLL_S]
    # Target health transitions seen while following, kept for the report.
    history = [(h["target_id"], h["from_state"], h["to_state"])
               for h in cloud.target_health_history("packer")]
    assert history == [("i-old", None, "healthy"), ("i-new", None, "initial"),
                       ("i-old", "healthy", "draining"), ("i-new", "initial", "healthy")]


def test_failed_update_shows_the_failing_resource_and_rolls_back():
    script = Script("cloudformation", "autoscaling", "elbv2")
    clock = FakeClock(T0)
    why = ("Received 0 SUCCESS signal(s) out of 1.  Unable to satisfy 100% "
           "MinSuccessfulInstancesPercent requirement")
    script_update(script, [
        [stack_event(1, "etherpad-packer", "UPDATE_IN_PROGRESS", "User Initiated", 0)],
        [stack_event(2, "AutoScalingGroup", "UPDATE_IN_PROGRESS", seconds=1)],
        [stack_event(3, "AutoScalingGroup", "UPDATE_FAILED", why, seconds=2),
         stack_event(4, "LaunchTemplate", "UPDATE_FAILED", "Resource update cancelled", 2,
                     kind="AWS::EC2::LaunchTemplate"),
         stack_event(5, "etherpad-packer", "UPDATE_ROLLBACK_IN_PROGRESS",
                     "The following resource(s) failed to update: [AutoScalingGroup].", 2.1)],
        [stack_event(6, "AutoScalingGroup", "UPDATE_COMPLETE", seconds=3),
         stack_event(7, "etherpad-packer", "UPDATE_ROLLBACK_COMPLETE", seconds=3.5)],
    ], "UPDATE_ROLLBACK_COMPLETE")
    from pathlib import Path

    from deployer.core.strategy import Prepared, ReleaseContext
    from strategies.packer import PackerStrategy

    events: list = []
    strategy = PackerStrategy()
    strategy.name = "packer"
    ctx = ReleaseContext(release="1.8.18", from_release="1.8.17",
                         cloud=cloud_for(script, clock), workdir=Path("/nonexistent"),
                         on_event=events.append)
    with pytest.raises(RolloutFailed) as caught:
        strategy.roll_out(ctx, Prepared(kind="image", ref="ami-new"))
    script.done()
    # The cause, not the cancelled consequence: resource, type and CloudFormation's reason.
    assert str(caught.value) == ("stack update rolled back: AutoScalingGroup "
                                 "(AWS::AutoScaling::AutoScalingGroup) UPDATE_FAILED: " + why)
    assert [e.status for e in events if e.resource == "etherpad-packer"][-1] == \
        "UPDATE_ROLLBACK_COMPLETE"


# -- CodeDeploy ----------------------------------------------------------------------------

def lifecycle(*statuses: str, failed_at: str | None = None) -> list[dict]:
    names = ["BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic", "ApplicationStop",
             "DownloadBundle", "BeforeInstall", "Install", "AfterInstall", "ApplicationStart",
             "ValidateService", "BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"]
    events = []
    for name, status in zip(names, list(statuses) + ["Pending"] * (len(names) - len(statuses)), strict=False):
        event = {"lifecycleEventName": name, "status": status}
        if status == "Failed":
            event["diagnostics"] = {"errorCode": "ScriptFailed", "scriptName":
                                    "hooks/application-start.sh", "message":
                                    "Script at specified location: hooks/application-start.sh "
                                    "run as user root failed with exit code 1",
                                    "logTail": "[stderr]etherpad did not answer on :9001\n"}
        events.append(event)
    return events


def deployment(did: str, status: str, **extra) -> dict:
    return {"deploymentInfo": {"deploymentId": did, "status": status,
                               "autoRollbackConfiguration": {"enabled": True, "events": [
                                   "DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]},
                               **extra}}


def targets(script: Script, did: str, per_instance: dict[str, tuple[str, list[dict]]]) -> None:
    script("codedeploy", "list_deployment_targets", {"targetIds": list(per_instance)},
           {"deploymentId": did})
    script("codedeploy", "batch_get_deployment_targets", {"deploymentTargets": [
        {"deploymentTargetType": "InstanceTarget", "instanceTarget": {
            "deploymentId": did, "targetId": i, "status": status, "lifecycleEvents": events}}
        for i, (status, events) in per_instance.items()]},
        {"deploymentId": did, "targetIds": list(per_instance)})


def test_deployment_lifecycle_progress_ending_succeeded():
    script = Script("codedeploy")
    clock = FakeClock(T0)
    did = "d-OK"
    steps = [("InProgress", {"i-1": ("InProgress", lifecycle("Succeeded", "InProgress"))}),
             ("InProgress", {"i-1": ("InProgress", lifecycle(*["Succeeded"] * 9, "InProgress"))}),
             ("Succeeded", {"i-1": ("Succeeded", lifecycle(*["Succeeded"] * 13))})]
    for status, per_instance in steps:
        script("codedeploy", "get_deployment", deployment(did, status), {"deploymentId": did})
        targets(script, did, per_instance)
    events: list = []
    result = Deployments(Caller(), script.clients["codedeploy"], clock).follow(
        did, events.append)
    script.done()
    assert result.status == "Succeeded" and result.rollback_deployment_id is None
    done = [e.resource.rsplit("/", 1)[1] for e in events
            if e.resource.startswith(f"{did}/i-1/") and e.status == "Succeeded"]
    assert done[:3] == ["BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic"]
    assert done[-3:] == ["BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"]
    assert len(done) == len(set(done)) == 13  # each lifecycle event once, in order
    assert [e.status for e in events if e.resource == did] == ["InProgress", "Succeeded"]
    assert clock.slept == [POLL_S, POLL_S]


def test_failed_deployment_with_rollback():
    script = Script("codedeploy")
    clock = FakeClock(T0)
    failed = lifecycle(*["Succeeded"] * 8, "Failed")
    script("codedeploy", "get_deployment", deployment("d-BAD", "InProgress"))
    targets(script, "d-BAD", {"i-1": ("InProgress", lifecycle(*["Succeeded"] * 8, "InProgress"))})
    script("codedeploy", "get_deployment", deployment(
        "d-BAD", "Failed", errorInformation={"code": "HEALTH_CONSTRAINTS", "message":
                                             "The overall deployment failed because too many "
                                             "individual instances failed deployment"},
        rollbackInfo={"rollbackDeploymentId": "d-RB"}))
    targets(script, "d-BAD", {"i-1": ("Failed", failed)})
    script("codedeploy", "get_deployment", deployment("d-RB", "InProgress"))
    targets(script, "d-RB", {"i-1": ("InProgress", lifecycle("Succeeded"))})
    script("codedeploy", "get_deployment", deployment("d-RB", "Succeeded"))
    targets(script, "d-RB", {"i-1": ("Succeeded", lifecycle(*["Succeeded"] * 13))})
    events: list = []
    result = Deployments(Caller(), script.clients["codedeploy"], clock).follow(
        "d-BAD", events.append)
    script.done()
    assert result.status == "Failed"
    assert result.rollback_deployment_id == "d-RB" and result.rollback_status == "Succeeded"
    assert result.reason.startswith("HEALTH_CONSTRAINTS: The overall deployment failed")
    assert ("i-1 ApplicationStart: ScriptFailed hooks/application-start.sh" in result.reason
            and "etherpad did not answer on :9001" in result.reason)
    failed_events = [e for e in events if e.status == "Failed" and e.resource.count("/") == 2]
    assert [e.resource for e in failed_events] == ["d-BAD/i-1/ApplicationStart"]
    assert any(e.resource.startswith("d-RB/i-1/") for e in events)


def test_ctrl_c_stops_the_deployment_and_waits_for_it():
    script = Script("codedeploy")
    clock = FakeClock(T0)
    script("codedeploy", "get_deployment", deployment("d-1", "InProgress"))
    targets(script, "d-1", {"i-1": ("InProgress", lifecycle("Succeeded", "InProgress"))})
    script("codedeploy", "stop_deployment", {"status": "Pending"},
           {"deploymentId": "d-1", "autoRollbackEnabled": True})
    script("codedeploy", "get_deployment", deployment("d-1", "Stopped",
                                                      rollbackInfo={"rollbackDeploymentId": "d-2"}))
    targets(script, "d-1", {"i-1": ("Skipped", lifecycle("Succeeded", "Skipped"))})
    interrupts = iter([KeyboardInterrupt()])

    def sleep(seconds: float) -> None:
        error = next(interrupts, None)
        if error is not None:
            raise error
        clock.sleep(seconds)

    clock.sleep = sleep
    with pytest.raises(KeyboardInterrupt):
        Deployments(Caller(), script.clients["codedeploy"], clock).follow(
            "d-1", lambda e: None)
    script.done()  # stop_deployment was called and the deployment was seen stopped

"""Recovery paths moto cannot play, scripted with botocore's Stubber (issue 11 defects 5, 6):
an update still running after its follow was cut short, followed to its end; a stack in
UPDATE_ROLLBACK_FAILED whose rollback is continued (ContinueUpdateRollback).
"""

from __future__ import annotations

import pytest

from deployer.base.errors import StateError
from tests.aws.support import FakeClock
from tests.aws.test_stubbed import STACK_ID, T0, Script, cloud_for, stack, stack_event


def test_an_update_still_running_is_followed_to_its_rollback():
    script = Script("cloudformation", "autoscaling", "elbv2")
    script("cloudformation", "describe_stacks", stack("UPDATE_ROLLBACK_IN_PROGRESS"),
           {"StackName": "etherpad-packer"})
    seen = [stack_event(1, "etherpad-packer", "UPDATE_ROLLBACK_IN_PROGRESS", seconds=1),
            stack_event(0, "etherpad-packer", "UPDATE_IN_PROGRESS", "User Initiated")]
    script("cloudformation", "describe_stack_events", {"StackEvents": seen})  # primed
    script("cloudformation", "describe_stack_events", {"StackEvents": [
        stack_event(3, "etherpad-packer", "UPDATE_ROLLBACK_COMPLETE", seconds=9),
        stack_event(2, "AutoScalingGroup", "UPDATE_COMPLETE", seconds=8), *seen]},
        {"StackName": STACK_ID})
    script("cloudformation", "list_stack_resources", {"StackResourceSummaries": []})
    script("cloudformation", "describe_stacks", stack("UPDATE_ROLLBACK_COMPLETE"),
           {"StackName": STACK_ID})
    events: list = []
    result = cloud_for(script, FakeClock(T0)).wait_for_stack_operation("packer", events.append)
    script.done()
    assert result is not None and result.status == "UPDATE_ROLLBACK_COMPLETE"
    assert result.rolled_back and not result.rollback_failed
    # Only what happened after the look: the earlier events were shown by the first follow.
    assert [(e.resource, e.status) for e in events if e.source == "stack"] == [
        ("AutoScalingGroup", "UPDATE_COMPLETE"), ("etherpad-packer", "UPDATE_ROLLBACK_COMPLETE")]


def test_no_operation_running_is_none():
    script = Script("cloudformation")
    script("cloudformation", "describe_stacks", stack("UPDATE_COMPLETE"),
           {"StackName": "etherpad-packer"})
    assert cloud_for(script, FakeClock(T0)).wait_for_stack_operation("packer",
                                                                     lambda e: None) is None
    script.done()


def script_continue(script: Script, final: str, reason: str = "") -> None:
    script("cloudformation", "describe_stacks", stack("UPDATE_ROLLBACK_FAILED"),
           {"StackName": "etherpad-packer"})
    history = [stack_event(0, "etherpad-packer", "UPDATE_ROLLBACK_FAILED", seconds=-60)]
    script("cloudformation", "describe_stack_events", {"StackEvents": history})  # primed
    script("cloudformation", "continue_update_rollback", {}, {"StackName": STACK_ID})
    failed = [stack_event(2, "AutoScalingGroup", "UPDATE_FAILED", reason, seconds=2)] \
        if reason else []
    script("cloudformation", "describe_stack_events", {"StackEvents": [
        stack_event(3, "etherpad-packer", final, seconds=3), *failed,
        stack_event(1, "etherpad-packer", "UPDATE_ROLLBACK_IN_PROGRESS", seconds=1),
        *history]}, {"StackName": STACK_ID})
    script("cloudformation", "list_stack_resources", {"StackResourceSummaries": []})


def test_update_rollback_failed_is_continued_to_an_environment_again(tmp_path):
    script = Script("cloudformation", "autoscaling", "elbv2")
    script_continue(script, "UPDATE_ROLLBACK_COMPLETE")
    # describe_environment afterwards: the stack, its resources (no group: no instances).
    script("cloudformation", "describe_stacks", stack("UPDATE_ROLLBACK_COMPLETE"),
           {"StackName": "etherpad-packer"})
    script("cloudformation", "list_stack_resources", {"StackResourceSummaries": []})
    view = cloud_for(script, FakeClock(T0)).ensure_environment(
        "packer", tmp_path / "unused.yaml", {}, lambda e: None)
    script.done()
    assert (view.stack_status, view.release) == ("UPDATE_ROLLBACK_COMPLETE", "1.8.17")


def test_a_rollback_that_cannot_be_continued_is_one_line_with_what_to_do(tmp_path):
    script = Script("cloudformation", "autoscaling", "elbv2")
    script_continue(script, "UPDATE_ROLLBACK_FAILED", "Instance i-1 cannot be terminated")
    with pytest.raises(StateError) as caught:
        cloud_for(script, FakeClock(T0)).ensure_environment("packer", tmp_path / "unused.yaml",
                                                            {}, lambda e: None)
    script.done()
    message = str(caught.value)
    assert message.startswith("stack etherpad-packer is UPDATE_ROLLBACK_FAILED and continuing "
                              "its rollback ended UPDATE_ROLLBACK_FAILED: AutoScalingGroup "
                              "(AWS::AutoScaling::AutoScalingGroup) UPDATE_FAILED: Instance "
                              "i-1 cannot be terminated")
    assert "continue-update-rollback --stack-name etherpad-packer --resources-to-skip" in message
    assert "\n" not in message

"""Rollback verdicts come from the stack's state, and a failed rollback is RollbackFailed."""

from __future__ import annotations

import pytest

from deployer.base.errors import ExitStatus, RollbackFailed, RolloutFailed
from deployer.cloud.port import (
    DeploymentResult,
    EnvironmentView,
    StackResult,
    StackStatus,
    is_gone,
)
from deployer.core.strategy import (
    Prepared,
    PreparedKind,
    ReleaseContext,
    ReleaseOptions,
    load_strategy,
    raise_if_rolled_back,
)
from tests.support.fake_cloud import UnscriptedCloud


@pytest.mark.parametrize("status, error", [
    ("UPDATE_COMPLETE", None), ("UPDATE_ROLLBACK_COMPLETE", RolloutFailed),
    ("UPDATE_ROLLBACK_FAILED", RollbackFailed), ("ROLLBACK_FAILED", RollbackFailed)])
def test_a_stack_update_outcome_is_read_from_its_state(status, error):
    result = StackResult(stack_name="etherpad-packer", status=status, reason="batch failed")
    if error is None:
        raise_if_rolled_back(result)
        return
    with pytest.raises(error, match="batch failed") as caught:
        raise_if_rolled_back(result)
    assert caught.value.exit_status is (ExitStatus.ROLLED_BACK if error is RolloutFailed
                                        else ExitStatus.ERROR)


def test_a_codedeploy_rollback_that_failed_is_not_rolled_back():
    failed = DeploymentResult(deployment_id="d-1", status="Failed",
                              rollback_deployment_id="d-2", rollback_status="Failed")
    assert failed.rollback_failed and not failed.rolled_back
    restored = failed.model_copy(update={"rollback_status": "Succeeded"})
    assert restored.rolled_back and not restored.rollback_failed
    assert not DeploymentResult(deployment_id="d-3", status="Failed").rollback_failed


def test_gone_states_and_typed_kinds_keep_their_json_values():
    assert is_gone(None) and is_gone("ROLLBACK_COMPLETE") and is_gone(StackStatus.DELETE_COMPLETE)
    assert not is_gone("UPDATE_ROLLBACK_COMPLETE") and not is_gone("SOMETHING_NEW")
    assert Prepared(kind="image").kind is PreparedKind.IMAGE  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Prepared(kind="tarball")  # type: ignore[arg-type]
    assert ReleaseOptions.model_validate({"ignore_application_stop_failures": True})
    with pytest.raises(ValueError):
        ReleaseOptions.model_validate({"ignore_everything": True})


# -- "rolled back" only when the cloud's state shows a rollback (issue 11 defect 6) ---------

class StackCloud(UnscriptedCloud):
    """A stack whose update follow was cut short: ``after`` is how its operation ended
    (None: no operation was running), ``release`` what the stack runs."""

    def __init__(self, after: str | None, release: str = "1.8.17") -> None:
        self.after, self.release = after, release
        self.calls: list = []

    def wait_for_stack_operation(self, strategy, on_event):
        self.calls.append("wait")
        return None if self.after is None else StackResult(
            stack_name=f"etherpad-{strategy}", status=self.after, reason="batch failed")

    def describe_environment(self, strategy):
        return EnvironmentView(strategy=strategy, stack_name=f"etherpad-{strategy}",
                               stack_status="UPDATE_COMPLETE", url="http://lb/",
                               release=self.release)

    def update_stack(self, strategy, parameters, on_event):
        self.calls.append(("update", parameters))
        self.release = parameters["EtherpadVersion"]
        return StackResult(stack_name=f"etherpad-{strategy}", status="UPDATE_COMPLETE")


def rollback_of(name: str, cloud: StackCloud, tmp_path) -> bool:
    strategy = load_strategy(name)
    ctx = ReleaseContext(release="1.8.18", from_release="1.8.17", cloud=cloud,
                         workdir=tmp_path, on_event=lambda e: None)
    return strategy.roll_back(ctx)


@pytest.mark.parametrize("name", ["packer", "cloudformation"])
@pytest.mark.parametrize("after, rolled_back", [
    (None, False), ("UPDATE_ROLLBACK_COMPLETE", True), ("UPDATE_COMPLETE", False)])
def test_rolled_back_is_what_the_stack_operation_ended_in(tmp_path, name, after, rolled_back):
    """The packer strategy's roll_back did nothing and said nothing of a rollback
    CloudFormation did once the follow was cut short. With UPDATE_COMPLETE the cloudformation
    strategy restores the previous release itself (below), so only packer says False."""
    cloud = StackCloud(after, release="1.8.18" if after == "UPDATE_COMPLETE" else "1.8.17")
    expected = rolled_back or (name == "cloudformation" and after == "UPDATE_COMPLETE")
    assert rollback_of(name, cloud, tmp_path) is expected
    assert cloud.calls[0] == "wait"


@pytest.mark.parametrize("name", ["packer", "cloudformation"])
def test_a_rollback_the_cloud_could_not_finish_is_rollback_failed(tmp_path, name):
    with pytest.raises(RollbackFailed, match="batch failed"):
        rollback_of(name, StackCloud("UPDATE_ROLLBACK_FAILED"), tmp_path)


def test_nothing_changed_is_not_rolled_back(tmp_path):
    """The update never started (a change set refused): the stack runs the previous release.
    The cloudformation strategy used to 'update back' (no changes) and report rolled back."""
    cloud = StackCloud(None, release="1.8.17")
    assert rollback_of("cloudformation", cloud, tmp_path) is False
    assert cloud.calls == ["wait"]  # no update was sent


def test_an_update_that_went_out_is_restored_by_hand_and_that_is_a_rollback(tmp_path):
    cloud = StackCloud("UPDATE_COMPLETE", release="1.8.18")
    assert rollback_of("cloudformation", cloud, tmp_path) is True
    assert cloud.calls == ["wait", ("update", {"EtherpadVersion": "1.8.17"})]

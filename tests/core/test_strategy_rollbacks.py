"""Rollback verdicts come from the stack's state, and a failed rollback is RollbackFailed."""

from __future__ import annotations

import pytest

from deployer.base.errors import ExitStatus, RollbackFailed, RolloutFailed
from deployer.cloud.port import DeploymentResult, StackResult, StackStatus, is_gone
from deployer.core.strategy import Prepared, PreparedKind, ReleaseOptions, raise_if_rolled_back


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

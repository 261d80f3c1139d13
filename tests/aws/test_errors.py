"""botocore's exceptions become the project's errors at the boundary, originals chained."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)
from botocore.stub import Stubber

from deployer.aws.errors import RETRIES, Caller
from deployer.base.errors import CloudError, ConfigError, NotFound
from tests.aws.test_stubbed import clients


def stubbed_cfn():
    cfn = clients("cloudformation")["cloudformation"]
    return cfn, Stubber(cfn)


def test_throttling_is_retried_with_backoff_then_succeeds():
    cfn, stub = stubbed_cfn()
    stub.add_client_error("describe_stacks", "Throttling", "Rate exceeded")
    stub.add_client_error("describe_stacks", "Throttling", "Rate exceeded")
    stub.add_response("describe_stacks", {"Stacks": []})
    slept: list[float] = []
    with stub:
        assert Caller(sleep=slept.append, jitter=lambda cap: cap)(
            cfn, "describe_stacks") == {"Stacks": []}
    assert slept == [0.5, 1.0]


def test_throttling_that_does_not_stop_is_a_cloud_error():
    cfn, stub = stubbed_cfn()
    for _ in range(RETRIES + 1):
        stub.add_client_error("describe_stacks", "Throttling", "Rate exceeded")
    with stub, pytest.raises(CloudError, match="kept throttling cloudformation:DescribeStacks") \
            as caught:
        Caller(sleep=lambda s: None)(cfn, "describe_stacks")
    assert isinstance(caught.value.__cause__, ClientError)


def test_access_denied_names_the_action_and_the_permission():
    cfn, stub = stubbed_cfn()
    stub.add_client_error("create_change_set", "AccessDenied",
                          "User: arn:aws:iam::1:user/me is not authorized to perform: "
                          "cloudformation:CreateChangeSet", http_status_code=403)
    with stub, pytest.raises(CloudError) as caught:
        Caller()(cfn, "create_change_set", StackName="s", ChangeSetName="c")
    assert str(caught.value).startswith("AWS denied cloudformation:CreateChangeSet: User:")
    assert caught.value.hint == ("allow cloudformation:CreateChangeSet in the IAM policy of "
                                 "the identity deployer runs as")


def test_validation_error_is_a_config_error_and_missing_stack_is_not_found():
    cfn, stub = stubbed_cfn()
    stub.add_client_error("create_change_set", "ValidationError",
                          "Parameter AMI should be of type AWS::EC2::Image::Id")
    stub.add_client_error("describe_stacks", "ValidationError",
                          "Stack with id etherpad-packer does not exist")
    with stub:
        with pytest.raises(ConfigError, match="Parameter AMI should be"):
            Caller()(cfn, "create_change_set", StackName="s", ChangeSetName="c")
        with pytest.raises(NotFound, match="does not exist"):
            Caller()(cfn, "describe_stacks", StackName="etherpad-packer")


class Raising:
    """A client whose one operation raises a botocore exception (no Stubber for those)."""

    def __init__(self, exc: Exception) -> None:
        cfn = clients("cloudformation")["cloudformation"]
        self.meta = cfn.meta
        self.exc = exc

    def describe_stacks(self, **kwargs):
        raise self.exc


@pytest.mark.parametrize("exc, message", [
    (NoCredentialsError(), "no AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY, or run 'aws configure')"),
    (EndpointConnectionError(endpoint_url="https://cloudformation.us-east-1.amazonaws.com"),
     "cannot reach AWS for cloudformation:DescribeStacks"),
    (ProfileNotFound(profile="prod"), "AWS profile 'prod' is not in the AWS config files"),
])
def test_botocore_errors(exc, message):
    with pytest.raises(CloudError) as caught:
        Caller()(Raising(exc), "describe_stacks")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert caught.value.__cause__ is exc

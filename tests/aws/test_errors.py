"""botocore's exceptions become the project's errors at the boundary, originals chained."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)
from botocore.stub import Stubber

from deployer.aws.errors import Caller
from deployer.aws.session import CLIENT_CONFIG
from deployer.base.errors import CloudError, ConfigError, NotFound
from tests.aws.test_stubbed import clients


def stubbed_cfn():
    cfn = clients("cloudformation")["cloudformation"]
    return cfn, Stubber(cfn)


class FlakyAws:
    """A loopback endpoint answering CloudFormation's query API from a script of answers
    (the last one repeats): what a real client with CLIENT_CONFIG does over HTTP."""

    XMLNS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"

    def __init__(self, answers: list[tuple[int, str]]) -> None:
        self.answers = answers
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, body = owner.answers[min(owner.requests, len(owner.answers) - 1)]
                owner.requests += 1
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml" if body.startswith("<") else
                                 "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x",
                                region_name="us-east-1")
        self.cfn = session.client("cloudformation", config=CLIENT_CONFIG,
                                  endpoint_url=f"http://127.0.0.1:{self.server.server_port}")

    @classmethod
    def error(cls, code: str, message: str) -> str:
        return (f'<ErrorResponse xmlns="{cls.XMLNS}"><Error><Type>Receiver</Type>'
                f"<Code>{code}</Code><Message>{message}</Message></Error>"
                "<RequestId>r</RequestId></ErrorResponse>")

    @classmethod
    def no_stacks(cls) -> str:
        return (f'<DescribeStacksResponse xmlns="{cls.XMLNS}"><DescribeStacksResult><Stacks/>'
                "</DescribeStacksResult><ResponseMetadata><RequestId>r</RequestId>"
                "</ResponseMetadata></DescribeStacksResponse>")


@pytest.fixture
def flaky(monkeypatch):
    from botocore.retries.standard import ExponentialBackoff

    # botocore's own backoff, without the wait (up to 1 s, 2 s, … for throttling).
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    made: list[FlakyAws] = []

    def make(answers: list[tuple[int, str]]) -> FlakyAws:
        made.append(FlakyAws(answers))
        return made[-1]

    yield make
    for endpoint in made:
        endpoint.server.shutdown()


def test_clients_retry_in_botocores_standard_mode():
    # "max_attempts": 1 was one retry, and legacy-style throttling-only retries by hand.
    assert CLIENT_CONFIG.retries == {"mode": "standard", "total_max_attempts": 6}


def test_throttling_is_retried_by_botocore_then_succeeds(flaky):
    aws = flaky([(400, FlakyAws.error("Throttling", "Rate exceeded"))] * 2
                + [(200, FlakyAws.no_stacks())])
    assert Caller()(aws.cfn, "describe_stacks")["Stacks"] == []
    assert aws.requests == 3


def test_two_transient_5xx_in_a_row_do_not_end_the_call(flaky):
    aws = flaky([(503, FlakyAws.error("ServiceUnavailable", "try again")),
                 (500, FlakyAws.error("InternalFailure", "oops")),
                 (200, FlakyAws.no_stacks())])
    assert Caller()(aws.cfn, "describe_stacks")["Stacks"] == []
    assert aws.requests == 3


def test_throttling_that_does_not_stop_is_a_cloud_error(flaky):
    aws = flaky([(400, FlakyAws.error("Throttling", "Rate exceeded"))])
    with pytest.raises(CloudError, match="kept throttling cloudformation:DescribeStacks after "
                                         "5 retries") as caught:
        Caller()(aws.cfn, "describe_stacks")
    assert aws.requests == 6  # botocore's attempts, never multiplied by the adapter's own
    assert isinstance(caught.value.__cause__, ClientError)


def test_a_5xx_that_does_not_stop_is_one_line(flaky):
    aws = flaky([(503, FlakyAws.error("ServiceUnavailable", "Service is\n  unavailable"))])
    with pytest.raises(CloudError) as caught:
        Caller()(aws.cfn, "describe_stacks")
    assert str(caught.value) == (
        "AWS failed cloudformation:DescribeStacks (HTTP 503, ServiceUnavailable) after 5 "
        "retries: Service is unavailable (AWS had trouble on its side; run again in a minute)")
    assert aws.requests == 6


def test_a_5xx_with_a_body_that_is_not_xml_is_mapped_not_a_traceback(flaky):
    """botocore raises ResponseParserError, which is no BotoCoreError: it used to escape."""
    from botocore.parsers import ResponseParserError

    aws = flaky([(502, "upstream connect error or disconnect/reset before headers.\n"
                       "reset reason: overflow")])
    slept: list[float] = []
    with pytest.raises(CloudError) as caught:
        Caller(sleep=slept.append)(aws.cfn, "describe_stacks")
    assert aws.requests == 4 and slept == [0.5, 1.0, 2.0]  # botocore cannot retry these
    message = str(caught.value)
    assert message.startswith("AWS answered cloudformation:DescribeStacks with a body it "
                              "could not read: ") and "\n" not in message
    assert isinstance(caught.value.__cause__, ResponseParserError)


def test_an_answer_that_could_not_be_read_is_retried(flaky):
    aws = flaky([(502, "Bad Gateway"), (503, "Service Unavailable"),
                 (200, FlakyAws.no_stacks())])
    assert Caller(sleep=lambda s: None)(aws.cfn, "describe_stacks")["Stacks"] == []
    assert aws.requests == 3


def test_an_endpoint_nobody_listens_on_is_cannot_reach(flaky):
    aws = flaky([(200, FlakyAws.no_stacks())])
    aws.server.shutdown()
    aws.server.server_close()
    with pytest.raises(CloudError, match=r"^cannot reach AWS for cloudformation:DescribeStacks"
                       ) as caught:
        Caller()(aws.cfn, "describe_stacks")
    assert isinstance(caught.value.__cause__, EndpointConnectionError)
    assert "\n" not in str(caught.value)


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

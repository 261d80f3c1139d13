"""botocore's exceptions, mapped into the project's error tree at the adapter boundary.

Retrying is botocore's (standard mode, see deployer.aws.session.CLIENT_CONFIG): throttling,
transient 5xx and connection errors are retried inside the client; what reaches this
boundary has already been retried, and only is mapped here, every kind of it:

    botocore exception                         project error
    ClientError  Throttling*, RequestLimit…    CloudError "AWS kept throttling …"
                 AccessDenied*, Unauthorized…  CloudError naming the action and permission
                 ValidationError, InvalidPa…   ConfigError (unless it says "does not exist")
                 *NotFound, NoSuch*, "… does
                 not exist"                    NotFound
                 expired or invalid token      CloudError (credentials)
                 5xx (InternalFailure, …)      CloudError "AWS failed … (HTTP 503) …"
                 anything else                 CloudError
    NoCredentialsError                         CloudError "no AWS credentials …"
    ProfileNotFound                            CloudError naming the profile
    NoRegionError                              CloudError "no AWS region …"
    EndpointConnectionError, timeouts          CloudError "cannot reach AWS …"
    ResponseParserError (a 5xx whose body is
    not AWS's XML/JSON, from a proxy, say)     retried (Caller), then CloudError "AWS
                                               answered … with a body it could not read …"
    other BotoCoreError                        CloudError

Every message is one line. The original exception is always chained (``raise … from
exc``), so ``--debug`` shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from deployer.base import errors

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "ProvisionedThroughputExceededException",
    "RequestThrottled", "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
    "BandwidthLimitExceeded",
})
ACCESS_DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Unauthorized",
    "UnauthorizedException", "AuthorizationError", "Forbidden",
    "403",  # S3 HEAD requests carry only the HTTP status
})
CREDENTIAL_CODES = frozenset({
    "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
    "InvalidAccessKeyId", "UnrecognizedClientException", "AuthFailure", "RequestExpired",
    "InvalidToken",
})
VALIDATION_CODES = frozenset({
    "ValidationError", "ValidationException", "InvalidParameterValue",
    "InvalidParameterCombination", "InvalidParameterValueException", "MissingParameter",
    "InvalidParameter", "InvalidParameterException", "MalformedPolicyDocument",
    "InvalidRequest", "InvalidArgument",
})

CREDENTIALS_HINT = ("set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    "or run 'aws configure'")
REGION_HINT = "set AWS_REGION or AWS_DEFAULT_REGION, or region in ~/.aws/config"

# Answers botocore could not parse (not retried by botocore): retried here, backing off.
PARSER_RETRIES = 3
PARSER_BACKOFF_S = 0.5

# Messages are one line; a body quoted from an error answer is cut to this many characters.
QUOTE_CHARS = 200


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return one_line(str(exc.response.get("Error", {}).get("Message", "")) or str(exc))


def one_line(text: str) -> str:
    """Whitespace (newlines of an HTML page, say) folded, cut to QUOTE_CHARS."""
    text = " ".join(text.split())
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 1] + "…"


def http_status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _iam_action(service: str, operation: str) -> str:
    """``cloudformation``, ``CreateChangeSet`` -> ``cloudformation:CreateChangeSet``."""
    prefix = {"elbv2": "elasticloadbalancing", "elasticloadbalancingv2": "elasticloadbalancing",
              "elasticloadbalancing": "elasticloadbalancing"}.get(service, service)
    return f"{prefix}:{operation}"


def is_throttling(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) in THROTTLING_CODES


def is_not_found(code: str, message: str) -> bool:
    return (code == "404" or code.endswith("NotFound") or code.endswith("NotFoundException")
            or code.startswith("NoSuch") or code.endswith("DoesNotExistException")
            or code.startswith("InvalidAMIID") or code.endswith(".NotFound")
            or "does not exist" in message)


def map_client_error(exc: ClientError, service: str, operation: str) -> errors.DeployerError:
    code, message = error_code(exc), error_message(exc)
    action = _iam_action(service, operation)
    if code in ACCESS_DENIED_CODES or "not authorized to perform" in message:
        return errors.CloudError(f"AWS denied {action}: {message}",
                                 hint=f"allow {action} in the IAM policy of the identity "
                                      "deployer runs as")
    if code in CREDENTIAL_CODES:
        return errors.CloudError(f"AWS rejected the credentials ({code}): {message}",
                                 hint=CREDENTIALS_HINT)
    if is_not_found(code, message):
        return errors.NotFound(f"{action}: {message}")
    if code in VALIDATION_CODES:
        return errors.ConfigError(f"AWS rejected {action}: {message}")
    if code in THROTTLING_CODES:
        return errors.CloudError(f"AWS kept throttling {action} after {retries(exc)} retries: "
                                 f"{message}", hint="wait a minute and run again")
    status = http_status(exc)
    if status is not None and status >= 500:
        return errors.CloudError(f"AWS failed {action} (HTTP {status}, {code or 'error'}) "
                                 f"after {retries(exc)} retries: {message}",
                                 hint="AWS had trouble on its side; run again in a minute")
    return errors.CloudError(f"{action} failed ({code or 'error'}): {message}")


def retries(exc: ClientError) -> int:
    """How many times botocore retried before giving up (it records it in the response)."""
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)


def map_parser_error(exc: ResponseParserError, service: str,
                     operation: str) -> errors.DeployerError:
    """An answer botocore could not parse: typically a 5xx page from a proxy or gateway."""
    return errors.CloudError(f"AWS answered {_iam_action(service, operation)} with a body it "
                             f"could not read: {one_line(str(exc))}",
                             hint="a proxy or AWS had trouble; run again in a minute")


def map_botocore_error(exc: BotoCoreError, service: str, operation: str) -> errors.DeployerError:
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return errors.CloudError("no AWS credentials", hint=CREDENTIALS_HINT)
    if isinstance(exc, ProfileNotFound):
        return errors.CloudError(f"AWS profile {exc.kwargs.get('profile')!r} is not in the "
                                 "AWS config files", hint="check AWS_PROFILE and ~/.aws/config")
    if isinstance(exc, NoRegionError):
        return errors.CloudError("no AWS region", hint=REGION_HINT)
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return errors.CloudError(f"cannot reach AWS for {_iam_action(service, operation)}: "
                                 f"{one_line(str(exc))}",
                                 hint="check the network, proxy and region")
    return errors.CloudError(f"{_iam_action(service, operation)} failed: {one_line(str(exc))}")


class Caller:
    """Calls boto3 client methods through the boundary: every botocore error mapped.

    Retries are botocore's own (standard mode): a call that raises here has been retried
    already, so the caller does not retry on top. The one exception botocore cannot retry
    is an answer it could not parse (it raises before its retry handler runs): a 5xx page
    from a proxy or gateway, as transient as any other 5xx. Those are retried here,
    ``PARSER_RETRIES`` times with botocore's transient backoff; ``sleep`` is injected so
    tests need no real waiting.
    """

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sleep = sleep

    def __call__(self, client: Any, method_name: str, **kwargs: Any) -> dict:
        """``caller(cfn, "describe_stacks", StackName=...)``: the operation's response."""
        method = getattr(client, method_name)
        operation = client.meta.method_to_api_mapping.get(method_name, method_name)
        service = client.meta.service_model.service_name
        for attempt in range(PARSER_RETRIES + 1):
            try:
                return method(**kwargs)
            except ClientError as exc:
                raise map_client_error(exc, service, operation) from exc
            except ResponseParserError as exc:
                if attempt < PARSER_RETRIES:
                    self.sleep(PARSER_BACKOFF_S * 2 ** attempt)
                    continue
                raise map_parser_error(exc, service, operation) from exc
            except BotoCoreError as exc:
                raise map_botocore_error(exc, service, operation) from exc
        raise AssertionError("unreachable")  # the loop returns or raises

    def pages(self, client: Any, method_name: str, result_key: str, token: str = "NextToken",
              request_token: str | None = None, **kwargs: Any):
        """Every item of a paginated operation, page after page, each page through __call__."""
        request_token = request_token or token
        while True:
            page = self(client, method_name, **kwargs)
            yield from page.get(result_key, [])
            next_token = page.get(token)
            if not next_token:
                return
            kwargs[request_token] = next_token


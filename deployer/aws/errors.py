"""botocore's exceptions, mapped into the project's error tree at the adapter boundary.

    botocore exception                         project error
    ClientError  Throttling*, RequestLimit…    retried with backoff, then CloudError
                 AccessDenied*, Unauthorized…  CloudError naming the action and permission
                 ValidationError, InvalidPa…   ConfigError (unless it says "does not exist")
                 *NotFound, NoSuch*, "… does
                 not exist"                    NotFound
                 expired or invalid token      CloudError (credentials)
                 anything else                 CloudError
    NoCredentialsError                         CloudError "no AWS credentials …"
    ProfileNotFound                            CloudError naming the profile
    NoRegionError                              CloudError "no AWS region …"
    EndpointConnectionError, timeouts          CloudError "cannot reach AWS …"
    other BotoCoreError                        CloudError

The original exception is always chained (``raise … from exc``), so ``--debug`` shows it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

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

from deployer.base import errors

T = TypeVar("T")

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

# Throttled calls: exponential backoff with full jitter, as AWS recommends, a few times.
RETRIES = 5
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


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
        return errors.CloudError(f"AWS kept throttling {action} after {RETRIES} retries: "
                                 f"{message}", hint="wait a minute and run again")
    return errors.CloudError(f"{action} failed ({code or 'error'}): {message}")


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
                                 f"{exc}", hint="check the network, proxy and region")
    return errors.CloudError(f"{_iam_action(service, operation)} failed: {exc}")


class Caller:
    """Calls boto3 client methods through the boundary: throttling retried, errors mapped.

    ``sleep`` and ``jitter`` are injected so tests (and the benchmark) need no real waiting.
    """

    def __init__(self, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[float], float] = lambda cap: random.uniform(0, cap)) -> None:
        self.sleep = sleep
        self.jitter = jitter

    def __call__(self, client: Any, method_name: str, **kwargs: Any) -> dict:
        """``caller(cfn, "describe_stacks", StackName=...)``: the operation's response."""
        method = getattr(client, method_name)
        operation = client.meta.method_to_api_mapping.get(method_name, method_name)
        service = client.meta.service_model.service_name
        for attempt in range(RETRIES + 1):
            try:
                return method(**kwargs)
            except ClientError as exc:
                if is_throttling(exc) and attempt < RETRIES:
                    self.sleep(self.jitter(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt)))
                    continue
                raise map_client_error(exc, service, operation) from exc
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


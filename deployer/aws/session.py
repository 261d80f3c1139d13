"""Credentials, region and the preflight check, from AWS's standard chain.

Credentials and region come from where every AWS tool looks: ``AWS_PROFILE``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``~/.aws/config`` and ``~/.aws/credentials``, SSO and instance roles. The region is
``AWS_REGION`` first (what the AWS CLI v2 and the other SDKs read), then
``AWS_DEFAULT_REGION``, then the profile's: boto3 alone never reads ``AWS_REGION``.
The preflight asks STS who we are before anything is created, so missing or wrong
credentials fail with one line and leave nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ProfileNotFound
from pydantic import BaseModel

from deployer.aws.errors import CREDENTIALS_HINT, REGION_HINT, Caller, map_botocore_error
from deployer.base import errors

# botocore's standard retry mode retries throttling, transient 5xx (500, 502, 503, 504) and
# connection errors, with jittered exponential backoff (throttling from 1 s, others from
# 50 ms, at most 20 s). total_max_attempts counts the first attempt: 6 is 1 + 5 retries,
# enough for a burst of 5xx during a follow that lasts hours. (botocore's "max_attempts"
# counts retries only: the old "max_attempts": 1 meant one retry, not none.) The adapter
# does not retry on top (deployer.aws.errors.Caller), so the attempts never multiply.
TOTAL_MAX_ATTEMPTS = 6
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": TOTAL_MAX_ATTEMPTS},
                       connect_timeout=10, read_timeout=60,
                       user_agent_extra="etherpad-deployer")


class Identity(BaseModel):
    """Who deployer acts as, and where."""

    account: str
    arn: str
    region: str
    profile: str | None = None


def default_session(environ: Mapping[str, str] | None = None) -> boto3.Session:
    """A session from the standard chain; a named profile that does not exist is one line.

    ``AWS_REGION`` wins over ``AWS_DEFAULT_REGION`` and the profile, as in the AWS CLI v2.
    """
    environ = os.environ if environ is None else environ
    try:
        return boto3.Session(region_name=environ.get("AWS_REGION") or None)
    except ProfileNotFound as exc:
        raise map_botocore_error(exc, "sts", "GetCallerIdentity") from exc


def client(session: boto3.Session, service: str) -> Any:
    try:
        return session.client(service, config=CLIENT_CONFIG)
    except BotoCoreError as exc:
        raise map_botocore_error(exc, service, "client") from exc


def preflight(session: boto3.Session, caller: Caller) -> Identity:
    """Region set, credentials present and accepted: who we are, or one line saying what's wrong."""
    region = session.region_name
    if not region:
        raise errors.CloudError("no AWS region", hint=REGION_HINT)
    try:
        credentials = session.get_credentials()
    except BotoCoreError as exc:
        raise map_botocore_error(exc, "sts", "GetCallerIdentity") from exc
    if credentials is None:
        raise errors.CloudError("no AWS credentials", hint=CREDENTIALS_HINT)
    who = caller(client(session, "sts"), "get_caller_identity")
    return Identity(account=who["Account"], arn=who["Arn"], region=region,
                    profile=session.profile_name if session.profile_name != "default" else None)

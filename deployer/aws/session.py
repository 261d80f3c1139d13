"""Credentials, region and the preflight check, from AWS's standard chain.

Credentials and region come from where every AWS tool looks: ``AWS_PROFILE``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``~/.aws/config`` and ``~/.aws/credentials``, SSO and instance roles. The preflight asks
STS who we are before anything is created, so missing or wrong credentials fail with one
line and leave nothing behind.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ProfileNotFound
from pydantic import BaseModel

from deployer.aws.errors import CREDENTIALS_HINT, REGION_HINT, Caller, map_botocore_error
from deployer.base import errors

# The adapter retries throttling itself (deployer.aws.errors.Caller); botocore's own retries
# on top would multiply the attempts and hide how long a call really took.
CLIENT_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"},
                       connect_timeout=10, read_timeout=60,
                       user_agent_extra="etherpad-deployer")


class Identity(BaseModel):
    """Who deployer acts as, and where."""

    account: str
    arn: str
    region: str
    profile: str | None = None


def default_session() -> boto3.Session:
    """A session from the standard chain; a named profile that does not exist is one line."""
    try:
        return boto3.Session()
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

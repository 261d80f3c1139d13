from __future__ import annotations

import os

import boto3
import pytest

from deployer.aws.provider import AwsCloud
from tests.aws.support import FakeClock, patch_moto_change_sets

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch, tmp_path):
    """No test may find real credentials or reach the instance metadata service."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def moto_session(monkeypatch):
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    patch_moto_change_sets(monkeypatch)
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cloud(moto_session, clock) -> AwsCloud:
    return AwsCloud(moto_session, clock=clock)


@pytest.fixture(autouse=True)
def fresh_logging():
    """A CLI test points the log at its captured stderr; don't let the next test write there."""
    import structlog

    yield
    structlog.reset_defaults()

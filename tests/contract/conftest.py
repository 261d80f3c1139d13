from tests.aws.conftest import clock, fresh_logging, moto_session, no_real_aws  # noqa: F401

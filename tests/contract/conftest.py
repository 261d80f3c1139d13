# The contract suite runs AWS on moto with the same isolation as tests/aws.
from tests.aws.conftest import clock, fresh_logging, moto_session, no_real_aws  # noqa: F401

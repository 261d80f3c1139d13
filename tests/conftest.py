"""Suite-wide fixtures: the records behind docs/drills.md (see tests/support/drill_table.py)."""

from __future__ import annotations

import pytest

from tests.support.drill_table import Collector, Record, output_path

_COLLECTOR = Collector()


@pytest.fixture
def drill(request) -> Record:
    """A failure drill's record: the test fills in title, expectations and what it saw."""
    return _COLLECTOR.new("drill", request.node.nodeid, request.node.name)


@pytest.fixture
def bad_input(request) -> Record:
    """A bad-input case's record: the line the user got and the exit code."""
    return _COLLECTOR.new("bad input", request.node.nodeid, request.node.name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        _COLLECTOR.outcome(item.nodeid, "failed")
    elif report.when == "call":
        _COLLECTOR.outcome(item.nodeid, "skipped" if report.skipped else "passed")
    elif report.skipped:
        _COLLECTOR.outcome(item.nodeid, "skipped")


def pytest_sessionfinish(session, exitstatus):
    path = output_path()
    if path is not None and _COLLECTOR.records:
        _COLLECTOR.write(path)

"""`deployer compare` end to end on the local cloud, real Etherpad, two strategies.

One compare (about 4 minutes on 2 cores): 1.8.14 → 1.8.14-r2 from the session's git
mirror (tests/e2e/conftest.py) through cloudformation and packer, each on a new
environment, with the JSON, JUnit and HTML reports; then the run history has it. (A full
three-strategy compare is recorded in the README.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.e2e.conftest import GOOD, NEXT
from tests.e2e.test_release import editors_were_unaffected
from tests.report.test_html import EXTERNAL

pytestmark = pytest.mark.slow

# Two strategies keep CI's time in bounds: every strategy's release is already exercised end
# to end in test_release.py, and the codedeploy measures are unit-tested on its reports.
STRATEGIES = ["cloudformation", "packer"]
RELEASE_KEYS = {"url", "hz", "duration_s", "zero_downtime", "probes", "downtime_windows",
                "longest_gap_ms", "versions", "mixed_window_ms", "jitter", "run_id",
                "strategy", "release", "from_release", "target", "outcome", "phases",
                "total_seconds", "served_versions", "error", "details", "started_at",
                "probe_offset_s", "timeline", "target_health", "events"}


def deployer(home: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEPLOYER_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "deployer", "--log-format", "json", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("deployer-home-compare")
    yield home
    deployer(home, "down", "--all", timeout=600)


def test_compare_releases_through_each_strategy(mirror, home, tmp_path):
    json_file, junit_file, html_file = (tmp_path / "compare.json", tmp_path / "compare.xml",
                                        tmp_path / "compare.html")
    result = deployer(home, "compare", NEXT, "--from", GOOD, "--source", str(mirror),
                      "--strategies", ",".join(STRATEGIES), "--json", str(json_file),
                      "--junit", str(junit_file), "--html", str(html_file))
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads(json_file.read_text())
    assert (report["release"], report["from_release"]) == (NEXT, GOOD)
    assert list(report["strategies"]) == STRATEGIES
    for name, entry in report["strategies"].items():
        assert RELEASE_KEYS <= set(entry), RELEASE_KEYS - set(entry)
        assert (entry["strategy"], entry["release"], entry["from_release"]) == (name, NEXT, GOOD)
        assert entry["outcome"] == "succeeded", entry["error"]
        assert entry["zero_downtime"] is True and entry["probes"]["failed"] == 0
        assert entry["served_versions"] == [NEXT]
        assert [v["version"] for v in entry["versions"]] == [GOOD, NEXT]
        editors_were_unaffected(entry)
        assert entry["measures"]["environment_created"] is True
        assert entry["measures"]["boot_to_healthy"], "no instance turned healthy in the rollout"
        floor = entry["floor"]
        assert floor is not None and entry["ratio_to_floor"] == floor["ratio_to_floor"]
        # a floor is a floor: the run cannot be much faster than it
        assert entry["ratio_to_floor"] > 0.8, floor
    strategies = report["strategies"]
    assert strategies["packer"]["measures"]["storage_kind"] == "image"
    assert strategies["cloudformation"]["measures"]["storage_bytes"] == 0
    assert [r["role"] for r in report["runs"]] == ["measured"] * len(STRATEGIES)
    assert report["summary"]["outcome"] == "succeeded"
    assert report["summary"]["users_unaffected"] is True
    for name, row in report["summary"]["per_strategy"].items():
        assert row["edits_lost"] == 0 and row["pads_diverged"] == 0, (name, row)
        assert row["editor_interruption_ms"] is not None
    assert sorted(report["summary"]["ranking"]) == sorted(STRATEGIES)

    suites = ET.parse(junit_file).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [f"deployer.{n}" for n in STRATEGIES]
    assert all(s.get("failures") == "0" for s in suites)

    page = html_file.read_text()
    assert page.count('<section class="strategy">') == len(STRATEGIES)
    assert not EXTERNAL.search(page)  # opens offline: nothing to fetch
    assert result.stdout.count("deployment speed") == 1  # the table, book rows included
    assert "editor interruption" in result.stdout and "edits lost" in result.stdout
    assert page.count("editor connected") == 1  # the editors' lanes have their legend

    history = json.loads(deployer(home, "history", "--json").stdout)
    kinds = [(r["kind"], r["strategy"]) for r in history["runs"]]
    assert ("compare", ",".join(STRATEGIES)) in kinds
    assert sorted(s for k, s in kinds if k == "release") == sorted(STRATEGIES)

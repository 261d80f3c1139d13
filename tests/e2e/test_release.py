"""`deployer release` end to end on the local cloud, with real Etherpad, for every strategy.

GitHub is out of reach here, so the releases come from a git mirror the tests build from the
npm release of Etherpad (1.8.14): tag ``1.8.14`` and tag ``1.8.14-r2`` (the same code, a
second release as far as every tool is concerned), plus ``1.8.14-broken``, whose server
exits at start. Each strategy: an environment at 1.8.14, a pad written through the load
balancer, a release to 1.8.14-r2 watched by the poller, a broken release that must roll
back, and the pad read back unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import BROKEN, GOOD, NEXT
from tests.helpers import etherpad_api
from tests.support.browser import CHROMIUM, READY, pad_dom

pytestmark = pytest.mark.slow

PAD_TEXT = "Pads live in the database: no release may lose one.\n"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("deployer-home")
    with pytest.MonkeyPatch.context() as patch:
        # Instances installing from user data copy the installed release after the first time.
        patch.setenv("ETHERPAD_CACHE_DIR", str(tmp_path_factory.mktemp("release-cache")))
        yield home
        deployer(home, "down", "--all", check=False)


def deployer(home: Path, *args: str, check: bool = True,
             timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEPLOYER_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "deployer", "--log-format", "json", *args],
                            capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def status(home: Path) -> dict:
    return json.loads(deployer(home, "status", "--json").stdout)


def environment(home: Path, strategy: str) -> dict:
    return next(e for e in status(home)["environments"] if e["strategy"] == strategy)


@pytest.mark.parametrize("strategy", ["packer", "cloudformation", "codedeploy"])
def test_release_rolls_out_with_zero_downtime_and_rolls_back_a_broken_one(
        strategy, mirror, home, tmp_path):
    source = str(mirror)
    deployer(home, "up", "--strategy", strategy, "--version", GOOD, "--source", source)
    env = environment(home, strategy)
    url = env["url"]
    assert env["status"] == "CREATE_COMPLETE"
    pad = f"pad-{strategy}"
    etherpad_api(url, home, "createPad", padID=pad, text=PAD_TEXT)
    written = etherpad_api(url, home, "getText", padID=pad)["text"]
    assert written.startswith(PAD_TEXT)  # Etherpad keeps a final newline of its own
    if strategy == "codedeploy" and CHROMIUM is not None:
        # Two instances behind a round-robin load balancer in steady state: a real browser
        # opens the pad and reaches the ready editor, not "Loading..." (the pad lease).
        dom = pad_dom(f"{url.rstrip('/')}/p/{pad}")
        assert READY.search(dom), dom[-2000:]

    report_file = tmp_path / "release.json"
    junit_file = tmp_path / "release.xml"
    result = deployer(home, "release", NEXT, "--strategy", strategy, "--source", source,
                      "--json", str(report_file), "--junit", str(junit_file), check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert report["outcome"] == "succeeded"
    assert report["zero_downtime"] is True and report["probes"]["failed"] == 0
    assert report["probes"]["total"] > 20
    assert [v["version"] for v in report["versions"]] == [GOOD, NEXT]
    assert report["served_versions"] == [NEXT]
    assert (report["strategy"], report["release"], report["target"]) == (strategy, NEXT, "local")
    assert report["from_release"] == GOOD
    assert [p["name"] for p in report["phases"]][:2] == ["environment", "prepare"]
    assert report["total_seconds"] > 0
    junit = junit_file.read_text()
    assert 'failures="0"' in junit and 'name="data_intact"' in junit
    assert etherpad_api(url, home, "getText", padID=pad)["text"] == written
    editors_were_unaffected(report)

    result = deployer(home, "release", BROKEN, "--strategy", strategy, "--source", source,
                      "--json", str(report_file), check=False)
    assert result.returncode == 4, result.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert report["outcome"] == "rolled_back"
    assert report["zero_downtime"] is True, report["downtime_windows"]
    assert report["served_versions"] == [NEXT]
    assert etherpad_api(url, home, "getText", padID=pad)["text"] == written
    # A rollback costs editors no edit either (the broken release never took a pad).
    assert report["data"]["edits_lost"] == 0 and report["data"]["pads_diverged"] == 0
    assert report["editors"]["gave_up"] == 0, report["editor_timeline"]
    deployer(home, "down", "--strategy", strategy)


def editors_were_unaffected(report: dict) -> None:
    """Six editors typed on three pads through the whole release: every acknowledged edit is
    in its pad, every seeded pad intact, the instances agree, nobody had to reload."""
    editors, data = report["editors"], report["data"]
    assert (editors["editors"], editors["pads"]) == (6, 3)
    assert editors["gave_up"] == 0, report["editor_timeline"]
    assert editors["edits_acknowledged"] > 6 * 5, editors  # at least 5 s of typing each
    assert editors["edits_lost"] == 0 and data["edits_lost"] == 0, data
    assert data["pads_checked"] == 3 and data["pads_intact"] == 3, data
    assert data["pads_diverged"] == 0, data
    assert report["users_unaffected"] is True
    assert len(report["editor_timeline"]) == 6

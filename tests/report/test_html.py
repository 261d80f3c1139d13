"""The HTML report: self-contained, and it really renders (headless Chromium, when installed).

Built from synthetic release reports (tests/support/reports.py), so no cloud is needed.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from deployer.base.assets import asset_path
from deployer.core.compare import CompareSummary, Comparison, RunRecord, strategy_entry
from deployer.report.floor import compute_floor, floor_config
from deployer.report.history import RunRole
from deployer.report.html import render_comparison, render_release, write_html
from deployer.report.rollout import measure
from tests.support.png import distinct_colours, read_png
from tests.support.reports import in_place_report, rolling_report

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome",
                                                 "google-chrome-stable")
                 if shutil.which(name)), None)
EXTERNAL = re.compile(r"""(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?"""
                      r"""\s*(?:https?:)?//|@import""", re.IGNORECASE)


def synthetic_comparison() -> Comparison:
    reports = {
        "codedeploy": in_place_report(install=40.0),
        "cloudformation": rolling_report("cloudformation", prepare=0.0, launch_to_healthy=30.0,
                                         failed_checks_first=True),
        # downtime from refused connections, to see failures marked in the timeline
        "packer": rolling_report("packer", down=(7.0, 7.6), outcome="succeeded"),
    }
    reports["packer"].timeline[150][1] = "reset"
    strategies, runs = {}, []
    for name, report in reports.items():
        report.run_id = f"run-{name}"
        m = measure(report)
        floor = compute_floor(floor_config(asset_path("etherpad", "stacks", f"{name}.yaml")), m)
        strategies[name] = strategy_entry(report, m, floor, [(m, floor)])
        runs.append(RunRecord(run_id=report.run_id, strategy=name, repetition=1,
                              role=RunRole.MEASURED, release=report.release,
                              from_release=report.from_release, outcome=report.outcome,
                              zero_downtime=report.zero_downtime,
                              total_seconds=report.total_seconds,
                              failed_probes=report.probes.failed, measures=m, floor=floor))
    return Comparison(
        run_id="cmp-test", release="1.8.18", from_release="1.8.17", target="local",
        source="/srv/mirrors/etherpad-lite.git", hz=20.0, repeat=1,
        started_at=1_800_000_000.0, machine={"platform": "Linux", "cpus": 2},
        strategies=strategies, runs=runs,
        summary=CompareSummary(outcome="downtime", exit_code=3, zero_downtime=False,
                               seconds=400.0, ranking=["packer", "cloudformation",
                                                       "codedeploy"]))


def test_comparison_html_is_one_self_contained_file():
    page = render_comparison(synthetic_comparison())
    assert page.startswith("<!DOCTYPE html>")
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "<script" not in page and "<link" not in page
    # a comparison table, the settings, and per strategy a section with its timeline
    assert page.count('<section class="strategy">') == 3
    assert page.count("<svg") == 6  # a phases bar and a timeline each
    for text in ("deployment speed (book)", "actual / floor", "/srv/mirrors/etherpad-lite.git",
                 "probes per second", "failed: http_503", "failed: reset", "i-new", "i-old",
                 "i-a", "i-b", "AfterInstall", "downtime 7.00"):
        assert text in page, text
    # the probe lane colours the answering releases differently
    assert "#4e79a7" in page and "#59a14f" in page


def test_release_html_has_the_same_parts_for_one_run():
    report = rolling_report("packer")
    page = render_release(report, machine={"cpus": 2})
    assert not EXTERNAL.search(page)
    assert "deployer release: 1.8.18 via packer" in page and page.count("<svg") == 2
    assert "cpus 2" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./run setup adds it)")
def test_html_report_renders_in_headless_chromium(tmp_path):
    html_file, png = tmp_path / "report.html", tmp_path / "report.png"
    write_html(render_comparison(synthetic_comparison()), html_file)
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={png}", "--window-size=1400,1000", html_file.as_uri()],
        capture_output=True, timeout=90, check=False)
    assert png.exists(), "chromium wrote no screenshot"
    assert png.stat().st_size > 20_000
    width, height, _, _ = read_png(png)
    assert (width, height) == (1400, 1000)
    assert distinct_colours(png) > 20  # a table, badges and coloured lanes, not a blank page

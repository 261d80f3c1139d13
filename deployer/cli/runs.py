"""Commands that release and measure: ``probe``, ``release`` and ``compare``."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from deployer.base import logs
from deployer.base.errors import UsageError
from deployer.cli.common import (
    ENV,
    EditorsOpt,
    HtmlOpt,
    SourceOpt,
    StrategyOpt,
    TargetOpt,
    check_release_options,
    editor_settings,
    exit_for,
    history_store,
    live_view,
    log_event,
    release_context,
    remember,
    stack_template,
)
from deployer.core.editing import DEFAULT_EDITORS
from deployer.measure.analysis import analyse
from deployer.measure.poller import HealthPoller
from deployer.measure.versions import extractor_from_spec
from deployer.report.release import (
    Verdict,
    data_line,
    print_probe_table,
    write_json,
    write_junit,
)


def probe(
    url: Annotated[str, typer.Argument(help="The URL to poll, e.g. the load balancer's.")],
    duration: Annotated[float, typer.Option(help="Seconds to poll.")] = 10.0,
    hz: Annotated[float, typer.Option(help="Probes per second.")] = 20.0,
    timeout: Annotated[float, typer.Option(
        help="Seconds before a probe counts as timed out.")] = 2.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON report.")] = None,
    junit_path: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML.")] = None,
    version_from: Annotated[str, typer.Option(
        help="How to read the answering version: etherpad, header:NAME or none.")] = "etherpad",
) -> None:
    """Poll a URL on fresh connections and report downtime and the versions that answered.

    Exits 0 when every probe succeeded, 3 when any failed.
    """
    if not duration > 0:
        raise UsageError(f"duration must be positive, got {duration}", hint="pass --duration 10")
    poller = HealthPoller(url, hz=hz, timeout=timeout, extractor=extractor_from_spec(version_from))
    log = logs.get_logger(url=url)
    log.info("probe.start", hz=hz, duration=duration)
    started = time.monotonic()
    poller.start()
    try:
        time.sleep(duration)
    finally:
        poller.stop()
    probes = poller.snapshot()
    analysis = analyse(probes, url=url, hz=hz, duration_s=time.monotonic() - started,
                       skipped=poller.skipped)
    log.info("probe.end", zero_downtime=analysis.zero_downtime, failed=analysis.probes.failed,
             total=analysis.probes.total)
    if json_path:
        write_json(analysis, json_path)
    if junit_path:
        write_junit([analysis], junit_path)
    print_probe_table(analysis, ENV.stdout)
    raise typer.Exit(exit_for(analysis.zero_downtime))


def release(
    version: Annotated[str, typer.Argument(help="The Etherpad release to roll out, e.g. 1.8.18.")],
    strategy: StrategyOpt,
    from_version: Annotated[str | None, typer.Option(
        "--from", help="Release the environment starts at when it must be created "
                       "(default: the release before VERSION).")] = None,
    target: TargetOpt = "local",
    source: SourceOpt = "github",
    hz: Annotated[float, typer.Option(help="Health probes per second.")] = 20.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON report.")] = None,
    junit_path: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML.")] = None,
    budget: Annotated[float | None, typer.Option(
        help="Seconds the release may take; JUnit fails the budget case past it.")] = None,
    ignore_application_stop_failures: Annotated[bool, typer.Option(
        "--ignore-application-stop-failures",
        help="CodeDeploy: carry on when the old revision's ApplicationStop fails.")] = False,
    html_path: HtmlOpt = None,
    editors: EditorsOpt = DEFAULT_EDITORS,
) -> None:
    """Roll one release out with one strategy, watched by the health poller and by editors
    typing on pads through the load balancer.

    Exits 0 on success with users unaffected, 3 on downtime (a failed probe, an editor who
    gave up), 4 when rolled back, 5 when an acknowledged edit was lost or a pad diverged,
    1 on failure.
    """
    from deployer.core.compare import machine_info
    from deployer.core.engine import PollerSettings, ReleaseRun
    from deployer.core.locks import environment_lock
    from deployer.core.strategy import ReleaseOptions
    from deployer.etherpad.releases import previous_release
    from deployer.report.release import print_release_table

    check_release_options(hz=hz, budget=budget, outputs=[json_path, junit_path, html_path])
    watch = editor_settings(editors)
    start_at = from_version or previous_release(version)
    strat, ctx = release_context(strategy, version, start_at, target, source, ReleaseOptions(
        ignore_application_stop_failures=ignore_application_stop_failures))
    machine = machine_info()
    try:
        with environment_lock(strategy, "release", release=version, target=target), \
                live_view(ctx.cloud) as view:
            report = ReleaseRun(strat, ctx, poller=PollerSettings(hz=hz),
                                observer=view, editors=watch).execute()
    finally:
        # Bundles and build output were uploaded or registered: the scratch space can go.
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    remember(report, machine)
    if json_path:
        write_json(report, json_path)
    if junit_path:
        write_junit([report], junit_path, budget_s=budget)
    if html_path:
        from deployer.report.html import render_release, write_html

        write_html(render_release(report, machine=machine,
                                  stack_template=stack_template(report.strategy)), html_path)
    print_release_table(report, ENV.stdout)
    verdict = Verdict.of_report(report)
    if verdict is Verdict.FAILED:
        print(f"deployer: error: release failed: {report.error}", file=sys.stderr)
    elif verdict is Verdict.DATA_LOST and report.data is not None:
        print(f"deployer: error: user data lost: {data_line(report.data)}", file=sys.stderr)
    raise typer.Exit(verdict.exit_status)


def compare(
    version: Annotated[str, typer.Argument(help="The Etherpad release to roll out, e.g. 1.8.18.")],
    from_version: Annotated[str | None, typer.Option(
        "--from", help="The release every measured run starts from (default: the release "
                       "before VERSION).")] = None,
    strategies: Annotated[str | None, typer.Option(
        "--strategies", help="Comma-separated strategies, in the order they run "
                             "(default: codedeploy,cloudformation,packer).")] = None,
    repeat: Annotated[int, typer.Option(
        help="Releases per strategy; the table shows median (min–max).")] = 1,
    target: TargetOpt = "local",
    source: SourceOpt = "github",
    hz: Annotated[float, typer.Option(help="Health probes per second.")] = 20.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON report.")] = None,
    junit_path: Annotated[Path | None, typer.Option(
        "--junit", help="Write JUnit XML: a test suite per strategy.")] = None,
    html_path: HtmlOpt = None,
    budget: Annotated[float | None, typer.Option(
        help="Seconds each release may take; JUnit fails the budget case past it.")] = None,
    editors: EditorsOpt = DEFAULT_EDITORS,
) -> None:
    """Release the same version through each strategy and print the measured trade-off table.

    Each strategy releases on its own environment, one after another; an environment that
    does not run --from is first brought back to it by releasing --from. Exits 0 when every
    release succeeded with users unaffected, 3 on any downtime, 4 when any rolled back, 1
    when any failed, 5 when any lost an acknowledged edit or let a pad diverge.
    """
    from deployer.core.compare import CompareRun, CompareSettings, parse_strategies
    from deployer.core.locks import environment_locks
    from deployer.core.providers import get_cloud
    from deployer.etherpad.releases import previous_release
    from deployer.report.compare_table import StrategyView, print_compare_table

    names = parse_strategies(strategies)
    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {repeat}", hint="pass --repeat 1")
    check_release_options(hz=hz, budget=budget, outputs=[json_path, junit_path, html_path])
    watch = editor_settings(editors)
    start_at = from_version or previous_release(version)
    if start_at is None:
        raise UsageError(f"no release known before {version!r} to start from",
                         hint="pass --from VERSION")
    from deployer.core.strategy import load_strategy

    for name in names:
        load_strategy(name).check_input(version, start_at, source, target)
    watch.check_client()
    settings = CompareSettings(release=version, from_release=start_at, strategies=names,
                               repeat=repeat, source=source, target=target, hz=hz,
                               budget_s=budget)
    cloud = get_cloud(target)
    # Every environment of the comparison is held for its whole length: a release run
    # meanwhile would be measured as part of it.
    with environment_locks(names, "compare", release=version, target=target), \
            live_view(cloud) as view:
        comparison = CompareRun(settings, cloud=cloud, on_event=log_event, observer=view,
                                history=history_store(), editors=watch).execute()
    if json_path:
        write_json(comparison, json_path)
    reports = list(comparison.reports().values())
    if junit_path:
        write_junit(reports, junit_path, budget_s=budget)
    if html_path:
        from deployer.report.html import render_comparison, write_html

        write_html(render_comparison(comparison), html_path)
    views = [StrategyView.from_entry(name, entry)
             for name, entry in comparison.strategies.items()]
    print_compare_table(views, ENV.stdout, title=(
        f"{comparison.from_release} → {comparison.release} on {target}: "
        f"{comparison.summary.outcome} (run {comparison.run_id})"))
    for note in comparison.summary.notes:
        print(f"deployer: note: {note}", file=sys.stderr)
    if comparison.summary.outcome is Verdict.FAILED:
        errors = [f"{r.strategy}: {r.error}" for r in reports if r.error]
        print(f"deployer: error: compare failed: {'; '.join(errors) or 'see the notes'}",
              file=sys.stderr)
    elif comparison.summary.outcome is Verdict.DATA_LOST:
        lost = [f"{r.strategy}: {data_line(r.data)}" for r in reports
                if r.data is not None and not r.data.ok]
        print(f"deployer: error: user data lost: {'; '.join(lost)}", file=sys.stderr)
    raise typer.Exit(comparison.summary.exit_code)

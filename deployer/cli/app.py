"""The command line. Commands only turn options into a context and call the core.

One place (:func:`main`) maps every error to one line on stderr and a documented exit code;
``--debug`` re-raises so the traceback shows.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deployer.base import logs
from deployer.base.errors import DeployerError, ExitStatus, UsageError
from deployer.measure.analysis import analyse
from deployer.measure.poller import HealthPoller
from deployer.measure.versions import extractor_from_spec
from deployer.report.release import print_probe_table, write_json, write_junit

app = typer.Typer(
    name="deployer",
    help="Release Etherpad with CodeDeploy, CloudFormation or Packer, and prove zero downtime.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@dataclass
class Env:
    """What a command needs from its surroundings; tests inject their own."""

    stdout: Console
    stderr: Console
    debug: bool = False
    log_format: str = "auto"
    verbose: bool = False


ENV = Env(stdout=Console(), stderr=Console(stderr=True))


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    log_format: Annotated[str, typer.Option(
        "--log-format", help="auto (console on a terminal, JSON otherwise), console or json.",
    )] = "auto",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug-level logs.")] = False,
) -> None:
    if log_format not in ("auto", "console", "json"):
        raise UsageError(f"unknown log format {log_format!r}", hint="use auto, console or json")
    ENV.debug = debug
    ENV.log_format, ENV.verbose = log_format, verbose
    logs.configure(log_format, verbose=verbose)  # type: ignore[arg-type]


def exit_for(zero_downtime: bool) -> ExitStatus:
    return ExitStatus.SUCCESS if zero_downtime else ExitStatus.DOWNTIME


@app.command()
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


StrategyOpt = Annotated[str, typer.Option("--strategy", "-s",
                                          help="codedeploy, cloudformation or packer.")]
TargetOpt = Annotated[str, typer.Option("--target", help="local (the embedded cloud) or aws.")]
SourceOpt = Annotated[str, typer.Option(
    "--source", help="Where releases come from: github, npm, a git URL or path (a mirror), "
                     "or a directory/tarball of one release.")]


def _on_event(event) -> None:
    logs.get_logger().info("cloud.event", source=event.source, resource=event.resource,
                           status=event.status, reason=event.reason or None)


def _context(strategy_name: str, release: str, from_release: str | None, target: str,
             source: str, options: dict | None = None):
    from deployer.core.engine import workdir_for
    from deployer.core.providers import get_cloud
    from deployer.core.strategy import ReleaseContext, load_strategy

    strategy = load_strategy(strategy_name)
    # Bad names and sources end here, before a cloud is asked anything.
    strategy.check_input(release, from_release, source, target)
    cloud = get_cloud(target)
    ctx = ReleaseContext(release=release, from_release=from_release, cloud=cloud,
                         workdir=workdir_for(cloud), on_event=_on_event, source=source,
                         options=options or {})
    return strategy, ctx


@app.command()
def up(
    strategy: StrategyOpt,
    version: Annotated[str, typer.Option("--version", help="The Etherpad release to run.")],
    target: TargetOpt = "local",
    source: SourceOpt = "github",
) -> None:
    """Create a strategy's environment at a release and leave it running."""
    from deployer.core.locks import environment_lock

    strat, ctx = _context(strategy, version, version, target, source)
    with environment_lock(strategy, "up", release=version, target=target):
        strat.preflight(ctx)
        view = strat.ensure_environment(ctx)
    ENV.stdout.print(f"{view.stack_name}: {view.stack_status} at {view.url}")


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable state.")] = False,
    target: TargetOpt = "local",
) -> None:
    """Show stacks, instances, target health, load balancer URLs, images and parameters."""
    from deployer.cli.status import print_status, status_document
    from deployer.core.providers import get_cloud

    doc = status_document(get_cloud(target))
    if json_out:
        ENV.stdout.print_json(data=doc)
    else:
        print_status(doc, ENV.stdout)


@app.command()
def down(
    strategy: Annotated[str | None, typer.Option("--strategy", "-s",
                                                    help="The environment to remove.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every environment.")] = False,
    target: TargetOpt = "local",
) -> None:
    """Remove an environment (or all) and leave no process behind."""
    from deployer.core.providers import get_cloud

    if bool(strategy) == all_:
        raise UsageError("say which environment to remove",
                         hint="pass --strategy NAME or --all")
    from deployer.core.locks import environment_lock, environment_locks
    from deployer.core.strategy import load_strategy, strategy_names

    cloud = get_cloud(target)
    if all_:
        with environment_locks(strategy_names(), "down", target=target):
            cloud.destroy_all(_on_event)
        ENV.stdout.print("all environments removed")
    else:
        load_strategy(strategy)  # an unknown name is a usage error, not a silent no-op
        with environment_lock(strategy, "down", target=target):
            cloud.destroy_environment(strategy, _on_event)
        ENV.stdout.print(f"environment {strategy} removed")


HtmlOpt = Annotated[Path | None, typer.Option(
    "--html", help="Write the HTML report (one self-contained file with timelines).")]


@contextmanager
def _live_view(cloud) -> Iterator[object | None]:
    """On a terminal: a live view of the run, and only warnings in the log while it shows.
    Otherwise (CI, pipes, --log-format json): nothing; the structured log lines tell it."""
    live = (ENV.log_format != "json" and ENV.stdout.is_terminal and sys.stderr.isatty())
    if not live:
        yield None
        return
    import logging

    from deployer.cli.live import LiveView

    with LiveView(ENV.stdout, cloud) as view:
        # Warnings still print, above the live view (rich redirects stderr while it shows).
        logs.configure("console", verbose=ENV.verbose, stream=sys.stderr, level=logging.WARNING)
        try:
            yield view
        finally:
            logs.configure(ENV.log_format, verbose=ENV.verbose)  # type: ignore[arg-type]


def _history():
    from deployer.report.history import History

    return History()


def _remember(report, machine: dict) -> None:
    """Keep the run in the history; a history that cannot be written never fails a release."""
    try:
        _history().record(report.model_dump(mode="json"), machine=machine)
    except DeployerError as exc:
        logs.get_logger().warning("history.not_recorded", reason=str(exc))


def check_release_options(*, hz: float, budget: float | None,
                          outputs: list[Path | None]) -> None:
    """Bad option values fail before anything is created, not after a rollout."""
    if not 0 < hz <= 1000:
        raise UsageError(f"--hz must be between 0 and 1000 probes per second, got {hz:g}",
                         hint="pass --hz 20")
    if budget is not None and not budget > 0:
        raise UsageError(f"--budget must be a positive number of seconds, got {budget:g}",
                         hint="pass --budget 600")
    for path in outputs:
        if path is not None and path.is_dir():
            raise UsageError(f"{path} is a directory, not a file to write the report to",
                             hint="give a file name, e.g. report.json")


@app.command()
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
) -> None:
    """Roll one release out with one strategy, watched by the health poller.

    Exits 0 on success with zero downtime, 3 on downtime, 4 when rolled back, 1 on failure.
    """
    from deployer.core.compare import machine_info
    from deployer.core.engine import PollerSettings, ReleaseRun
    from deployer.core.locks import environment_lock
    from deployer.etherpad.releases import previous_release
    from deployer.report.release import print_release_table

    check_release_options(hz=hz, budget=budget, outputs=[json_path, junit_path, html_path])
    start_at = from_version or previous_release(version)
    strat, ctx = _context(strategy, version, start_at, target, source, {
        "ignore_application_stop_failures": ignore_application_stop_failures})
    machine = machine_info()
    try:
        with environment_lock(strategy, "release", release=version, target=target), \
                _live_view(ctx.cloud) as view:
            report = ReleaseRun(strat, ctx, poller=PollerSettings(hz=hz),
                                observer=view).execute()
    finally:
        # Bundles and build output were uploaded or registered: the scratch space can go.
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    _remember(report, machine)
    if json_path:
        write_json(report, json_path)
    if junit_path:
        write_junit([report], junit_path, budget_s=budget)
    if html_path:
        from deployer.report.html import render_release, write_html

        write_html(render_release(report, machine=machine), html_path)
    print_release_table(report, ENV.stdout)
    if report.outcome == "rolled_back":
        raise typer.Exit(ExitStatus.ROLLED_BACK)
    if report.outcome == "failed":
        print(f"deployer: error: release failed: {report.error}", file=sys.stderr)
        raise typer.Exit(ExitStatus.ERROR)
    raise typer.Exit(exit_for(report.zero_downtime))


images_app = typer.Typer(help="The Etherpad images (AMIs) on a target: list and prune.",
                         no_args_is_help=True)
app.add_typer(images_app, name="images")


@images_app.command("list")
def images_list(
    target: TargetOpt = "local",
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable list.")] = False,
) -> None:
    """Images tagged Application=etherpad: release, size and age, and whether in use."""
    from rich.table import Table

    from deployer.core.images import age_text, size_text
    from deployer.core.providers import get_cloud

    cloud = get_cloud(target)
    images = sorted(cloud.list_images(), key=lambda i: i.created_at, reverse=True)
    in_use = cloud.images_in_use() if images else set()
    if json_out:
        ENV.stdout.print_json(data=[{**i.model_dump(), "in_use": i.image_id in in_use}
                                    for i in images])
        return
    if not images:
        ENV.stdout.print(f"no Etherpad images on the {target} target")
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("image", "name", "release", "size", "age", "in use"):
        table.add_column(column)
    for image in images:
        table.add_row(image.image_id, image.name, image.release or "-",
                      size_text(image.size_bytes), age_text(image.created_at),
                      "yes" if image.image_id in in_use else "")
    ENV.stdout.print(table)


@images_app.command("prune")
def images_prune(
    keep: Annotated[int, typer.Option("--keep", help="How many of the newest images to keep.")],
    target: TargetOpt = "local",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; change "
                                                            "nothing.")] = False,
) -> None:
    """Deregister all but the newest KEEP images (and delete their snapshots).

    An image a stack or an instance uses is never removed, however old.
    """
    from deployer.core.images import prune_images
    from deployer.core.providers import get_cloud

    result = prune_images(get_cloud(target), keep, dry_run=dry_run)
    plan = result.plan
    for image in plan.in_use:
        ENV.stdout.print(f"kept {image.image_id} ({image.release or image.name}): in use")
    for image in plan.deregister:
        if dry_run:
            ENV.stdout.print(f"would deregister {image.image_id} ({image.release or image.name})")
        elif image.image_id in result.deregistered:
            ENV.stdout.print(f"deregistered {image.image_id} ({image.release or image.name})")
    for image_id, why in result.refused.items():
        ENV.stdout.print(f"kept {image_id}: {why}")
    snapshots = f", {len(result.deleted_snapshots)} snapshots deleted" \
        if result.deleted_snapshots else ""
    ENV.stdout.print(f"{len(plan.keep)} newest kept, {len(plan.in_use)} in use kept, "
                     f"{len(result.deregistered)} deregistered{snapshots}")
    if result.refused:
        raise typer.Exit(ExitStatus.ERROR)


@app.command()
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
) -> None:
    """Release the same version through each strategy and print the measured trade-off table.

    Each strategy releases on its own environment, one after another; an environment that
    does not run --from is first brought back to it by releasing --from. Exits 0 when every
    release succeeded with zero downtime, 3 on any downtime, 4 when any rolled back, 1 when
    any failed.
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
    start_at = from_version or previous_release(version)
    if start_at is None:
        raise UsageError(f"no release known before {version!r} to start from",
                         hint="pass --from VERSION")
    from deployer.core.strategy import load_strategy

    for name in names:
        load_strategy(name).check_input(version, start_at, source, target)
    settings = CompareSettings(release=version, from_release=start_at, strategies=names,
                               repeat=repeat, source=source, target=target, hz=hz,
                               budget_s=budget)
    cloud = get_cloud(target)
    # Every environment of the comparison is held for its whole length: a release run
    # meanwhile would be measured as part of it.
    with environment_locks(names, "compare", release=version, target=target), \
            _live_view(cloud) as view:
        comparison = CompareRun(settings, cloud=cloud, on_event=_on_event, observer=view,
                                history=_history()).execute()
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
    if comparison.summary.outcome == "failed":
        errors = [f"{r.strategy}: {r.error}" for r in reports if r.error]
        print(f"deployer: error: compare failed: {'; '.join(errors) or 'see the notes'}",
              file=sys.stderr)
    raise typer.Exit(comparison.summary.exit_code)


@app.command()
def history(
    strategy: Annotated[str | None, typer.Option(
        "--strategy", "-s", help="Only this strategy's runs (and the compares it was in).")] = None,
    limit: Annotated[int, typer.Option(help="How many runs to list, newest first.")] = 20,
    window: Annotated[int, typer.Option(
        help="Trend: median total seconds of the last N measured releases against the N "
             "before.")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable history.")] = False,
) -> None:
    """List past release and compare runs with a trend per strategy."""
    from rich.table import Table

    if limit < 1 or window < 1:
        raise UsageError("--limit and --window must be at least 1", hint="pass --limit 20")
    store = _history()
    entries = store.entries(strategy=strategy, limit=limit)
    trends = store.trends(window=window, strategy=strategy)
    if json_out:
        ENV.stdout.print_json(data={
            "runs": [e.model_dump(mode="json") for e in entries],
            "trends": [t.model_dump(mode="json") for t in trends]})
        return
    if not entries:
        ENV.stdout.print(f"no runs in the history yet ({store.path})")
        return
    table = Table(title=f"run history ({store.path})", title_justify="left")
    for column in ("run id", "when (UTC)", "strategy", "release", "outcome", "total s",
                   "failed probes"):
        table.add_column(column, justify="right" if column.endswith(("s", "probes")) and
                         column != "strategy" else "left")
    colour = {"succeeded": "green", "rolled_back": "yellow", "downtime": "red", "failed": "red"}
    for e in entries:
        what = e.strategy if e.kind.value == "release" else f"compare: {e.strategy}"
        if e.role.value == "reset":
            what += " (reset)"
        table.add_row(e.run_id, time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.started_at)),
                      what, f"{e.from_release or '?'} → {e.release}",
                      f"[{colour.get(e.outcome, 'white')}]{e.outcome}[/]",
                      f"{e.total_seconds:.1f}", str(e.failed_probes))
    ENV.stdout.print(table)
    arrows = {"up": "[red]↑ slower[/]", "down": "[green]↓ faster[/]", "flat": "→ same",
              "new": "· no earlier runs to compare"}
    for t in trends:
        line = f"{t.strategy}: last {min(t.runs, t.window)} succeeded releases median " + (
            f"{t.recent_median_s:.1f} s" if t.recent_median_s is not None else "—")
        if t.previous_median_s is not None:
            line += f" vs {t.previous_median_s:.1f} s before ({t.change:+.0%})"
        ENV.stdout.print(f"{line} {arrows[t.direction]}")


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="A run id from 'deployer history'.")],
    html_path: HtmlOpt = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Write the run's JSON report as it was stored.")] = None,
) -> None:
    """Rebuild a past run's report from the history: the table, --html or --json."""
    from deployer.core.compare import Comparison
    from deployer.report.compare_table import StrategyView, print_compare_table
    from deployer.report.history import RunKind
    from deployer.report.release import ReleaseReport, print_release_table

    stored = _history().report(run_id)
    if stored.kind is RunKind.COMPARE:
        comparison = Comparison.model_validate(stored.report)
        if json_path:
            write_json(comparison, json_path)
        if html_path:
            from deployer.report.html import render_comparison, write_html

            write_html(render_comparison(comparison), html_path)
        if not (json_path or html_path):
            views = [StrategyView.from_entry(name, entry)
                     for name, entry in comparison.strategies.items()]
            print_compare_table(views, ENV.stdout, title=(
                f"{comparison.from_release} → {comparison.release} on {comparison.target}: "
                f"{comparison.summary.outcome} (run {comparison.run_id})"))
        return
    release_report = ReleaseReport.model_validate(stored.report)
    if json_path:
        write_json(release_report, json_path)
    if html_path:
        from deployer.report.html import render_release, write_html

        write_html(render_release(release_report, machine=stored.machine), html_path)
    if not (json_path or html_path):
        print_release_table(release_report, ENV.stdout)


@app.command()
def validate(
    assets: Annotated[Path | None, typer.Option(
        "--assets", help="The folder holding appspec/, packer/ and etherpad/ "
                         "(default: the assets this deployer ships).")] = None,
    check: Annotated[list[str] | None, typer.Option(
        "--check", help="Only this check (repeatable): appspec, templates, packer or "
                        "scripts.")] = None,
) -> None:
    """Run every static check of the release assets; one line per finding.

    The appspec, the three stack templates (and cfn-lint), the Packer template (and packer
    validate), user data and hook scripts (bash -n, shellcheck). Exits 1 on findings.
    """
    from deployer.base.assets import assets_root
    from deployer.core.validate import validate_assets

    result = validate_assets(assets if assets is not None else assets_root(), check)
    for line in result.lines():
        ENV.stdout.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(ExitStatus.ERROR if result.findings else ExitStatus.SUCCESS)


@app.command("strategies")
def list_strategies() -> None:
    """List the installed strategies (plug-ins of the deployer.strategies entry-point group)."""
    from importlib.metadata import entry_points

    from deployer.core.strategy import ENTRY_POINT_GROUP

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        ENV.stdout.print(f"{ep.name}\t{ep.value}")


def _is_usage_error(exc: Exception) -> bool:
    # Click's UsageError (vendored inside newer typer releases): exit code 2, format_message().
    return getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message")


def _usage_message(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "deployer"
    return f"{exc.format_message()} (see '{command} --help')"  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every error to one line and a documented exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    debug = "--debug" in args
    try:
        rv = command.main(args=args, prog_name="deployer", standalone_mode=False)
        code = int(rv) if isinstance(rv, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("deployer: interrupted", file=sys.stderr)
        code = 130
    except DeployerError as exc:
        if debug:
            raise
        print(f"deployer: error: {exc}", file=sys.stderr)
        code = exc.exit_status
    except Exception as exc:
        if debug:
            raise
        if _is_usage_error(exc):
            print(f"deployer: error: {_usage_message(exc)}", file=sys.stderr)
            code = ExitStatus.USAGE
        else:  # a bug: still one line; the traceback with --debug
            print(f"deployer: internal error: {type(exc).__name__}: {exc} (rerun with --debug "
                  "for the traceback)", file=sys.stderr)
            code = ExitStatus.ERROR
    sys.exit(int(code))


if __name__ == "__main__":
    main()

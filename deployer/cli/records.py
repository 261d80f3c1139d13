"""Commands on past runs and on what ships: ``history``, ``report``, ``validate``,
``strategies``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from deployer.base.errors import ExitStatus, UsageError
from deployer.cli.common import ENV, HtmlOpt, history_store, stack_template
from deployer.report.release import write_json


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
    store = history_store()
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

    stored = history_store().report(run_id)
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

        write_html(render_release(release_report, machine=stored.machine,
                                  stack_template=stack_template(release_report.strategy)),
                   html_path)
    if not (json_path or html_path):
        print_release_table(release_report, ENV.stdout)


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


def list_strategies() -> None:
    """List the installed strategies (plug-ins of the deployer.strategies entry-point group)."""
    from importlib.metadata import entry_points

    from deployer.core.strategy import ENTRY_POINT_GROUP

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        ENV.stdout.print(f"{ep.name}\t{ep.value}")

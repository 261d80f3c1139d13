"""What the commands share: their surroundings (Env), option types, the run context.

Imported by every command module and by :mod:`deployer.cli.app`; imports none of them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from deployer.base import logs
from deployer.base.errors import DeployerError, ExitStatus, UsageError
from deployer.report.release import Outcome, Verdict

if TYPE_CHECKING:
    from deployer.cli.live import LiveView


@dataclass
class Env:
    """What a command needs from its surroundings; tests inject their own."""

    stdout: Console
    stderr: Console
    debug: bool = False
    log_format: str = "auto"
    verbose: bool = False


ENV = Env(stdout=Console(), stderr=Console(stderr=True))


def exit_for(zero_downtime: bool) -> ExitStatus:
    return Verdict.of(Outcome.SUCCEEDED, zero_downtime).exit_status


StrategyOpt = Annotated[str, typer.Option("--strategy", "-s",
                                          help="codedeploy, cloudformation or packer.")]
TargetOpt = Annotated[str, typer.Option("--target", help="local (the embedded cloud) or aws.")]
SourceOpt = Annotated[str, typer.Option(
    "--source", help="Where releases come from: github, npm, a git URL or path (a mirror), "
                     "or a directory/tarball of one release.")]


def log_event(event) -> None:
    logs.get_logger().info("cloud.event", source=event.source, resource=event.resource,
                           status=event.status, reason=event.reason or None)


def release_context(strategy_name: str, release: str, from_release: str | None, target: str,
             source: str, options=None):
    from deployer.core.engine import workdir_for
    from deployer.core.providers import get_cloud
    from deployer.core.strategy import ReleaseContext, ReleaseOptions, load_strategy

    strategy = load_strategy(strategy_name)
    # Bad names and sources end here, before a cloud is asked anything.
    strategy.check_input(release, from_release, source, target)
    cloud = get_cloud(target)
    ctx = ReleaseContext(release=release, from_release=from_release, cloud=cloud,
                         workdir=workdir_for(cloud), on_event=log_event, source=source,
                         options=options or ReleaseOptions())
    return strategy, ctx


HtmlOpt = Annotated[Path | None, typer.Option(
    "--html", help="Write the HTML report (one self-contained file with timelines).")]
EditorsOpt = Annotated[int, typer.Option(
    "--editors", help="Simulated editors typing on pads through the load balancer during the "
                      "rollout, and the data check after it; 0 switches both off.")]


def editor_settings(editors: int):
    """--editors as the engine's settings (checked now: before anything is created)."""
    from deployer.core.editing import EditorSettings

    return EditorSettings(editors=editors, data_check=editors > 0)


@contextmanager
def live_view(cloud) -> Iterator[LiveView | None]:
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


def history_store():
    from deployer.report.history import History

    return History()


def remember(report, machine: dict) -> None:
    """Keep the run in the history; a history that cannot be written never fails a release."""
    try:
        history_store().record(report.model_dump(mode="json"), machine=machine)
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


def stack_template(strategy: str) -> Path | None:
    """The strategy's stack template (for a report's floor); None when it is not installed."""
    from deployer.core.strategy import load_strategy

    try:
        return load_strategy(strategy).stack_template()
    except DeployerError:
        return None

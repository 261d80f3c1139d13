"""The command line. Commands only turn options into a context and call the core.

The commands live by what they work on: :mod:`~deployer.cli.runs` (probe, release,
compare), :mod:`~deployer.cli.environments` (up, status, down, images) and
:mod:`~deployer.cli.records` (history, report, validate, strategies); what they share is in
:mod:`~deployer.cli.common`. This module assembles them into one typer app, and one place
(:func:`main`) maps every error to one line on stderr and a documented exit code; ``--debug``
re-raises so the traceback shows.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from deployer.base import logs
from deployer.base.errors import DeployerError, ExitStatus, UsageError
from deployer.cli import environments, records, runs
from deployer.cli.common import ENV, Env

__all__ = ["ENV", "Env", "app", "main"]

app = typer.Typer(
    name="deployer",
    help="Release Etherpad with CodeDeploy, CloudFormation or Packer, and prove zero downtime.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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


# In the order `deployer --help` lists them.
app.command()(runs.probe)
app.command()(environments.up)
app.command()(environments.status)
app.command()(environments.down)
app.command()(runs.release)
app.add_typer(environments.images_app, name="images")
app.command()(runs.compare)
app.command()(records.history)
app.command()(records.report)
app.command()(records.validate)
app.command("strategies")(records.list_strategies)


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
        code = ExitStatus.INTERRUPTED
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

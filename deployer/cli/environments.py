"""Commands on environments and images: ``up``, ``status``, ``down``, ``images list|prune``."""

from __future__ import annotations

from typing import Annotated

import typer

from deployer.base.errors import ExitStatus, UsageError
from deployer.cli.common import ENV, SourceOpt, StrategyOpt, TargetOpt, log_event, release_context
from deployer.cloud.port import StackStatus


def up(
    strategy: StrategyOpt,
    version: Annotated[str, typer.Option("--version", help="The Etherpad release to run.")],
    target: TargetOpt = "local",
    source: SourceOpt = "github",
) -> None:
    """Create a strategy's environment at a release and leave it running."""
    import shutil

    from deployer.core.locks import environment_lock

    strat, ctx = release_context(strategy, version, version, target, source)
    try:
        with environment_lock(strategy, "up", release=version, target=target):
            strat.preflight(ctx)
            view = strat.ensure_environment(ctx)
    finally:
        # The work dir held what creating it needed (a first revision bundle): scratch.
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    ENV.stdout.print(f"{view.stack_name}: {view.stack_status} at {view.url}")


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
            cloud.destroy_all(log_event)
        ENV.stdout.print("all environments removed")
    else:
        assert strategy is not None  # exactly one of --strategy and --all, checked above
        load_strategy(strategy)  # an unknown name is a usage error, not a silent no-op
        with environment_lock(strategy, "down", target=target):
            view = cloud.describe_environment(strategy)
            if view is None or view.stack_status == StackStatus.DELETE_COMPLETE:
                ENV.stdout.print(f"there is no {strategy} environment on the {target} target: "
                                 "nothing to remove")
                return
            cloud.destroy_environment(strategy, log_event)
        ENV.stdout.print(f"environment {strategy} removed")


images_app = typer.Typer(help="The Etherpad images (AMIs) on a target: list and prune.",
                         no_args_is_help=True)


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

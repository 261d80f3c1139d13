"""A fourth strategy, installed as a plug-in: the stand-in app's stack, released like CloudFormation.

It lets drills run the real ``deployer`` CLI (locks, engine, poller, reports, status) in
seconds instead of minutes: same engine and local cloud, but the stack is
tests/localcloud/fixtures/app-stack.yaml, whose instances run the stand-in app. It registers
through the ``deployer.strategies`` entry-point group from a ``.dist-info`` folder on
PYTHONPATH (see :func:`install_plugin`), exactly as a third-party strategy would.

Extra stack parameters come from the environment, as JSON objects:
``DRILL_STACK_PARAMETERS`` for the stack's creation, ``DRILL_UPDATE_PARAMETERS`` for updates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from deployer.base.errors import RolloutFailed
from deployer.core.strategy import Prepared, ReleaseContext, Strategy

FIXTURES = Path(__file__).resolve().parents[1] / "localcloud" / "fixtures"
ENTRY_POINT = "fixture = tests.drills.fixture_strategy:FixtureStrategy"


def _json_env(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in json.loads(os.environ.get(name) or "{}").items()}


class FixtureStrategy(Strategy):
    """Update the stand-in stack's ``EtherpadVersion``; the group's rolling update does the rest."""

    prepare_phases = ()

    def stack_template(self) -> Path:
        return FIXTURES / "app-stack.yaml"

    def initial_parameters(self, ctx: ReleaseContext) -> dict[str, str]:
        return {"EtherpadVersion": ctx.from_release or ctx.release,
                "AppScript": str(FIXTURES / "app.py"), "StartDelay": "0.5",
                **_json_env("DRILL_STACK_PARAMETERS")}

    def preflight(self, ctx: ReleaseContext) -> None:
        return None  # the stand-in app's releases are names, fetched from nowhere

    def prepare(self, ctx: ReleaseContext) -> Prepared:
        return Prepared(kind="none")

    def roll_out(self, ctx: ReleaseContext, prepared: Prepared) -> None:
        result = ctx.cloud.update_stack(
            self.name, {"EtherpadVersion": ctx.release, **_json_env("DRILL_UPDATE_PARAMETERS")},
            ctx.on_event)
        if result.rolled_back:
            raise RolloutFailed(f"stack update rolled back: {result.reason or result.status}")

    def roll_back(self, ctx: ReleaseContext) -> None:
        return None  # the stack rolls a failed update back itself


def install_plugin(folder: Path) -> Path:
    """Write the plug-in's distribution metadata into ``folder`` (put it on PYTHONPATH)."""
    dist = folder / "deployer_drill_fixture-0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deployer-drill-fixture\n"
                                   "Version: 0.0\n")
    (dist / "entry_points.txt").write_text(f"[deployer.strategies]\n{ENTRY_POINT}\n")
    return folder

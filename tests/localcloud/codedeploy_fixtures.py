"""Instances, a load balancer that records calls, and revision bundles for CodeDeploy tests.

Every hook of a test revision appends ``<revision label> <LIFECYCLE_EVENT>`` to the
instance's trace file, and the fake load balancer appends ``LB block``/``LB allow`` there
too, so a test reads one file to see what ran, in which order, from which revision.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from deployer.appspec.reader import SCRIPTABLE_EVENTS
from deployer.cloud.port import Event
from deployer.localcloud.codedeploy.agent import Revision
from deployer.localcloud.codedeploy.service import (
    AutoRollbackConfiguration,
    CodeDeployService,
    DeploymentGroup,
)

APP = "etherpad"
GROUP = "etherpad-dg"
PYTHON = sys.executable


@dataclass
class Instance:
    instance_id: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def trace_file(self) -> Path:
        return self.root / "trace.log"

    def trace(self) -> list[str]:
        if not self.trace_file.exists():
            return []
        return self.trace_file.read_text().splitlines()

    def append_trace(self, line: str) -> None:
        with open(self.trace_file, "a") as fh:
            fh.write(line + "\n")


def make_instance(base: Path, instance_id: str, **env: str) -> Instance:
    root = base / instance_id
    root.mkdir(parents=True)
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "TRACE": str(root / "trace.log"), "INSTANCE_ROOT": str(root)}
    environment.update(env)
    return Instance(instance_id=instance_id, root=root, env=environment)


class RecordingTraffic:
    """The load balancer as the agent sees it; records calls, can refuse to get healthy."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet
        self.calls: list[tuple[str, str]] = []
        self.unhealthy: set[str] = set()
        self._lock = threading.Lock()

    def block(self, instance_id: str) -> None:
        with self._lock:
            self.calls.append(("block", instance_id))
        self.fleet.by_id(instance_id).append_trace("LB block")

    def allow(self, instance_id: str) -> None:
        with self._lock:
            self.calls.append(("allow", instance_id))
        self.fleet.by_id(instance_id).append_trace("LB allow")
        if instance_id in self.unhealthy:
            raise TimeoutError(f"target {instance_id} did not become healthy within 5 s")


class FakeFleet:
    def __init__(self, instances: list[Instance], *, load_balancer: bool = False) -> None:
        self.members = list(instances)
        self.traffic = RecordingTraffic(self) if load_balancer else None

    def by_id(self, instance_id: str) -> Instance:
        return next(i for i in self.members if i.instance_id == instance_id)

    def instances(self, group: DeploymentGroup) -> list[Instance]:
        return list(self.members)

    def traffic_control(self, group: DeploymentGroup) -> RecordingTraffic | None:
        return self.traffic


class EventLog:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def pairs(self) -> list[tuple[str, str]]:
        return [(e.resource, e.status) for e in self.events]


def make_service(tmp_path: Path, fleet: FakeFleet, *, config: str | None = None,
                 auto_rollback: AutoRollbackConfiguration | None = None,
                 kill_grace_s: float = 0.5) -> CodeDeployService:
    service = CodeDeployService(tmp_path / "state", fleet, kill_grace_s=kill_grace_s)
    service.create_application(APP)
    kwargs = {}
    if config:
        kwargs["deployment_config_name"] = config
    service.create_deployment_group(
        APP, GROUP, auto_scaling_groups=["asg"],
        target_group="tg" if fleet.traffic is not None else None,
        auto_rollback=auto_rollback, **kwargs)
    return service


def trace_line(label: str) -> str:
    return f'echo "{label} $LIFECYCLE_EVENT" >> "$TRACE"\n'


def write_revision(base: Path, label: str, *, scripts: dict[str, str] | None = None,
                   timeouts: dict[str, int] | None = None, files: str | None = None,
                   app_files: dict[str, str] | None = None, extra: str = "",
                   hooked: list[str] | None = None) -> Revision:
    """A bundle directory: appspec.yml, hooks/<Event>.sh (trace + ``scripts[event]``), app/."""
    bundle = base / f"rev-{label}"
    (bundle / "hooks").mkdir(parents=True)
    (bundle / "app").mkdir()
    for name, text in (app_files if app_files is not None
                       else {"version.txt": f"{label}\n"}).items():
        (bundle / "app" / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / "app" / name).write_text(text)
    scripts = scripts or {}
    timeouts = timeouts or {}
    events = hooked if hooked is not None else [e.value for e in SCRIPTABLE_EVENTS]
    hook_yaml = ""
    for event in events:
        script = bundle / "hooks" / f"{event}.sh"
        script.write_text("#!/bin/sh\n" + trace_line(label) + scripts.get(event, ""))
        script.chmod(0o755)
        hook_yaml += (f"  {event}:\n    - location: hooks/{event}.sh\n"
                      f"      timeout: {timeouts.get(event, 30)}\n")
    files_yaml = files if files is not None else (
        "files:\n  - source: app\n    destination: /opt/app\n")
    (bundle / "appspec.yml").write_text(
        f"version: 0.0\nos: linux\n{files_yaml}{extra}"
        + (f"hooks:\n{hook_yaml}" if hook_yaml else ""))
    return Revision(bundle=bundle)

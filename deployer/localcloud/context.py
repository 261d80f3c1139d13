"""What the supervisor hands to the services it runs: the cloud's shared parts, nothing more.

Stacks, Auto Scaling groups, CodeDeploy and image builds get a :class:`CloudContext` instead
of the supervisor, so each can be built and driven on its own (a unit test passes fakes and a
fake clock), and none of them imports the supervisor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deployer.base.clock import Clock
from deployer.localcloud.artifacts import ArtifactStore
from deployer.localcloud.compute.instances import ImageStore, InstanceLauncher
from deployer.localcloud.operations import Operations
from deployer.localcloud.state import Store


@dataclass
class CloudContext:
    home: Path  # the data dir (DEPLOYER_HOME)
    dir: Path  # the local cloud's own state under it
    store: Store
    launcher: InstanceLauncher
    images: ImageStore
    artifacts: ArtifactStore
    operations: Operations
    clock: Clock = field(default_factory=Clock)

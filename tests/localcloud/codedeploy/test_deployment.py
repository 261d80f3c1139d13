"""A CodeDeploy deployment's batches and verdict, with a fake agent and a fake clock.

No hook runs and no process starts: the agent is a fake that succeeds or fails per
instance, so what is tested is the service's rule (deployment config, minimum healthy hosts,
batch sizes, success) in a few milliseconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deployer.localcloud.codedeploy.model import DeploymentErrorCode
from deployer.localcloud.codedeploy.service import (
    ALL_AT_ONCE,
    HALF_AT_A_TIME,
    ONE_AT_A_TIME,
    CodeDeployService,
    DeploymentStatus,
    InstanceStatus,
    MinimumHealthyHosts,
    MinimumHealthyHostsType,
)
from tests.localcloud.codedeploy_fixtures import write_revision
from tests.support.clock import FakeClock

APP, GROUP = "etherpad", "etherpad-group"


@dataclass
class Host:
    instance_id: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)


class FakeFleet:
    def __init__(self, hosts: list[Host]) -> None:
        self.hosts = hosts

    def instances(self, group):
        return list(self.hosts)

    def traffic_control(self, group):
        return None


class Agents:
    """Makes fake agents; records for each run how many instances had finished when it began,
    which tells the batches apart (a batch starts only after the one before has ended)."""

    def __init__(self, failing: set[str] = frozenset()) -> None:
        self.failing = failing
        self.lock = threading.Lock()
        self.finished = 0
        self.started: list[tuple[str, int]] = []

    def __call__(self, instance: Host) -> Agents._Agent:
        return Agents._Agent(self, instance)

    class _Agent:
        def __init__(self, agents: Agents, instance: Host) -> None:
            self.agents, self.instance = agents, instance

        def run(self, spec, *, traffic, report, stop_requested) -> bool:
            agents = self.agents
            with agents.lock:
                agents.started.append((self.instance.instance_id, agents.finished))
            time.sleep(0.02)  # the batch's other agents start meanwhile
            with agents.lock:
                agents.finished += 1
            return self.instance.instance_id not in agents.failing

    def batches(self) -> list[list[str]]:
        groups: dict[int, list[str]] = {}
        for instance_id, finished in self.started:
            groups.setdefault(finished, []).append(instance_id)
        return [sorted(ids) for _, ids in sorted(groups.items())]


def deploy(tmp_path: Path, count: int, config: str, agents: Agents):
    hosts = [Host(f"i-{n}", tmp_path / f"i-{n}") for n in range(count)]
    clock = FakeClock()
    service = CodeDeployService(tmp_path / "state", FakeFleet(hosts), clock=clock, agent=agents)
    service.create_application(APP)
    service.create_deployment_group(APP, GROUP, auto_scaling_groups=["asg"],
                                    deployment_config_name=config)
    result = service.deploy(APP, GROUP, write_revision(tmp_path, "v2"))
    return result, service.get_deployment(result.deployment_id)


def test_half_at_a_time_deploys_to_half_the_fleet_at_a_time(tmp_path):
    agents = Agents()
    result, deployment = deploy(tmp_path, 4, HALF_AT_A_TIME.name, agents)
    assert result.status == DeploymentStatus.SUCCEEDED
    assert [len(batch) for batch in agents.batches()] == [2, 2]
    assert {t.status for t in deployment.instances.values()} == {InstanceStatus.SUCCEEDED}


def test_half_at_a_time_rounds_the_batch_down_and_succeeds_with_half_rounded_up(tmp_path):
    agents = Agents(failing={"i-4"})
    result, _ = deploy(tmp_path, 5, HALF_AT_A_TIME.name, agents)
    # At most 2 of 5 at a time (rounded down); 3 must succeed (rounded up), and 4 do.
    assert [len(batch) for batch in agents.batches()] == [2, 2, 1]
    assert result.status == DeploymentStatus.SUCCEEDED


def test_half_at_a_time_never_goes_below_the_minimum_healthy(tmp_path):
    agents = Agents(failing={"i-0", "i-1"})
    result, deployment = deploy(tmp_path, 5, HALF_AT_A_TIME.name, agents)
    # Two failed: the three left must stay healthy, so none of them is taken offline.
    assert [len(batch) for batch in agents.batches()] == [2]
    assert result.status == DeploymentStatus.FAILED
    assert deployment.error.code is DeploymentErrorCode.HEALTH_CONSTRAINTS


def test_half_at_a_time_fails_when_fewer_than_half_succeed(tmp_path):
    agents = Agents(failing={"i-0", "i-1", "i-2"})
    result, deployment = deploy(tmp_path, 4, HALF_AT_A_TIME.name, agents)
    assert result.status == DeploymentStatus.FAILED
    assert deployment.error.code is DeploymentErrorCode.HEALTH_CONSTRAINTS


def test_one_at_a_time_goes_one_by_one_and_stops_at_a_failure(tmp_path):
    agents = Agents(failing={"i-0"})
    result, deployment = deploy(tmp_path, 3, ONE_AT_A_TIME.name, agents)
    assert result.status == DeploymentStatus.FAILED
    assert [len(batch) for batch in agents.batches()] == [1]
    assert {t.status for t in deployment.instances.values()} == {
        InstanceStatus.FAILED, InstanceStatus.SKIPPED}


def test_one_at_a_time_succeeds_when_every_instance_does(tmp_path):
    agents = Agents()
    result, _ = deploy(tmp_path, 3, ONE_AT_A_TIME.name, agents)
    assert result.status == DeploymentStatus.SUCCEEDED
    assert [len(batch) for batch in agents.batches()] == [1, 1, 1]


@pytest.mark.parametrize("failing, status", [
    ({"i-0", "i-1"}, DeploymentStatus.SUCCEEDED),  # one success is enough
    ({"i-0", "i-1", "i-2"}, DeploymentStatus.FAILED),
])
def test_all_at_once_succeeds_if_one_instance_does(tmp_path, failing, status):
    agents = Agents(failing=failing)
    result, _ = deploy(tmp_path, 3, ALL_AT_ONCE.name, agents)
    assert [len(batch) for batch in agents.batches()] == [3]
    assert result.status == status


def test_minimum_healthy_hosts_bounds_the_batch(tmp_path):
    agents = Agents()
    hosts = [Host(f"i-{n}", tmp_path / f"i-{n}") for n in range(4)]
    service = CodeDeployService(tmp_path / "state", FakeFleet(hosts), clock=FakeClock(),
                                agent=agents)
    service.create_deployment_config("ThreeOfFour", MinimumHealthyHosts(
        type=MinimumHealthyHostsType.FLEET_PERCENT, value=75))
    service.create_application(APP)
    service.create_deployment_group(APP, GROUP, deployment_config_name="ThreeOfFour")
    result = service.deploy(APP, GROUP, write_revision(tmp_path, "v2"))
    assert result.status == DeploymentStatus.SUCCEEDED
    assert [len(batch) for batch in agents.batches()] == [1, 1, 1, 1]


def test_a_minimum_as_large_as_the_fleet_fails_before_any_instance(tmp_path):
    agents = Agents()
    hosts = [Host(f"i-{n}", tmp_path / f"i-{n}") for n in range(3)]
    service = CodeDeployService(tmp_path / "state", FakeFleet(hosts), clock=FakeClock(),
                                agent=agents)
    service.create_deployment_config("AllOfThem", MinimumHealthyHosts(
        type=MinimumHealthyHostsType.HOST_COUNT, value=3))
    service.create_application(APP)
    service.create_deployment_group(APP, GROUP, deployment_config_name="AllOfThem")
    result = service.deploy(APP, GROUP, write_revision(tmp_path, "v2"))
    assert result.status == DeploymentStatus.FAILED
    assert service.get_deployment(result.deployment_id).error.code is \
        DeploymentErrorCode.HEALTH_CONSTRAINTS_INVALID
    assert agents.started == []

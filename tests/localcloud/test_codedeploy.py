"""CodeDeploy across a fleet: deployment configs, instance order, rollback, stop, persistence."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployer.base.errors import ConfigError, NotFound, StateError
from deployer.localcloud.codedeploy.agent import LifecycleEventStatus, Revision
from deployer.localcloud.codedeploy.model import BatchPlan, InstanceHealth, deployment_order
from deployer.localcloud.codedeploy.service import (
    ALL_AT_ONCE,
    HALF_AT_A_TIME,
    ONE_AT_A_TIME,
    AutoRollbackConfiguration,
    AutoRollbackEvent,
    CodeDeployService,
    Deployment,
    DeploymentConfig,
    DeploymentCreator,
    DeploymentGroup,
    DeploymentStatus,
    InstanceStatus,
    MinimumHealthyHosts,
    MinimumHealthyHostsType,
    read_deployment,
)

from .codedeploy_fixtures import (
    APP,
    GROUP,
    EventLog,
    FakeFleet,
    Instance,
    make_instance,
    make_service,
    write_revision,
)

FAIL_IF_ASKED = '[ -z "$FAIL" ] || { echo "asked to fail" >&2; exit 1; }\n'
SLOW = "sleep 0.3\n"


def fleet_of(tmp_path: Path, count: int, *, failing: tuple[int, ...] = (),
             load_balancer: bool = False) -> FakeFleet:
    instances = [make_instance(tmp_path / "instances", f"i-{n}",
                               **({"FAIL": "1"} if n in failing else {}))
                 for n in range(1, count + 1)]
    return FakeFleet(instances, load_balancer=load_balancer)


def failing_revision(base: Path, label: str, *, slow: bool = False) -> Revision:
    return write_revision(base, label, hooked=["ValidateService"],
                          scripts={"ValidateService": (SLOW if slow else "") + FAIL_IF_ASKED})


def max_overlap(deployment: Deployment) -> int:
    spans = [(t.started_at, t.ended_at) for t in deployment.instances.values()
             if t.started_at is not None]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def status_of(deployment: Deployment) -> dict[str, str]:
    return {i: t.status.value for i, t in deployment.instances.items()}


# -- the minimum healthy hosts rule ------------------------------------------------------------

def custom(kind: MinimumHealthyHostsType, value: int) -> DeploymentConfig:
    return DeploymentConfig(name="Custom", minimum_healthy_hosts=MinimumHealthyHosts(
        type=kind, value=value))


HOST_COUNT = MinimumHealthyHostsType.HOST_COUNT
FLEET_PERCENT = MinimumHealthyHostsType.FLEET_PERCENT


@pytest.mark.parametrize("config,instances,minimum,first_batch,needed", [
    # the AWS docs' examples (MinimumHealthyHosts, deployment configurations, instance health)
    (custom(HOST_COUNT, 6), 9, 6, 3, 6),
    (custom(FLEET_PERCENT, 40), 9, 4, 5, 4),
    (custom(HOST_COUNT, 9), 10, 9, 1, 9),
    (custom(HOST_COUNT, 8), 10, 8, 2, 8),
    (custom(HOST_COUNT, 0), 10, 0, 10, 1),
    (HALF_AT_A_TIME, 9, 5, 4, 5),
    (HALF_AT_A_TIME, 4, 2, 2, 2),
    (ALL_AT_ONCE, 9, 0, 9, 1),
    (ONE_AT_A_TIME, 9, 8, 1, 8),
    (ONE_AT_A_TIME, 1, 0, 1, 1),
])
def test_batch_sizes_and_success_rules(config: DeploymentConfig, instances: int, minimum: int,
                                       first_batch: int, needed: int) -> None:
    plan = BatchPlan(config, instances)
    assert plan.satisfiable
    assert plan.minimum == minimum
    assert plan.batch_size(failed=0) == first_batch
    assert plan.succeeded(needed) and not plan.succeeded(needed - 1)


def test_failures_shrink_the_batches_down_to_none() -> None:
    plan = BatchPlan(custom(HOST_COUNT, 8), 10)
    assert [plan.batch_size(failed) for failed in range(4)] == [2, 1, 0, 0]
    one = BatchPlan(ONE_AT_A_TIME, 3)
    assert [one.batch_size(failed) for failed in range(3)] == [1, 0, 0]


@pytest.mark.parametrize("config,instances", [
    (custom(FLEET_PERCENT, 95), 10),  # rounds up to 10 of 10: fails without deploying
    (custom(HOST_COUNT, 3), 3),
    (HALF_AT_A_TIME, 1),              # half of one, rounded down, is no instance at a time
])
def test_unsatisfiable_minimums(config: DeploymentConfig, instances: int) -> None:
    assert not BatchPlan(config, instances).satisfiable


# -- deployment configs on a fleet -------------------------------------------------------------

@pytest.mark.parametrize("failing,status,statuses", [
    ((2,), "Failed", ["Succeeded", "Failed", "Skipped"]),
    ((3,), "Succeeded", ["Succeeded", "Succeeded", "Failed"]),  # the last one may fail
    ((), "Succeeded", ["Succeeded"] * 3),
])
def test_one_at_a_time(tmp_path: Path, failing: tuple[int, ...], status: str,
                       statuses: list[str]) -> None:
    fleet = fleet_of(tmp_path, 3, failing=failing)
    service = make_service(tmp_path, fleet)
    result = service.deploy(APP, GROUP, failing_revision(tmp_path, "r1"))
    assert result.status == status, result.reason
    deployment = service.get_deployment(result.deployment_id)
    assert list(status_of(deployment).values()) == statuses
    assert max_overlap(deployment) == 1
    if status == "Failed":
        assert deployment.error.code.value == "HEALTH_CONSTRAINTS"
        assert "first failure: i-2: ValidateService: Script at specified location" in \
            result.reason
        skipped = deployment.instances["i-3"]
        assert {r.status for r in skipped.lifecycle_events} == {LifecycleEventStatus.SKIPPED}
        assert fleet.by_id("i-3").trace() == []


def test_one_at_a_time_single_instance_must_succeed(tmp_path: Path) -> None:
    service = make_service(tmp_path, fleet_of(tmp_path, 1, failing=(1,)))
    assert service.deploy(APP, GROUP, failing_revision(tmp_path, "r1")).status == "Failed"


@pytest.mark.parametrize("failing,status,statuses", [
    ((1,), "Succeeded", ["Failed", "Succeeded", "Succeeded", "Succeeded"]),
    ((1, 2), "Failed", ["Failed", "Failed", "Skipped", "Skipped"]),
    ((3, 4), "Succeeded", ["Succeeded", "Succeeded", "Failed", "Failed"]),
])
def test_half_at_a_time(tmp_path: Path, failing: tuple[int, ...], status: str,
                        statuses: list[str]) -> None:
    service = make_service(tmp_path, fleet_of(tmp_path, 4, failing=failing),
                           config=HALF_AT_A_TIME.name)
    result = service.deploy(APP, GROUP, failing_revision(tmp_path, "r1", slow=True))
    assert result.status == status, result.reason
    deployment = service.get_deployment(result.deployment_id)
    assert list(status_of(deployment).values()) == statuses
    assert max_overlap(deployment) == 2


@pytest.mark.parametrize("failing,status", [((1, 2), "Succeeded"), ((1, 2, 3), "Failed")])
def test_all_at_once(tmp_path: Path, failing: tuple[int, ...], status: str) -> None:
    service = make_service(tmp_path, fleet_of(tmp_path, 3, failing=failing),
                           config=ALL_AT_ONCE.name)
    result = service.deploy(APP, GROUP, failing_revision(tmp_path, "r1", slow=True))
    assert result.status == status, result.reason
    assert max_overlap(service.get_deployment(result.deployment_id)) == 3


def test_custom_config_and_per_deployment_override(tmp_path: Path) -> None:
    service = make_service(tmp_path, fleet_of(tmp_path, 3))
    service.create_deployment_config("TwoHealthy", MinimumHealthyHosts(type=HOST_COUNT, value=2))
    result = service.deploy(APP, GROUP, failing_revision(tmp_path, "r1", slow=True),
                            deployment_config_name="TwoHealthy")
    deployment = service.get_deployment(result.deployment_id)
    assert result.status == "Succeeded"
    assert deployment.deployment_config_name == "TwoHealthy"
    assert max_overlap(deployment) == 1


def test_a_minimum_the_fleet_cannot_meet_fails_without_touching_it(tmp_path: Path) -> None:
    fleet = fleet_of(tmp_path, 3)
    service = make_service(tmp_path, fleet)
    service.create_deployment_config("All", MinimumHealthyHosts(type=FLEET_PERCENT, value=95))
    result = service.deploy(APP, GROUP, failing_revision(tmp_path, "r1"),
                            deployment_config_name="All")
    assert result.status == "Failed"
    deployment = service.get_deployment(result.deployment_id)
    assert deployment.error.code.value == "HEALTH_CONSTRAINTS_INVALID"
    assert "needs 3 healthy instances of 3" in result.reason
    assert set(status_of(deployment).values()) == {"Skipped"}
    assert all(i.trace() == [] for i in fleet.members)


def test_custom_config_validation(tmp_path: Path) -> None:
    service = make_service(tmp_path, fleet_of(tmp_path, 1))
    with pytest.raises(ConfigError, match="is predefined"):
        service.create_deployment_config("CodeDeployDefault.AllAtOnce",
                                         MinimumHealthyHosts(type=HOST_COUNT, value=0))
    with pytest.raises(ConfigError, match=r"reserved for CodeDeployDefault.OneAtATime"):
        service.create_deployment_config("X", MinimumHealthyHosts(
            type=MinimumHealthyHostsType.MOST_CONCURRENCY, value=1))
    with pytest.raises(ConfigError, match="value 101 is out of range"):
        service.create_deployment_config("X", MinimumHealthyHosts(type=FLEET_PERCENT, value=101))
    with pytest.raises(NotFound, match="deployment config Nope does not exist"):
        service.deploy(APP, GROUP, write_revision(tmp_path, "r1"), deployment_config_name="Nope")


# -- instance order ----------------------------------------------------------------------------

def test_order_is_unhealthy_unknown_old_current(tmp_path: Path) -> None:
    current = Revision(bundle=tmp_path / "current")
    group = DeploymentGroup(application_name=APP, name=GROUP, group_id="g",
                            last_successful_revision=current, instance_health={
                                "healthy-current": InstanceHealth(healthy=True,
                                                                  revision=current.identity),
                                "healthy-old": InstanceHealth(healthy=True,
                                                              revision="file:///old"),
                                "healthy-unknown": InstanceHealth(healthy=True),
                                "unhealthy-current": InstanceHealth(healthy=False,
                                                                    revision=current.identity),
                            })
    names = ["healthy-current", "healthy-old", "unhealthy-current", "healthy-unknown", "new"]
    instances = [Instance(instance_id=n, root=tmp_path) for n in names]
    ordered = [i.instance_id for i in deployment_order(instances, group)]
    assert ordered == ["new", "unhealthy-current", "healthy-unknown", "healthy-old",
                       "healthy-current"]


def test_failed_instances_go_first_next_time(tmp_path: Path) -> None:
    fleet = fleet_of(tmp_path, 3, failing=(3,))
    service = make_service(tmp_path, fleet)
    assert service.deploy(APP, GROUP, failing_revision(tmp_path, "r1")).status == "Succeeded"
    health = service.get_deployment_group(APP, GROUP).instance_health
    assert health["i-3"].healthy is False and health["i-1"].healthy is True
    fleet.by_id("i-3").env.pop("FAIL")
    result = service.deploy(APP, GROUP, failing_revision(tmp_path, "r2"))
    assert list(service.get_deployment(result.deployment_id).instances) == ["i-3", "i-1", "i-2"]


# -- rollback ----------------------------------------------------------------------------------

ROLLBACK = AutoRollbackConfiguration(enabled=True, events=(
    AutoRollbackEvent.DEPLOYMENT_FAILURE, AutoRollbackEvent.DEPLOYMENT_STOP_ON_REQUEST))


def test_failure_rolls_back_to_the_last_good_revision(tmp_path: Path) -> None:
    fleet = fleet_of(tmp_path, 2)
    service = make_service(tmp_path, fleet, auto_rollback=ROLLBACK)
    events = EventLog()
    rev1 = write_revision(tmp_path, "r1")
    assert service.deploy(APP, GROUP, rev1).status == "Succeeded"
    for instance in fleet.members:
        instance.trace_file.unlink()
    rev2 = write_revision(tmp_path, "r2", scripts={"ValidateService": "exit 1\n"})
    result = service.deploy(APP, GROUP, rev2, on_event=events)
    assert result.status == "Failed"
    assert result.rollback_deployment_id is not None
    assert result.rollback_status == "Succeeded"
    assert result.reason.endswith(
        f"; automatic rollback {result.rollback_deployment_id} to {rev1.bundle}: Succeeded")
    rollback = service.get_deployment(result.rollback_deployment_id)
    assert rollback.creator is DeploymentCreator.AUTO_ROLLBACK
    assert rollback.revision == rev1
    assert rollback.rollback_triggering_deployment_id == result.deployment_id
    assert set(status_of(rollback).values()) == {"Succeeded"}
    # i-1 failed r2 and stopped the deployment; i-2 never got r2.
    assert fleet.by_id("i-1").trace()[:6] == [
        "r1 ApplicationStop", "r2 BeforeInstall", "r2 AfterInstall", "r2 ApplicationStart",
        "r2 ValidateService",
        # r2 was installed, so it is r2's stop script that runs first in the rollback
        "r2 ApplicationStop"]
    assert fleet.by_id("i-1").trace()[-1] == "r1 ValidateService"
    assert fleet.by_id("i-2").trace() == [
        "r1 ApplicationStop", "r1 BeforeInstall", "r1 AfterInstall", "r1 ApplicationStart",
        "r1 ValidateService"]
    for instance in fleet.members:
        assert (instance.root / "opt/app/version.txt").read_text() == "r1\n"
    assert (result.rollback_deployment_id, "Created") in events.pairs()
    assert events.pairs()[-1] == (result.rollback_deployment_id, "Succeeded")
    group = service.get_deployment_group(APP, GROUP)
    assert group.last_successful_revision == rev1
    assert [(r.revision.bundle.name, r.last_status.value) for r in group.revisions] == [
        ("rev-r1", "Succeeded"), ("rev-r2", "Failed")]


def test_no_rollback_without_a_good_revision_or_when_disabled(tmp_path: Path) -> None:
    service = make_service(tmp_path, fleet_of(tmp_path, 1, failing=(1,)),
                           auto_rollback=ROLLBACK)
    result = service.deploy(APP, GROUP, failing_revision(tmp_path, "r1"))
    assert result.status == "Failed" and result.rollback_deployment_id is None
    assert "no rollback: the deployment group has no earlier successful revision" in \
        result.reason

    other = tmp_path / "other"
    fleet = fleet_of(other, 1)
    plain = make_service(other, fleet)
    assert plain.deploy(APP, GROUP, write_revision(other, "r1")).status == "Succeeded"
    result = plain.deploy(APP, GROUP, write_revision(other, "r2",
                                                     scripts={"AfterInstall": "exit 1\n"}))
    assert result.status == "Failed" and result.rollback_deployment_id is None
    assert len(plain.list_deployments()) == 2


# -- stop --------------------------------------------------------------------------------------

def wait_for(predicate, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def event_status(service: CodeDeployService, deployment_id: str, instance: str,
                 event: str) -> str:
    target = service.get_deployment(deployment_id).instances.get(instance)
    if target is None:
        return "Unknown"
    return next(r.status.value for r in target.lifecycle_events if r.event.value == event)


def test_stop_finishes_the_running_event_and_skips_the_rest(tmp_path: Path) -> None:
    fleet = fleet_of(tmp_path, 2)
    service = make_service(tmp_path, fleet)
    rev = write_revision(tmp_path, "r1", scripts={"BeforeInstall": "sleep 1\n"})
    deployment = service.create_deployment(APP, GROUP, rev)
    did = deployment.deployment_id
    wait_for(lambda: event_status(service, did, "i-1", "BeforeInstall") == "InProgress")
    service.stop(did, auto_rollback=False)
    result = service.wait(did, timeout=10)
    assert result.status == "Stopped"
    assert result.rollback_deployment_id is None
    stopped = service.get_deployment(did)
    assert stopped.error.code.value == "MANUAL_STOP"
    assert status_of(stopped) == {"i-1": "Failed", "i-2": "Skipped"}
    events = {r.event.value: r.status.value for r in stopped.instances["i-1"].lifecycle_events}
    assert events["BeforeInstall"] == "Succeeded"  # the running event is not cut short
    assert events["ValidateService"] == "Skipped"
    assert "r1 ValidateService" not in fleet.by_id("i-1").trace()
    assert fleet.by_id("i-2").trace() == []
    with pytest.raises(StateError, match="already Stopped"):
        service.stop(did)


def test_stop_with_rollback_redeploys_the_last_good_revision(tmp_path: Path) -> None:
    fleet = fleet_of(tmp_path, 1)
    service = make_service(tmp_path, fleet, auto_rollback=ROLLBACK)
    rev1 = write_revision(tmp_path, "r1")
    assert service.deploy(APP, GROUP, rev1).status == "Succeeded"
    rev2 = write_revision(tmp_path, "r2", scripts={"AfterInstall": "sleep 1\n"})
    did = service.create_deployment(APP, GROUP, rev2).deployment_id
    wait_for(lambda: event_status(service, did, "i-1", "AfterInstall") == "InProgress")
    service.stop(did)  # the group's DEPLOYMENT_STOP_ON_REQUEST decides
    result = service.wait(did, timeout=10)
    assert result.status == "Stopped"
    assert result.rollback_status == "Succeeded"
    assert service.get_deployment(result.rollback_deployment_id).revision == rev1
    assert (fleet.by_id("i-1").root / "opt/app/version.txt").read_text() == "r1\n"


def test_one_deployment_per_group_at_a_time(tmp_path: Path) -> None:
    service = make_service(tmp_path, fleet_of(tmp_path, 1))
    rev = write_revision(tmp_path, "r1", scripts={"BeforeInstall": "sleep 0.3\n"})
    first = service.create_deployment(APP, GROUP, rev)
    assert first.status in (DeploymentStatus.CREATED, DeploymentStatus.IN_PROGRESS)
    with pytest.raises(StateError, match=f"already has an active deployment "
                                         f"{first.deployment_id}"):
        service.create_deployment(APP, GROUP, rev)
    assert service.wait(first.deployment_id, timeout=10).status == "Succeeded"
    assert service.deploy(APP, GROUP, rev).status == "Succeeded"


def test_a_group_without_instances_fails(tmp_path: Path) -> None:
    service = make_service(tmp_path, FakeFleet([]))
    result = service.deploy(APP, GROUP, write_revision(tmp_path, "r1"))
    assert result.status == "Failed"
    assert service.get_deployment(result.deployment_id).error.code.value == "NO_INSTANCES"


# -- new instances of the Auto Scaling group ---------------------------------------------------

def test_new_instance_gets_the_last_successful_revision(tmp_path: Path) -> None:
    fleet = fleet_of(tmp_path, 1)
    service = make_service(tmp_path, fleet)
    newcomer = make_instance(tmp_path / "instances", "i-9")
    assert service.deploy_to_new_instance(APP, GROUP, newcomer) is None
    rev1 = write_revision(tmp_path, "r1")
    assert service.deploy(APP, GROUP, rev1).status == "Succeeded"
    failed = service.deploy(APP, GROUP, write_revision(tmp_path, "r2",
                                                       scripts={"AfterInstall": "exit 1\n"}))
    assert failed.status == "Failed"
    result = service.deploy_to_new_instance(APP, GROUP, newcomer)
    assert result is not None and result.status == "Succeeded", result
    deployment = service.get_deployment(result.deployment_id)
    assert deployment.creator is DeploymentCreator.AUTOSCALING
    assert list(deployment.instances) == ["i-9"]
    assert (newcomer.root / "opt/app/version.txt").read_text() == "r1\n"
    assert newcomer.trace()[0] == "r1 BeforeInstall"
    assert service.get_deployment_group(APP, GROUP).instance_health["i-9"].healthy


# -- persistence -------------------------------------------------------------------------------

def test_state_survives_a_restart_and_is_readable_from_another_process(tmp_path: Path) -> None:
    fleet = fleet_of(tmp_path, 1)
    service = make_service(tmp_path, fleet)
    rev1 = write_revision(tmp_path, "r1")
    first = service.deploy(APP, GROUP, rev1)
    state_dir = tmp_path / "state"
    assert (state_dir / "codedeploy/service.json").is_file()
    on_disk = json.loads((state_dir / f"codedeploy/deployments/{first.deployment_id}.json")
                         .read_text())
    assert on_disk["status"] == "Succeeded"
    assert on_disk["instances"]["i-1"]["lifecycle_events"][3]["event"] == "Install"

    code = ("import sys; from pathlib import Path; "
            "from deployer.localcloud.codedeploy.service import read_deployment; "
            "d = read_deployment(Path(sys.argv[1]), sys.argv[2]); "
            "print(d.status.value, d.instances['i-1'].status.value)")
    out = subprocess.run([sys.executable, "-c", code, str(state_dir), first.deployment_id],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.split() == ["Succeeded", "Succeeded"]

    restarted = CodeDeployService(state_dir, fleet)
    assert restarted.get_deployment(first.deployment_id) == service.get_deployment(
        first.deployment_id)
    assert restarted.wait(first.deployment_id, timeout=1).status == "Succeeded"
    assert restarted.get_deployment_group(APP, GROUP).last_successful_revision == rev1
    with pytest.raises(StateError, match="already exists"):
        restarted.create_application(APP)
    # The agent's memory of the last install is on the instance's disk too.
    second = restarted.deploy(APP, GROUP, write_revision(tmp_path, "r2"))
    assert second.status == "Succeeded", second.reason
    assert "r1 ApplicationStop" in fleet.by_id("i-1").trace()


def test_a_deployment_interrupted_by_a_restart_is_failed(tmp_path: Path) -> None:
    fleet = fleet_of(tmp_path, 1)
    service = make_service(tmp_path, fleet)
    result = service.deploy(APP, GROUP, write_revision(tmp_path, "r1"))
    path = tmp_path / f"state/codedeploy/deployments/{result.deployment_id}.json"
    data = json.loads(path.read_text())
    data["status"] = "InProgress"
    path.write_text(json.dumps(data))
    restarted = CodeDeployService(tmp_path / "state", fleet)
    deployment = read_deployment(tmp_path / "state", result.deployment_id)
    assert deployment.status is DeploymentStatus.FAILED
    assert deployment.error.code.value == "INTERNAL_ERROR"
    assert "stopped while this deployment was in progress" in deployment.error.message
    assert restarted.get_deployment(result.deployment_id).status is DeploymentStatus.FAILED


def test_unknown_things_are_not_found(tmp_path: Path) -> None:
    service = make_service(tmp_path, fleet_of(tmp_path, 1))
    with pytest.raises(NotFound):
        service.get_deployment("d-NOPE")
    with pytest.raises(NotFound):
        read_deployment(tmp_path / "state", "d-NOPE")
    with pytest.raises(NotFound, match="deployment group other"):
        service.deploy(APP, "other", write_revision(tmp_path, "r1"))
    with pytest.raises(NotFound, match=r"revision bundle .* does not exist"):
        service.deploy(APP, GROUP, Revision(bundle=tmp_path / "missing.zip"))


def test_instance_status_enum_matches_records(tmp_path: Path) -> None:
    service = make_service(tmp_path, fleet_of(tmp_path, 1))
    result = service.deploy(APP, GROUP, write_revision(tmp_path, "r1"))
    target = service.get_deployment(result.deployment_id).instances["i-1"]
    assert target.status is InstanceStatus.SUCCEEDED
    assert target.started_at <= target.ended_at
    assert all(r.started_at is None or r.started_at <= r.ended_at
               for r in target.lifecycle_events)

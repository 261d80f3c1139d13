"""A rolling update's batches, with a fake launcher and a fake clock: no process starts.

The fake launcher "boots" an instance at once and, when told, has it send its cfn-signal;
the group under test is the real one, so what is checked is AutoScalingRollingUpdate's rule
(MaxBatchSize, MinInstancesInService, signals and PauseTime, a failed batch).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.localcloud.compute.autoscaling import (
    AutoScalingGroup,
    GroupSettings,
    LaunchTemplate,
    RollingUpdatePolicy,
    UpdateFailed,
)
from deployer.localcloud.state import (
    InstanceRecord,
    InstanceState,
    SignalStatus,
    StackRecord,
    StackStatus,
    Store,
)
from tests.support.clock import FakeClock

OLD = LaunchTemplate(image_id=None, user_data="echo old")
NEW = LaunchTemplate(image_id=None, user_data="echo new")


class FakeLauncher:
    """Instances that boot at once; ``signals`` says whether they send cfn-signal SUCCESS."""

    def __init__(self, base: Path, group: list[AutoScalingGroup]) -> None:
        self.base = base
        self.signals = True
        self.log: list[tuple[str, str]] = []  # ("launch" | "terminate", template version)
        self.in_service_at_terminate: list[int] = []
        self._group = group

    def root_of(self, instance_id: str) -> Path:
        return self.base / instance_id

    def prepare_root(self, record: InstanceRecord, image) -> Path:
        return self.root_of(record.instance_id)

    def start(self, record: InstanceRecord, user_data, env) -> int:
        self.log.append(("launch", record.launch_template_version))
        if self.signals:
            record.signal = SignalStatus.SUCCESS
        return 4242

    def terminate(self, record: InstanceRecord, grace_s: float = 0.0) -> None:
        self.in_service_at_terminate.append(len(self._group[0].instances()) + 1)
        self.log.append(("terminate", record.launch_template_version))
        record.state = InstanceState.TERMINATED

    def delete_root(self, record: InstanceRecord) -> None:
        pass


def make_group(tmp_path: Path, *, desired: int, max_size: int | None = None):
    store = Store(tmp_path / "state.json")
    stack = StackRecord(name="etherpad-test", strategy="test", template="t.yaml",
                        status=StackStatus.CREATE_IN_PROGRESS)
    store.state.stacks[stack.name] = stack
    holder: list[AutoScalingGroup] = []
    launcher = FakeLauncher(tmp_path, holder)
    clock = FakeClock()
    group = AutoScalingGroup(
        stack=stack, logical_id="Group", store=store, launcher=launcher, images=None,
        settings=GroupSettings(min_size=desired, max_size=max_size or desired + 1,
                               desired_capacity=desired),
        traffic=None, instance_env=lambda record: {}, clock=clock,
        is_alive=lambda record: record.state is not InstanceState.TERMINATED)
    holder.append(group)
    group.create(OLD, "1.0", None)
    launcher.log.clear()
    return group, launcher, clock


def versions(group: AutoScalingGroup) -> list[str]:
    return sorted(i.launch_template_version for i in group.instances())


def test_batches_of_max_batch_size_terminate_then_launch(tmp_path):
    group, launcher, _ = make_group(tmp_path, desired=4)
    group.rolling_update(NEW, "2.0", RollingUpdatePolicy(max_batch_size=2))
    old, new = OLD.version, NEW.version
    assert launcher.log == [("terminate", old), ("terminate", old), ("launch", new),
                            ("launch", new)] * 2
    assert versions(group) == [new] * 4
    batches = [e.reason for e in group.stack.events if "Rolling update batch" in e.reason]
    assert batches == [f"Rolling update batch {n}: replacing 2 instance(s) (terminate then "
                       "launch)" for n in (1, 2)]


def test_min_instances_in_service_launches_first(tmp_path):
    group, launcher, _ = make_group(tmp_path, desired=2, max_size=3)
    group.rolling_update(NEW, "2.0", RollingUpdatePolicy(max_batch_size=1,
                                                         min_instances_in_service=2))
    old, new = OLD.version, NEW.version
    assert launcher.log == [("launch", new), ("terminate", old)] * 2
    # Never fewer than MinInstancesInService in service while the old ones are retired.
    assert min(launcher.in_service_at_terminate) >= 3
    assert versions(group) == [new] * 2


def test_min_instances_in_service_needs_room_to_launch_first(tmp_path):
    group, _, _ = make_group(tmp_path, desired=2, max_size=2)
    with pytest.raises(UpdateFailed, match="no room to launch first"):
        group.rolling_update(NEW, "2.0", RollingUpdatePolicy(min_instances_in_service=2))


def test_pause_time_without_signals_is_waited_after_each_batch(tmp_path):
    group, _, clock = make_group(tmp_path, desired=2)
    group.rolling_update(NEW, "2.0", RollingUpdatePolicy(max_batch_size=1, pause_time_s=60))
    assert clock.slept == [60, 60]


def test_signals_end_a_batch_before_its_pause_time(tmp_path):
    group, _, clock = make_group(tmp_path, desired=2)
    start = clock.t
    group.rolling_update(NEW, "2.0", RollingUpdatePolicy(
        max_batch_size=1, pause_time_s=300, wait_on_resource_signals=True))
    assert clock.t - start < 1.0
    assert versions(group) == [NEW.version] * 2


def test_a_batch_that_misses_its_signals_fails_and_the_rollback_restores_the_old_template(
        tmp_path):
    group, launcher, clock = make_group(tmp_path, desired=2)
    launcher.signals = False
    start = clock.t
    policy = RollingUpdatePolicy(max_batch_size=1, pause_time_s=300,
                                 wait_on_resource_signals=True)
    with pytest.raises(UpdateFailed, match=r"Received 0 SUCCESS signal\(s\) out of 1.*"
                                           r"PauseTime 300s \(batch 1\)"):
        group.rolling_update(NEW, "2.0", policy)
    assert 300 <= clock.t - start < 301  # the whole PauseTime, in no real time
    assert sorted(versions(group)) == sorted([OLD.version, NEW.version])
    # The stack's rollback is a rolling update back to the previous launch template.
    launcher.signals = True
    group.rolling_update(OLD, "1.0", policy)
    assert versions(group) == [OLD.version] * 2

"""A StackRuntime on a CloudContext of fakes: no supervisor, no process, a fake clock."""

from __future__ import annotations

from deployer.localcloud.context import CloudContext
from deployer.localcloud.operations import Operations
from deployer.localcloud.stack import StackRuntime
from deployer.localcloud.state import StackRecord, StackStatus, Store
from tests.support.clock import FakeClock


def test_a_stack_runtime_is_built_from_a_context_and_reads_its_clock(tmp_path):
    clock = FakeClock()
    store = Store(tmp_path / "state.json", clock=clock)
    ctx = CloudContext(home=tmp_path, dir=tmp_path, store=store, launcher=None, images=None,
                       artifacts=None, operations=Operations(clock), clock=clock)
    record = StackRecord(name="etherpad-test", strategy="test", template="t.yaml",
                         status=StackStatus.CREATE_IN_PROGRESS)
    store.state.stacks[record.name] = record
    runtime = StackRuntime(ctx, record)
    clock.advance(60)
    runtime.set_status(StackStatus.CREATE_COMPLETE)
    assert record.status is StackStatus.CREATE_COMPLETE
    assert record.updated_at == clock.t and record.events[-1].at == clock.t
    assert record.events[-1].status == StackStatus.CREATE_COMPLETE
    runtime.ensure_capacity()  # no model yet: nothing to launch, nothing started

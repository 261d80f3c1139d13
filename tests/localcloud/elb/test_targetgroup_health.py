"""The target group's health state machine on a fake clock: initial, thresholds, draining."""

from __future__ import annotations

from deployer.localcloud.elb.targetgroup import (
    DEREGISTRATION_IN_PROGRESS,
    REGISTRATION_IN_PROGRESS,
    TargetGroup,
    TargetGroupSettings,
    TargetHealthState,
)
from tests.support.clock import FakeClock

H = TargetHealthState


def group(clock: FakeClock, **settings) -> TargetGroup:
    return TargetGroup("web", TargetGroupSettings(**settings), clock=clock)


def test_a_new_target_is_initial_then_healthy_after_one_passing_check():
    tg = group(FakeClock())
    target = tg.register("i-1", "127.0.0.1", 9001)
    assert (target.state, target.reason) == (H.INITIAL, REGISTRATION_IN_PROGRESS)
    tg.record_check(target, True)
    assert target.state is H.HEALTHY


def test_unhealthy_after_the_unhealthy_threshold_and_back_after_the_healthy_threshold():
    tg = group(FakeClock(), unhealthy_threshold=2, healthy_threshold=3)
    target = tg.register("i-1", "127.0.0.1", 9001)
    tg.record_check(target, True)
    tg.record_check(target, False)
    assert target.state is H.HEALTHY  # one failure is not enough
    tg.record_check(target, False)
    assert target.state is H.UNHEALTHY
    tg.record_check(target, True)
    tg.record_check(target, True)
    assert target.state is H.UNHEALTHY  # two passes of three
    tg.record_check(target, True)
    assert target.state is H.HEALTHY
    assert [t.to_state for t in tg.history()] == [H.INITIAL, H.HEALTHY, H.UNHEALTHY, H.HEALTHY]


def test_draining_lasts_the_deregistration_delay_then_the_target_is_gone():
    clock = FakeClock()
    tg = group(clock, deregistration_delay_s=300)
    target = tg.register("i-1", "127.0.0.1", 9001)
    tg.record_check(target, True)
    tg.deregister("i-1")
    assert (target.state, target.reason) == (H.DRAINING, DEREGISTRATION_IN_PROGRESS)
    assert tg.pick() is None  # no new requests to a draining target
    assert tg.drain_left(target) == 300
    clock.advance(299)
    assert tg.expire_drains() == [] and tg.get("i-1") is target
    clock.advance(1)
    assert tg.expire_drains() == [target]
    assert tg.get("i-1") is None and target.state is H.UNUSED


def test_the_delay_of_a_drain_is_the_one_in_force_when_it_began():
    clock = FakeClock()
    tg = group(clock, deregistration_delay_s=300)
    target = tg.register("i-1", "127.0.0.1", 9001)
    tg.deregister("i-1")
    tg.settings = TargetGroupSettings(deregistration_delay_s=0)
    assert tg.drain_left(target) == 300


def test_an_idle_target_drains_early_only_when_asked():
    clock = FakeClock()
    tg = group(clock, deregistration_delay_s=300, drain_early_when_idle=True)
    target = tg.register("i-1", "127.0.0.1", 9001)
    tg.record_check(target, True)
    picked = tg.pick()
    tg.deregister("i-1")
    assert tg.drain_left(target) == 300  # a request is still in flight
    tg.release(picked)
    assert tg.drain_left(target) == 0

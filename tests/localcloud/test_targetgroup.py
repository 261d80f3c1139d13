"""The target group's rules without any I/O: settings limits, health counting, routing."""

from __future__ import annotations

import pytest

from deployer.base.clock import Clock
from deployer.base.errors import ConfigError, NotFound, StateError, UnsupportedProperty
from deployer.localcloud.elb.targetgroup import (
    TargetGroup,
    TargetGroupSettings,
    TargetHealthState,
)

H = TargetHealthState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def group(**settings) -> TargetGroup:
    return TargetGroup("web", TargetGroupSettings(**settings), clock=Clock(now=FakeClock()))


def picks(tg: TargetGroup, count: int) -> list[str | None]:
    chosen = []
    for _ in range(count):
        target = tg.pick()
        chosen.append(target.target_id if target else None)
        if target:
            tg.release(target)
    return chosen


# -- settings ---------------------------------------------------------------------------------

def test_settings_default_to_aws_defaults():
    settings = TargetGroupSettings()
    assert (settings.health_check_path, settings.health_check_port) == ("/", "traffic-port")
    assert (settings.health_check_interval_s, settings.health_check_timeout_s) == (30, 5)
    assert (settings.healthy_threshold, settings.unhealthy_threshold) == (5, 2)
    assert settings.deregistration_delay_s == 300
    assert settings.matches(200) and not settings.matches(302)
    assert not settings.drain_early_when_idle


@pytest.mark.parametrize("fields, message", [
    ({"health_check_interval_s": 1}, "5-300"),
    ({"health_check_interval_s": 301}, "5-300"),
    ({"health_check_interval_s": 7.5}, "whole seconds"),
    ({"health_check_timeout_s": 1}, "2-120"),
    ({"health_check_interval_s": 10, "health_check_timeout_s": 10}, "smaller than"),
    ({"healthy_threshold": 1}, "2-10"),
    ({"unhealthy_threshold": 11}, "2-10"),
    ({"deregistration_delay_s": 3601}, "0-3600"),
    ({"deregistration_delay_s": 0.5}, "0-3600 whole seconds"),
    ({"matcher": "600"}, "200-499"),
    ({"matcher": "ok"}, "200-499"),
    ({"matcher": "302-200"}, "200-499"),
    ({"health_check_path": "health"}, "must start with /"),
    ({"health_check_port": "70000"}, "1-65535"),
    ({"health_check_interval_s": "soon"}, "valid number"),
    ({"healthcheck_path": "/"}, "Extra inputs"),
])
def test_settings_outside_aws_limits_are_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message) as caught:
        TargetGroupSettings(**fields)
    assert caught.value.location.startswith("target group ")


def test_second_scale_checks_need_the_explicit_flag():
    with pytest.raises(ConfigError, match="5-300"):
        TargetGroupSettings(health_check_interval_s=0.2, health_check_timeout_s=0.1)
    settings = TargetGroupSettings(health_check_interval_s=0.2, health_check_timeout_s=0.1,
                                   deregistration_delay_s=0.5, allow_fast_checks=True)
    assert settings.health_check_interval_s == 0.2
    with pytest.raises(ConfigError, match="smaller than"):
        TargetGroupSettings(health_check_interval_s=0.2, health_check_timeout_s=0.2,
                            allow_fast_checks=True)
    with pytest.raises(ConfigError, match="2-10"):
        TargetGroupSettings(healthy_threshold=1, allow_fast_checks=True)


def test_matcher_takes_lists_and_ranges():
    listed = TargetGroupSettings(matcher="200,302")
    assert listed.matches(302) and listed.matches(200) and not listed.matches(301)
    ranged = TargetGroupSettings(matcher="200-399")
    assert ranged.matches(399) and ranged.matches(250) and not ranged.matches(400)


def test_settings_from_a_cloudformation_target_group():
    settings = TargetGroupSettings.from_cloudformation({
        "HealthCheckPath": "/", "HealthCheckIntervalSeconds": 10,
        "HealthCheckTimeoutSeconds": "5", "HealthyThresholdCount": 2,
        "UnhealthyThresholdCount": 3, "Matcher": {"HttpCode": "200,302"},
        "HealthCheckPort": 9001, "Port": 9001, "Protocol": "HTTP",
        "TargetGroupAttributes": [{"Key": "deregistration_delay.timeout_seconds",
                                   "Value": "20"}],
    })
    assert settings.health_check_interval_s == 10 and settings.health_check_timeout_s == 5
    assert (settings.healthy_threshold, settings.unhealthy_threshold) == (2, 3)
    assert settings.matches(302) and settings.health_check_port == "9001"
    assert settings.deregistration_delay_s == 20
    with pytest.raises(UnsupportedProperty, match="HealthCheckProtocol"):
        TargetGroupSettings.from_cloudformation({"HealthCheckProtocol": "HTTPS"})
    with pytest.raises(ConfigError, match="5-300") as caught:
        TargetGroupSettings.from_cloudformation({"HealthCheckIntervalSeconds": 2},
                                                location="stack.yml: Resources.TargetGroup")
    assert caught.value.location == "stack.yml: Resources.TargetGroup"


# -- health counting ------------------------------------------------------------------------

def test_health_counting_follows_the_thresholds():
    tg = group(healthy_threshold=3, unhealthy_threshold=2)
    target = tg.register("i-a", "127.0.0.1", 9001)
    tg.record_check(target, False, "Target.Timeout", "Request timed out")
    assert (target.state, target.reason) == (H.INITIAL, "Elb.InitialHealthChecking")
    tg.record_check(target, True)
    assert target.state is H.HEALTHY  # one pass is enough for a new target
    tg.record_check(target, False, "Target.ResponseCodeMismatch", "[500]")
    tg.record_check(target, True)  # a pass breaks the run of failures
    tg.record_check(target, False, "Target.ResponseCodeMismatch", "[500]")
    assert target.state is H.HEALTHY
    tg.record_check(target, False, "Target.ResponseCodeMismatch", "[503]")
    assert (target.state, target.description) == (H.UNHEALTHY, "[503]")
    tg.record_check(target, True)
    tg.record_check(target, True)
    tg.record_check(target, False, "Target.FailedHealthChecks", "Connection refused")
    assert (target.state, target.reason) == (H.UNHEALTHY, "Target.FailedHealthChecks")
    for _ in range(2):
        tg.record_check(target, True)
    assert target.state is H.UNHEALTHY  # the failure restarted the count
    tg.record_check(target, True)
    assert target.state is H.HEALTHY
    assert [(t.from_state, t.to_state) for t in tg.history()] == [
        (H.UNUSED, H.INITIAL), (H.INITIAL, H.HEALTHY), (H.HEALTHY, H.UNHEALTHY),
        (H.UNHEALTHY, H.HEALTHY)]
    assert [t.at for t in tg.history()] == sorted(t.at for t in tg.history())


def test_an_initial_target_that_keeps_failing_becomes_unhealthy():
    tg = group(unhealthy_threshold=3)
    target = tg.register("i-a", "127.0.0.1", 9001)
    for _ in range(2):
        tg.record_check(target, False, "Target.Timeout", "Request timed out")
    assert target.state is H.INITIAL
    tg.record_check(target, False, "Target.Timeout", "Request timed out")
    assert (target.state, target.reason) == (H.UNHEALTHY, "Target.Timeout")


def test_checks_after_deregistration_change_nothing():
    tg = group()
    target = tg.register("i-a", "127.0.0.1", 9001)
    tg.record_check(target, True)
    tg.deregister("i-a")
    tg.record_check(target, False, "Target.Timeout", "")
    assert (target.state, target.reason) == (H.DRAINING, "Target.DeregistrationInProgress")
    tg.forget(target)
    assert tg.states() == {}
    assert tg.history()[-1].to_state is H.UNUSED


# -- routing ----------------------------------------------------------------------------------

def make(tg: TargetGroup, states: dict[str, H]) -> None:
    """Bring targets to the given states through the group's own rules."""
    for port, (target_id, wanted) in enumerate(states.items(), start=9001):
        target = tg.register(target_id, "127.0.0.1", port)
        if wanted in (H.HEALTHY, H.DRAINING):
            tg.record_check(target, True)
        if wanted is H.UNHEALTHY:
            for _ in range(tg.settings.unhealthy_threshold):
                tg.record_check(target, False, "Target.Timeout", "")
        if wanted is H.DRAINING:
            tg.deregister(target_id)
        assert target.state is wanted


@pytest.mark.parametrize("states, routed", [
    ({}, set()),
    ({"a": H.INITIAL}, set()),
    ({"a": H.HEALTHY, "b": H.UNHEALTHY, "c": H.INITIAL}, {"a"}),
    ({"a": H.UNHEALTHY, "b": H.UNHEALTHY}, {"a", "b"}),  # fail open
    ({"a": H.UNHEALTHY, "b": H.INITIAL}, set()),  # not "only unhealthy": no fail-open
    ({"a": H.UNHEALTHY, "b": H.DRAINING}, {"a"}),  # a draining target is not registered
    ({"a": H.DRAINING}, set()),
    ({"a": H.HEALTHY, "b": H.DRAINING}, {"a"}),
])
def test_routing_by_state(states, routed):
    tg = group()
    make(tg, states)
    assert {target for target in picks(tg, 6) if target} == routed
    if not routed:
        assert picks(tg, 1) == [None]


def test_round_robin_and_in_flight_counts():
    tg = group()
    make(tg, {"a": H.HEALTHY, "b": H.HEALTHY})
    first, second, third = tg.pick(), tg.pick(), tg.pick()
    assert first.target_id != second.target_id and third.target_id == first.target_id
    assert tg.in_flight(first.target_id) == 2 and tg.in_flight(second.target_id) == 1
    for target in (first, second, third):
        tg.release(target)
    assert tg.in_flight("a") == tg.in_flight("b") == 0


def test_registration_rules():
    tg = group()
    tg.register("i-a", "127.0.0.1", 9001)
    assert tg.register("i-a", "127.0.0.1", 9001) is None
    with pytest.raises(StateError, match="already registered"):
        tg.register("i-a", "127.0.0.1", 9002)
    with pytest.raises(NotFound, match="i-b"):
        tg.deregister("i-b")
    assert tg.deregister("i-a") is not None
    assert tg.deregister("i-a") is None  # already draining
    with pytest.raises(StateError, match="draining"):
        tg.register("i-a", "127.0.0.1", 9001)

"""The local cloud's target group: settings, target health, and the rules that advance them.

Semantics (AWS's ELBv2 target group health checks and deregistration), no kinder than AWS:

* A newly registered target is ``initial`` and turns ``healthy`` after one passing check;
  an ``unhealthy`` one needs ``healthy_threshold`` passes in a row; a ``healthy`` (or
  ``initial``) one turns ``unhealthy`` after ``unhealthy_threshold`` failures in a row.
* Round robin over healthy targets. ``initial`` targets get no traffic. Only when every
  registered target is ``unhealthy`` does the group fail open and route to all of them
  (AWS: "if a target group contains only unhealthy registered targets"). Otherwise with
  nothing healthy there is nowhere to route: the load balancer answers 503.
* A deregistered target is ``draining`` (no new requests) until the deregistration delay
  is over, then ``unused`` and forgotten.

:class:`TargetGroup` does no I/O: the load balancer (``loadbalancer.py``) runs the checks,
feeds it their results and asks it where to route.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from deployer.base import logs
from deployer.base.clock import Clock
from deployer.base.errors import ConfigError, NotFound, StateError, UnsupportedProperty


class TargetHealthState(StrEnum):
    """``TargetHealth.State`` as describe-target-health reports it."""

    INITIAL = "initial"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"
    UNUSED = "unused"


# ``TargetHealth.Reason`` codes, spelled as AWS spells them so reports read the same on both clouds.
REGISTRATION_IN_PROGRESS = "Elb.RegistrationInProgress"
INITIAL_HEALTH_CHECKING = "Elb.InitialHealthChecking"
RESPONSE_CODE_MISMATCH = "Target.ResponseCodeMismatch"
CHECK_TIMEOUT = "Target.Timeout"
FAILED_HEALTH_CHECKS = "Target.FailedHealthChecks"
DEREGISTRATION_IN_PROGRESS = "Target.DeregistrationInProgress"
NOT_REGISTERED = "Target.NotRegistered"

TRAFFIC_PORT = "traffic-port"
DEREGISTRATION_DELAY_KEY = "deregistration_delay.timeout_seconds"


# -- target group settings --------------------------------------------------------------------

class TargetGroupSettings(BaseModel):
    """Health check and draining settings of one target group, with AWS's defaults and limits.

    The local cloud may ask for second-scale checks (tests, rehearsals) only by setting
    ``allow_fast_checks``; without it the values must be ones AWS would accept.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    health_check_path: str = "/"
    health_check_port: str = TRAFFIC_PORT
    health_check_interval_s: float = 30
    health_check_timeout_s: float = 5
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    matcher: str = "200"
    deregistration_delay_s: float = 300
    # AWS completes a deregistration early when the target has nothing in flight, but shows it
    # as draining for the whole delay; the default keeps what describe-target-health shows.
    drain_early_when_idle: bool = False
    allow_fast_checks: bool = False

    _codes: frozenset[int] = PrivateAttr(default=frozenset())

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(part) for part in err["loc"]) or "settings"
            raise ConfigError(err["msg"], location=f"target group {where}",
                              hint="see the ELBv2 target group health settings") from exc

    @field_validator("health_check_port", mode="before")
    @classmethod
    def _port_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _aws_limits(self) -> TargetGroupSettings:
        fast = self.allow_fast_checks
        path = self.health_check_path
        if not path.startswith("/") or len(path) > 1024:
            _invalid("health_check_path", f"must start with / and be at most 1024 characters, "
                     f"got {path!r}")
        port = self.health_check_port
        if port != TRAFFIC_PORT and not (port.isdigit() and 1 <= int(port) <= 65535):
            _invalid("health_check_port", f"must be {TRAFFIC_PORT!r} or 1-65535, got {port!r}")
        _check_seconds("health_check_interval_s", self.health_check_interval_s, 5, 300, fast)
        _check_seconds("health_check_timeout_s", self.health_check_timeout_s, 2, 120, fast)
        if self.health_check_timeout_s >= self.health_check_interval_s:
            _invalid("health_check_timeout_s", "must be smaller than health_check_interval_s "
                     f"({self.health_check_timeout_s} >= {self.health_check_interval_s})")
        for name in ("healthy_threshold", "unhealthy_threshold"):
            count = getattr(self, name)
            if not 2 <= count <= 10:
                _invalid(name, f"must be 2-10, got {count}")
        delay = self.deregistration_delay_s
        if not 0 <= delay <= 3600 or (not fast and delay != int(delay)):
            _invalid("deregistration_delay_s", f"must be 0-3600 whole seconds, got {delay}")
        self._codes = _parse_matcher(self.matcher)
        return self

    def matches(self, status: int) -> bool:
        return status in self._codes

    @classmethod
    def from_cloudformation(cls, properties: dict[str, Any], *, location: str | None = None,
                            allow_fast_checks: bool = False) -> TargetGroupSettings:
        """Read the health settings of an ``AWS::ElasticLoadBalancingV2::TargetGroup``.

        Only the health check and deregistration-delay properties are read here; the
        caller owns the rest (name, port, targets).
        """
        protocol = properties.get("HealthCheckProtocol", "HTTP")
        if protocol != "HTTP":
            raise UnsupportedProperty("TargetGroup", "HealthCheckProtocol", location=location,
                                      why=f"only HTTP health checks are run, not {protocol}")
        fields: dict[str, Any] = {"allow_fast_checks": allow_fast_checks}
        for prop, name in (("HealthCheckPath", "health_check_path"),
                           ("HealthCheckPort", "health_check_port"),
                           ("HealthCheckIntervalSeconds", "health_check_interval_s"),
                           ("HealthCheckTimeoutSeconds", "health_check_timeout_s"),
                           ("HealthyThresholdCount", "healthy_threshold"),
                           ("UnhealthyThresholdCount", "unhealthy_threshold")):
            if prop in properties:
                fields[name] = properties[prop]
        matcher = properties.get("Matcher")
        if matcher is not None:
            if not isinstance(matcher, dict) or "HttpCode" not in matcher:
                raise ConfigError("Matcher needs an HttpCode such as '200' or '200,302'",
                                  location=location)
            fields["matcher"] = str(matcher["HttpCode"])
        for attribute in properties.get("TargetGroupAttributes") or []:
            if attribute.get("Key") == DEREGISTRATION_DELAY_KEY:
                fields["deregistration_delay_s"] = attribute.get("Value")
        try:
            return cls(**fields)
        except ConfigError as exc:
            raise ConfigError(exc.message, location=location, hint=exc.hint) from exc


def _invalid(name: str, message: str) -> None:
    raise ConfigError(message, location=f"target group {name}",
                      hint="use a value AWS accepts (allow_fast_checks is for local tests only)")


def _check_seconds(name: str, value: float, low: int, high: int, fast: bool) -> None:
    if fast:
        if not 0 < value <= high:
            _invalid(name, f"must be more than 0 and at most {high} seconds, got {value}")
    elif not low <= value <= high or value != int(value):
        _invalid(name, f"must be {low}-{high} whole seconds, got {value}")


def _parse_matcher(spec: str) -> frozenset[int]:
    """``"200"``, ``"200,302"`` or ``"200-399"``: what an ALB accepts (codes 200-499)."""
    text = spec.replace(" ", "")
    try:
        if "-" in text:
            low, high = (int(part) for part in text.split("-"))
            codes: list[int] = list(range(low, high + 1))
        else:
            codes = [int(part) for part in text.split(",")]
    except ValueError:
        codes = []
    if not codes or any(not 200 <= code <= 499 for code in codes):
        _invalid("matcher", f"must be HTTP codes 200-499 as '200', '200,302' or '200-399', "
                 f"got {spec!r}")
    return frozenset(codes)


# -- target group state -----------------------------------------------------------------------

class TargetState(BaseModel):
    """One target as describe-target-health would show it."""

    target_id: str
    host: str
    port: int
    state: TargetHealthState
    reason: str = ""
    description: str = ""
    since: float  # unix time of the last change of state
    in_flight: int = 0


class HealthTransition(BaseModel):
    """One change of a target's state, for reports."""

    at: float  # unix time
    target_id: str
    from_state: TargetHealthState
    to_state: TargetHealthState
    reason: str = ""
    description: str = ""


@dataclass(eq=False)
class RegisteredTarget:
    """A target's record in the group; read it through :meth:`view` outside the group."""

    target_id: str
    host: str
    port: int
    state: TargetHealthState
    reason: str
    description: str
    since: float
    passes: int = 0
    failures: int = 0
    in_flight: int = 0
    removed: bool = False
    drain_until: float = 0.0  # monotonic time the deregistration delay ends

    def view(self) -> TargetState:
        return TargetState(target_id=self.target_id, host=self.host, port=self.port,
                           state=self.state, reason=self.reason, description=self.description,
                           since=self.since, in_flight=self.in_flight)


class TargetGroup:
    """The target group's targets and their health; the one place that advances them.

    Thread-safe: the proxy's loop thread and callers' threads share it under one lock. It
    does no I/O; :class:`LoadBalancer` feeds it check results and asks it where to route.
    """

    def __init__(self, name: str, settings: TargetGroupSettings, *,
                 clock: Clock | None = None,
                 on_transition: Callable[[HealthTransition], None] | None = None) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock or Clock()
        self.wall_clock = self.clock.now
        self.on_transition = on_transition
        self.log = logs.get_logger(target_group=name)
        self._targets: dict[str, RegisteredTarget] = {}
        self._history: list[HealthTransition] = []
        self._next = 0
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)

    # -- registration -----------------------------------------------------------------------
    def register(self, target_id: str, host: str, port: int) -> RegisteredTarget | None:
        """Add a target in ``initial``; None if it was already registered at that address."""
        with self._lock:
            known = self._targets.get(target_id)
            if known is not None:
                if known.state is TargetHealthState.DRAINING:
                    raise StateError(f"target {target_id} is draining from target group "
                                     f"{self.name}", hint="wait until it has drained, then "
                                     "register it again")
                if (known.host, known.port) != (host, port):
                    raise StateError(f"target {target_id} is already registered at "
                                     f"{known.host}:{known.port}, not {host}:{port}",
                                     hint="deregister it first")
                return None  # registering twice is a no-op, as on AWS
            target = RegisteredTarget(target_id, host, port, TargetHealthState.UNUSED,
                                      NOT_REGISTERED, "", self.wall_clock())
            self._targets[target_id] = target
            self._move(target, TargetHealthState.INITIAL, REGISTRATION_IN_PROGRESS,
                       "Target registration is in progress")
            return target

    def deregister(self, target_id: str) -> RegisteredTarget | None:
        """Start draining a target; None if it is already draining."""
        with self._lock:
            target = self._targets.get(target_id)
            if target is None:
                raise NotFound(f"target {target_id} is not registered in target group "
                               f"{self.name}", hint="check the target id")
            if target.state is TargetHealthState.DRAINING:
                return None
            # The delay in force now holds for this drain, whatever settings come later.
            target.drain_until = self.clock.monotonic() + self.settings.deregistration_delay_s
            self._move(target, TargetHealthState.DRAINING, DEREGISTRATION_IN_PROGRESS,
                       "Target deregistration is in progress")
            return target

    def drain_left(self, target: RegisteredTarget) -> float:
        """Seconds until a draining target's deregistration completes (0: it is over).

        With ``drain_early_when_idle`` a target with nothing in flight is done at once.
        """
        with self._lock:
            if target.removed:
                return 0.0
            if self.settings.drain_early_when_idle and target.in_flight == 0:
                return 0.0
            return max(0.0, target.drain_until - self.clock.monotonic())

    def expire_drains(self) -> list[RegisteredTarget]:
        """Forget every draining target whose deregistration is over; return them."""
        with self._lock:
            over = [t for t in self._targets.values()
                    if t.state is TargetHealthState.DRAINING and self.drain_left(t) <= 0]
            for target in over:
                self.forget(target)
            return over

    def forget(self, target: RegisteredTarget) -> None:
        """The deregistration delay is over: the target is unused and leaves the group."""
        with self._lock:
            target.removed = True
            if self._targets.get(target.target_id) is target:
                del self._targets[target.target_id]
            self._move(target, TargetHealthState.UNUSED, NOT_REGISTERED,
                       "Target is not registered to the target group")

    # -- health -----------------------------------------------------------------------------
    def record_check(self, target: RegisteredTarget, passed: bool, reason: str = "",
                     description: str = "") -> None:
        with self._lock:
            state = target.state
            if target.removed or state is TargetHealthState.DRAINING:
                return  # a check that was under way when deregistration began
            settings = self.settings
            if passed:
                target.failures = 0
                target.passes += 1
                if state is TargetHealthState.INITIAL or (
                        state is TargetHealthState.UNHEALTHY
                        and target.passes >= settings.healthy_threshold):
                    self._move(target, TargetHealthState.HEALTHY, "", "")
                return
            target.passes = 0
            target.failures += 1
            if state is TargetHealthState.UNHEALTHY:
                target.reason, target.description = reason, description
            elif target.failures >= settings.unhealthy_threshold:
                self._move(target, TargetHealthState.UNHEALTHY, reason, description)
            elif state is TargetHealthState.INITIAL and target.reason != INITIAL_HEALTH_CHECKING:
                target.reason = INITIAL_HEALTH_CHECKING
                target.description = "Initial health checks in progress"

    # -- routing ----------------------------------------------------------------------------
    def pick(self) -> RegisteredTarget | None:
        """The next target for a request (counted in flight), or None: answer 503."""
        with self._lock:
            candidates = [t for t in self._targets.values()
                          if t.state is TargetHealthState.HEALTHY]
            if not candidates:
                # Fail open only if every registered target has failed its checks: initial
                # targets never get traffic, and draining ones are no longer registered.
                candidates = [t for t in self._targets.values()
                              if t.state is not TargetHealthState.DRAINING]
                if not candidates or any(t.state is not TargetHealthState.UNHEALTHY
                                         for t in candidates):
                    return None
            self._next += 1
            target = candidates[self._next % len(candidates)]
            target.in_flight += 1
            return target

    def release(self, target: RegisteredTarget) -> None:
        with self._lock:
            target.in_flight -= 1
            if target.in_flight == 0:
                self.changed.notify_all()

    # -- views ------------------------------------------------------------------------------
    def get(self, target_id: str) -> RegisteredTarget | None:
        with self._lock:
            return self._targets.get(target_id)

    def targets(self) -> list[RegisteredTarget]:
        with self._lock:
            return list(self._targets.values())

    def states(self) -> dict[str, TargetState]:
        with self._lock:
            return {tid: t.view() for tid, t in self._targets.items()}

    def state_of(self, target_id: str) -> TargetState | None:
        with self._lock:
            target = self._targets.get(target_id)
            return target.view() if target else None

    def history(self) -> list[HealthTransition]:
        with self._lock:
            return list(self._history)

    def in_flight(self, target_id: str) -> int:
        with self._lock:
            target = self._targets.get(target_id)
            return target.in_flight if target else 0

    def _move(self, target: RegisteredTarget, to: TargetHealthState, reason: str,
              description: str) -> None:
        transition = HealthTransition(at=self.wall_clock(), target_id=target.target_id,
                                      from_state=target.state, to_state=to, reason=reason,
                                      description=description)
        target.state, target.reason, target.description = to, reason, description
        target.since = transition.at
        target.passes = target.failures = 0
        self._history.append(transition)
        self.changed.notify_all()
        self.log.info("target health changed", target_id=target.target_id,
                      from_state=str(transition.from_state), to_state=str(to), reason=reason)
        if self.on_transition:
            self.on_transition(transition)

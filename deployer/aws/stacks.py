"""CloudFormation stacks: change sets, and following a stack operation live.

A stack operation is followed by polling about once a second (never botocore's 30-second
waiter) and shown as it happens:

- stack events (``describe_stack_events``: newest first and paged; new ones are found by
  EventId and emitted oldest first),
- the Auto Scaling group's activities (``describe_scaling_activities``), and
- the target group's health (``describe_target_health``), whose transitions are kept for
  the report.

The operation ends when the stack's own event reaches a terminal status.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from deployer.aws.errors import Caller
from deployer.base import logs
from deployer.base.clock import Clock
from deployer.base.errors import CloudError, ConfigError, NotFound
from deployer.cloud.port import Event, OnEvent, StackStatus


class ChangeSetStatus(StrEnum):
    CREATE_PENDING = "CREATE_PENDING"
    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    CREATE_COMPLETE = "CREATE_COMPLETE"
    DELETE_PENDING = "DELETE_PENDING"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
    DELETE_COMPLETE = "DELETE_COMPLETE"
    DELETE_FAILED = "DELETE_FAILED"
    FAILED = "FAILED"


# What CloudFormation says when a change set would change nothing: nothing to do, not an error.
NO_CHANGES = ("The submitted information didn't contain changes", "No updates are to be performed")

# Reasons of resources that failed only because another one did: not the cause to show.
_CONSEQUENTIAL = ("Resource creation cancelled", "Resource update cancelled",
                  "Resource handler returned message: \"null\"")


def status_of(value: str) -> StackStatus:
    try:
        return StackStatus(value)
    except ValueError as exc:
        raise CloudError(f"CloudFormation reported an unknown stack status {value!r}") from exc


def _unix(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value or 0.0)


class StackEventFollower:
    """New stack events, emitted in order, and what they say about the stack and its failures."""

    def __init__(self, caller: Caller, cfn: Any, stack: str, on_event: OnEvent,
                 stack_name: str | None = None) -> None:
        self.caller = caller
        self.cfn = cfn
        self.stack = stack  # the stack id once known: it still answers after a delete
        self.stack_name = stack_name or stack
        self.on_event = on_event
        self.seen: set[str] = set()
        self.status: StackStatus | None = None
        self.status_reason = ""
        self.failures: list[dict] = []  # resources that failed, oldest first

    def _new_events(self) -> list[dict]:
        new = []
        for event in self.caller.pages(self.cfn, "describe_stack_events", "StackEvents",
                                       StackName=self.stack):
            if event["EventId"] in self.seen:
                break  # newest first: everything from here on was seen before
            new.append(event)
        return new[::-1]

    def prime(self) -> None:
        """Everything that happened before the operation we are about to start is history."""
        try:
            self.seen.update(e["EventId"] for e in self._new_events())
        except NotFound:
            pass

    def poll(self) -> list[dict]:
        events = self._new_events()
        for event in events:
            self.seen.add(event["EventId"])
            self._note(event)
            self.on_event(Event(at=_unix(event.get("Timestamp")), source="stack",
                                resource=event.get("LogicalResourceId", ""),
                                status=event.get("ResourceStatus", ""),
                                reason=event.get("ResourceStatusReason", "") or ""))
        return events

    def _is_stack(self, event: dict) -> bool:
        return (event.get("ResourceType") == "AWS::CloudFormation::Stack"
                and (event.get("PhysicalResourceId") == self.stack
                     or event.get("LogicalResourceId") == self.stack_name))

    def _note(self, event: dict) -> None:
        status = event.get("ResourceStatus", "")
        reason = event.get("ResourceStatusReason", "") or ""
        if self._is_stack(event):
            self.status = status_of(status)
            self.status_reason = reason
        elif status.endswith("_FAILED") and not reason.startswith(_CONSEQUENTIAL):
            self.failures.append(event)
            logs.get_logger().warning("stack.resource_failed",
                                      resource=event.get("LogicalResourceId"),
                                      type=event.get("ResourceType"), reason=reason)

    def failure_reason(self) -> str:
        """The resource that failed first and why: what a person needs to see."""
        if not self.failures:
            return self.status_reason
        first = self.failures[0]
        return (f"{first.get('LogicalResourceId')} ({first.get('ResourceType')}) "
                f"{first.get('ResourceStatus')}: {first.get('ResourceStatusReason', '')}")


class ScalingActivityFollower:
    """The Auto Scaling group's activities since the operation started, as they change."""

    def __init__(self, caller: Caller, autoscaling: Any, group: str, on_event: OnEvent,
                 since: float) -> None:
        self.caller = caller
        self.autoscaling = autoscaling
        self.group = group
        self.on_event = on_event
        self.since = since
        self.last: dict[str, str] = {}

    def poll(self) -> None:
        page = self.caller(self.autoscaling, "describe_scaling_activities",
                           AutoScalingGroupName=self.group, MaxRecords=20)
        for activity in reversed(page.get("Activities", [])):
            started = _unix(activity.get("StartTime"))
            code = activity.get("StatusCode", "")
            if started < self.since or self.last.get(activity["ActivityId"]) == code:
                continue
            self.last[activity["ActivityId"]] = code
            reason = activity.get("Description", "")
            if activity.get("StatusMessage"):
                reason += f": {activity['StatusMessage']}"
            self.on_event(Event(at=_unix(activity.get("EndTime")) or started,
                                source="autoscaling", resource=self.group, status=code,
                                reason=reason))


class TargetHealthWatcher:
    """The target group's targets; every state change seen is emitted and kept."""

    def __init__(self, caller: Caller, elbv2: Any, target_group_arn: str, on_event: OnEvent,
                 clock: Clock) -> None:
        self.caller = caller
        self.elbv2 = elbv2
        self.target_group_arn = target_group_arn
        self.on_event = on_event
        self.clock = clock
        self.states: dict[str, tuple[str, str]] = {}
        self.history: list[dict] = []

    def current(self) -> dict[str, tuple[str, str]]:
        answer = self.caller(self.elbv2, "describe_target_health",
                             TargetGroupArn=self.target_group_arn)
        states = {}
        for item in answer.get("TargetHealthDescriptions", []):
            health = item.get("TargetHealth", {})
            states[item["Target"]["Id"]] = (
                health.get("State", "unknown"),
                health.get("Description") or health.get("Reason") or "")
        return states

    def poll(self) -> None:
        now = self.clock.now()
        states = self.current()
        for target in set(self.states) - set(states):
            states_gone = ("unused", "no longer registered with the target group")
            self._transition(now, target, states_gone)
        for target, state in states.items():
            if self.states.get(target, ("", ""))[0] != state[0]:
                self._transition(now, target, state)
        self.states = states

    def _transition(self, at: float, target: str, state: tuple[str, str]) -> None:
        before = self.states.get(target, ("", ""))[0]
        self.history.append({"at": at, "target_id": target, "from_state": before or None,
                             "to_state": state[0], "reason": state[1]})
        self.on_event(Event(at=at, source="loadbalancer", resource=target, status=state[0],
                            reason=state[1]))


class ChangeSets:
    """Create, wait for, execute and clean up change sets for one stack."""

    def __init__(self, caller: Caller, cfn: Any, clock: Clock) -> None:
        self.caller = caller
        self.cfn = cfn
        self.clock = clock

    def create(self, stack_name: str, change_set_type: str, parameters: list[dict],
               capabilities: list[str], *, template_body: str | None = None,
               template_url: str | None = None, tags: list[dict] | None = None) -> str | None:
        """The change set's id, or None where the endpoint refused an update with no changes."""
        args: dict[str, Any] = {
            "StackName": stack_name, "ChangeSetType": change_set_type,
            "ChangeSetName": f"deployer-{int(self.clock.now() * 1000)}",
            "Parameters": parameters, "Capabilities": capabilities,
            "Description": "created by deployer",
        }
        if template_body is not None:
            args["TemplateBody"] = template_body
        elif template_url is not None:
            args["TemplateURL"] = template_url
        else:
            args["UsePreviousTemplate"] = True
        if tags:
            args["Tags"] = tags
        try:
            return self.caller(self.cfn, "create_change_set", **args)["Id"]
        except ConfigError as exc:
            # Some endpoints refuse an empty update outright instead of a FAILED change set.
            if any(text in str(exc) for text in NO_CHANGES):
                return None
            raise

    def wait(self, change_set_id: str | None, timeout_s: float = 600.0) -> dict | None:
        """The change set once CloudFormation has worked it out; None if it changes nothing."""
        from deployer.base.clock import poll_until

        if change_set_id is None:
            return None

        def step() -> dict | None:
            answer = self.caller(self.cfn, "describe_change_set", ChangeSetName=change_set_id)
            status = ChangeSetStatus(answer["Status"])
            if status in (ChangeSetStatus.CREATE_PENDING, ChangeSetStatus.CREATE_IN_PROGRESS):
                return None
            return answer

        answer = poll_until(step, clock=self.clock, timeout_s=timeout_s, interval_s=0.5,
                            what=f"change set {change_set_id}")
        if answer["Status"] == ChangeSetStatus.CREATE_COMPLETE:
            return answer
        reason = answer.get("StatusReason", "")
        self.delete(change_set_id)
        if any(text in reason for text in NO_CHANGES):
            return None
        raise ConfigError(f"CloudFormation rejected the change set for "
                          f"{answer.get('StackName')}: {reason}")

    def execute(self, change_set_id: str) -> None:
        self.caller(self.cfn, "execute_change_set", ChangeSetName=change_set_id)

    def delete(self, change_set_id: str) -> None:
        try:
            self.caller(self.cfn, "delete_change_set", ChangeSetName=change_set_id)
        except (NotFound, CloudError) as exc:
            # Best effort: a leftover change set costs nothing and blocks nothing.
            logs.get_logger().info("stack.change_set_left", change_set=change_set_id,
                                   reason=str(exc))


def follow_operation(follower: StackEventFollower, extra: list[Callable[[], None]],
                     clock: Clock, *, timeout_s: float, what: str,
                     check_every: int = 5, describe: Callable[[], StackStatus] | None = None
                     ) -> StackStatus:
    """Poll events (and the extra watchers) until the stack reaches a terminal status.

    Every ``check_every`` polls the stack itself is described too, so a terminal status is
    noticed even if its event were missed.
    """
    from deployer.base.clock import poll_until

    polls = 0

    def step() -> StackStatus | None:
        nonlocal polls
        polls += 1
        follower.poll()
        for watch in extra:
            watch()
        if follower.status is not None and follower.status.terminal:
            return follower.status
        if describe is not None and polls % check_every == 0:
            status = describe()
            if status.terminal:
                follower.poll()  # the events that led there, for the record
                return status
        return None

    return poll_until(step, clock=clock, timeout_s=timeout_s, what=what)

"""AWS benchmark: how long after a stack or deployment finishes does deployer notice?

Scripted timelines stand in for AWS: a fake CloudFormation whose stack reaches
UPDATE_COMPLETE at a random moment, and a fake CodeDeploy whose deployment turns Succeeded
at a random moment, each answering after a simulated API latency. deployer's followers
(StackEventFollower + follow_operation, Deployments.follow) run against them; the baseline
is botocore's own waiter loop (stack_update_complete, deployment_successful) with the delay
botocore's waiter model gives, run against the same timelines. Two modes:

* virtual: a simulated clock, many trials, API latency drawn per call (deterministic seed);
* real: a few trials in real time (time.sleep), deployer only (a 30-second waiter would
  take minutes).

    python benchmarks/aws_follow_bench.py [--trials 500] [--latency-ms 80] [--real 5]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3

from deployer.aws.codedeploy import Deployments
from deployer.aws.errors import Caller
from deployer.aws.stacks import StackEventFollower, follow_operation
from deployer.base.clock import Clock


class VirtualClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(now=lambda: self.t, monotonic=lambda: self.t, sleep=self.advance)

    def advance(self, seconds: float) -> None:
        self.t += seconds


def real_clock() -> Clock:
    return Clock()


def meta(service: str, methods: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(service_model=SimpleNamespace(service_name=service),
                           method_to_api_mapping=methods)


class FakeCloudFormation:
    """A stack update whose events appear on a timeline; calls take ``latency`` seconds."""

    meta = meta("cloudformation", {"describe_stack_events": "DescribeStackEvents",
                                   "describe_stacks": "DescribeStacks"})

    def __init__(self, clock: Clock, done_at: float, latency) -> None:
        self.clock, self.done_at, self.latency = clock, done_at, latency
        self.t0 = clock.monotonic()

    def _elapsed(self) -> float:
        self.clock.sleep(self.latency())  # the request's round trip
        return self.clock.monotonic() - self.t0

    def _events(self, elapsed: float) -> list[dict]:
        timeline = [(0.0, "e1", "UPDATE_IN_PROGRESS"),
                    (self.done_at * 0.5, "e2", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
                    (self.done_at, "e3", "UPDATE_COMPLETE")]
        return [{"EventId": eid, "StackName": "s", "LogicalResourceId": "s",
                 "PhysicalResourceId": "stack-id", "ResourceType": "AWS::CloudFormation::Stack",
                 "ResourceStatus": status, "Timestamp": datetime.now(UTC)}
                for at, eid, status in reversed(timeline) if at <= elapsed]

    def describe_stack_events(self, **_):
        return {"StackEvents": self._events(self._elapsed())}

    def describe_stacks(self, **_):
        status = "UPDATE_COMPLETE" if self._elapsed() >= self.done_at else "UPDATE_IN_PROGRESS"
        return {"Stacks": [{"StackName": "s", "StackStatus": status}]}


class FakeCodeDeploy:
    meta = meta("codedeploy", {"get_deployment": "GetDeployment",
                               "list_deployment_targets": "ListDeploymentTargets",
                               "batch_get_deployment_targets": "BatchGetDeploymentTargets"})

    def __init__(self, clock: Clock, done_at: float, latency) -> None:
        self.clock, self.done_at, self.latency = clock, done_at, latency
        self.t0 = clock.monotonic()

    def get_deployment(self, deploymentId):
        self.clock.sleep(self.latency())
        done = self.clock.monotonic() - self.t0 >= self.done_at
        return {"deploymentInfo": {"deploymentId": deploymentId,
                                   "status": "Succeeded" if done else "InProgress"}}

    def list_deployment_targets(self, **_):
        self.clock.sleep(self.latency())
        return {"targetIds": []}


def waiter_delay(service: str, waiter: str) -> tuple[float, int]:
    client = boto3.Session(region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x").client(service)
    config = client.get_waiter(waiter).config
    return float(config.delay), int(config.max_attempts)


def waiter_loop(clock: Clock, check, delay: float) -> None:
    """botocore's Waiter.wait: call, and if not done, sleep ``delay``; repeat."""
    while not check():
        clock.sleep(delay)


def notice_stack(clock: Clock, done_at: float, latency, use_waiter: float | None) -> float:
    cfn = FakeCloudFormation(clock, done_at, latency)
    if use_waiter is not None:
        waiter_loop(clock, lambda: cfn.describe_stacks()["Stacks"][0]["StackStatus"]
                    == "UPDATE_COMPLETE", use_waiter)
    else:
        follower = StackEventFollower(Caller(sleep=clock.sleep), cfn, "stack-id", lambda e: None,
                                      stack_name="s")
        follow_operation(follower, [], clock, timeout_s=7200, what="bench")
    return clock.monotonic() - cfn.t0 - done_at


def notice_deployment(clock: Clock, done_at: float, latency, use_waiter: float | None) -> float:
    cd = FakeCodeDeploy(clock, done_at, latency)
    if use_waiter is not None:
        waiter_loop(clock, lambda: cd.get_deployment("d-1")["deploymentInfo"]["status"]
                    == "Succeeded", use_waiter)
    else:
        Deployments(Caller(sleep=clock.sleep), cd, clock).follow("d-1", lambda e: None)
    return clock.monotonic() - cd.t0 - done_at


def summary(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return (f"median {statistics.median(values):.2f} s, p95 {p95:.2f} s, "
            f"max {values[-1]:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=80.0,
                        help="mean simulated API round trip (exponential)")
    parser.add_argument("--real", type=int, default=5, help="real-time trials per follower")
    args = parser.parse_args()
    rng = random.Random(1)

    def latency() -> float:
        return rng.expovariate(1000.0 / args.latency_ms) if args.latency_ms else 0.0

    print(f"# {platform.machine()}, Python {platform.python_version()}, "
          f"{args.trials} virtual trials, API latency mean {args.latency_ms:.0f} ms")
    rows = []
    for name, notice, service, waiter in (
            ("CloudFormation stack update", notice_stack, "cloudformation",
             "stack_update_complete"),
            ("CodeDeploy deployment", notice_deployment, "codedeploy",
             "deployment_successful")):
        delay, attempts = waiter_delay(service, waiter)
        ours, theirs = [], []
        for _ in range(args.trials):
            done_at = rng.uniform(5, 600)
            ours.append(notice(VirtualClock(), done_at, latency, None))
            theirs.append(notice(VirtualClock(), done_at, latency, delay))
        ratio = statistics.median(theirs) / statistics.median(ours)
        rows.append((name, summary(ours), f"{waiter} ({delay:.0f} s x {attempts})",
                     summary(theirs), ratio))
        print(f"{name}: deployer {summary(ours)} | botocore {waiter} (delay {delay:.0f} s): "
              f"{summary(theirs)} | {ratio:.0f}x")
    for name, notice in (("CloudFormation stack update", notice_stack),
                         ("CodeDeploy deployment", notice_deployment)):
        if not args.real:
            break
        measured = []
        for _ in range(args.real):
            done_at = rng.uniform(1.0, 3.0)
            measured.append(notice(real_clock(), done_at, latency, None))
        print(f"{name}, real time ({args.real} trials): deployer {summary(measured)}")
    print("\n| what | deployer notices after | botocore waiter | waiter notices after | ratio |")
    print("|---|---|---|---|---|")
    for name, ours, waiter, theirs, ratio in rows:
        print(f"| {name} | {ours} | {waiter} | {theirs} | {ratio:.0f}x |")


if __name__ == "__main__":
    main()

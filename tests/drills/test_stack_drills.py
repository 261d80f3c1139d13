"""Failure drills of the Auto Scaling group and the image builder, with the stand-in app.

Each drill breaks one thing during a rolling update (or a bake) of a stack on the local
cloud while the health poller watches the load balancer, then checks that the cloud ends
where AWS would leave it: rolled back or completed, at desired capacity, healthy targets,
the right release served.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deployer.base.errors import DeployerError
from deployer.localcloud.client import LocalCloud
from deployer.localcloud.compute.instances import MARKER
from deployer.measure.poller import HealthPoller
from tests.drills.conftest import (
    APP_STACK,
    Watch,
    processes_with,
    stand_in_parameters,
    wait_for,
)

pytestmark = pytest.mark.slow

STRATEGY = "fixture"
FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def marked_ids(home: Path) -> set[str]:
    """The instance (or build host) ids of every live process of this cloud."""
    ids = set()
    for pid in processes_with(MARKER.encode(), home):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ids |= {v.split(b"=", 1)[1].decode() for v in env if v.startswith(MARKER.encode() + b"=")}
    return ids


def served(url: str) -> set[str]:
    probes = HealthPoller(url, hz=20, timeout=2.0).run_for(1.0)
    return {p.version for p in probes if p.ok}


def settled(cloud: LocalCloud, capacity: int):
    """The environment once every instance is in service and healthy, else None."""
    env = cloud.describe_environment(STRATEGY)
    healthy = [i for i in env.instances if i.target_health == "healthy"]
    return env if len(env.instances) == capacity and len(healthy) == capacity else None


def test_lost_cfn_signal_times_out_after_pause_time_and_rolls_back(cloud: LocalCloud, drill):
    drill.title = "cfn-signal never arrives"
    drill.app = "stand-in"
    drill.expected = ("the batch times out after PauseTime, UPDATE_ROLLBACK_COMPLETE, the old "
                      "release served, no failed probe")
    view = cloud.ensure_environment(STRATEGY, APP_STACK,
                                    stand_in_parameters("1.0", PauseTime="PT8S"),
                                    cloud.events.append)
    watch = Watch(view.url)
    started = time.monotonic()
    result = cloud.update_stack(STRATEGY, {"EtherpadVersion": "2.0", "NeverSignal": "true"},
                                cloud.events.append)
    took = time.monotonic() - started
    analysis = watch.stop()
    drill.probes(analysis)

    assert result.status == "UPDATE_ROLLBACK_COMPLETE", result
    assert "Received 0 SUCCESS signal(s) out of 1" in result.reason
    assert "within PauseTime 8s" in result.reason
    assert took >= 8.0  # it waited for the signal the whole PauseTime
    assert analysis.probes.failed == 0, analysis.downtime_windows
    env = cloud.describe_environment(STRATEGY)
    assert env.parameters["EtherpadVersion"] == "1.0"
    assert [i.release for i in env.instances] == ["1.0"]
    assert served(view.url) == {"1.0"}
    drill.result = (f"{result.status} after {took:.0f} s (PauseTime 8 s); serving "
                    f"{', '.join(sorted(served(view.url)))}")


def _new_instance(cloud: LocalCloud, release: str) -> dict | None:
    state = cloud.raw_state()
    return next((i for i in state["instances"].values()
                 if i["release"] == release and i["state"] == "running" and i["pid"]), None)


def test_new_instance_killed_while_booting_rolls_back(cloud: LocalCloud, drill):
    drill.title = "an instance is killed mid-rollout: the new one, while it boots"
    drill.app = "stand-in"
    drill.expected = ("the batch never gets its signal: the update rolls back cleanly, desired "
                      "capacity, healthy targets, no failed probe")
    view = cloud.ensure_environment(STRATEGY, APP_STACK,
                                    stand_in_parameters("1.0", PauseTime="PT15S",
                                                        StartDelay="3"),
                                    cloud.events.append)
    watch = Watch(view.url)
    with ThreadPoolExecutor(1) as pool:
        update = pool.submit(cloud.update_stack, STRATEGY, {"EtherpadVersion": "2.0"},
                             lambda event: None)
        fresh = wait_for(lambda: _new_instance(LocalCloud(cloud.home), "2.0"), 30,
                         what="the new instance")
        os.killpg(fresh["pid"], signal.SIGKILL)  # the whole instance: init, user data, app
        result = update.result(timeout=120)
    env = wait_for(lambda: settled(cloud, 1), 60, what="a settled group")
    analysis = watch.stop()
    drill.probes(analysis)

    assert result.status in ("UPDATE_ROLLBACK_COMPLETE", "UPDATE_COMPLETE"), result
    assert result.status == "UPDATE_ROLLBACK_COMPLETE"  # it died before it could signal
    assert fresh["instance_id"] not in {i.instance_id for i in env.instances}
    assert [i.release for i in env.instances] == ["1.0"]
    assert analysis.probes.failed == 0, analysis.downtime_windows
    assert processes_with(f"{MARKER}={fresh['instance_id']}".encode()) == []
    drill.result = (f"{result.status}; {len(env.instances)} of 1 instance in service, "
                    "healthy; serving 1.0")


def test_serving_instance_killed_mid_rollout_is_replaced_and_the_update_completes(
        cloud: LocalCloud, drill):
    drill.title = "an instance is killed mid-rollout: an old one, while it serves users"
    drill.app = "stand-in"
    drill.expected = ("the update completes (the dead instance is replaced first), desired "
                      "capacity, healthy targets; users get 502 from the dead target only "
                      "until it fails its health checks, as with an ALB")
    drill.expected_failures = True
    view = cloud.ensure_environment(STRATEGY, APP_STACK,
                                    stand_in_parameters("1.0", Capacity="2", MaxCapacity="3",
                                                        StartDelay="2"),
                                    cloud.events.append)
    old = sorted(view.instances, key=lambda i: i.instance_id)
    watch = Watch(view.url)
    with ThreadPoolExecutor(1) as pool:
        update = pool.submit(cloud.update_stack, STRATEGY, {"EtherpadVersion": "2.0"},
                             lambda event: None)
        wait_for(lambda: _new_instance(LocalCloud(cloud.home), "2.0"), 30,
                 what="the first new instance")
        state = LocalCloud(cloud.home).raw_state()
        # The old instance launched last: the update would otherwise retire it last.
        victim = max((state["instances"][i.instance_id] for i in old),
                     key=lambda r: r["launched_at"])
        killed_at = time.monotonic()
        os.killpg(victim["pid"], signal.SIGKILL)
        result = update.result(timeout=180)
    env = wait_for(lambda: settled(cloud, 2), 60, what="a settled group")
    analysis = watch.stop()
    drill.probes(analysis)

    assert result.status == "UPDATE_COMPLETE", result
    ids = {i.instance_id for i in env.instances}
    assert victim["instance_id"] not in ids and not ids & {i.instance_id for i in old}
    assert sorted(i.release for i in env.instances) == ["2.0", "2.0"]
    assert served(view.url) == {"2.0"}
    # Failures only while the dead target was still registered: at most until it failed two
    # 5 s health checks (plus one interval of slack), and only gateway errors.
    detect_s = 2 * 5 + 5
    windows = analysis.downtime_windows
    span = (max(w.end_s for w in windows) - min(w.start_s for w in windows)) if windows else 0.0
    assert span <= detect_s, windows
    for window in windows:
        assert set(window.by_class) <= {"http_502", "refused", "reset"}, window.by_class
    events = LocalCloud(cloud.home).raw_state()["stacks"]["etherpad-fixture"]["events"]
    retired = [e["reason"] for e in events if e["status"] == "TERMINATING"]
    assert victim["instance_id"] in retired[0], "the dead instance was not replaced first"
    drill.result = (f"{result.status}; dead instance retired first; 2 of 2 healthy on 2.0; "
                    f"{analysis.probes.failed} failed probes (502) over {span:.1f} s after the "
                    f"kill, {time.monotonic() - killed_at:.0f} s before the group settled")


@pytest.mark.parametrize("case", ["provisioner fails", "release source unreachable"])
def test_failed_bake_registers_nothing_and_leaves_the_stack_alone(cloud: LocalCloud, drill,
                                                                 case, tmp_path):
    drill.title = f"the bake fails: {case}"
    drill.app = "stand-in"
    drill.expected = ("no image registered, nothing left of the build host, the stack "
                      "untouched (same parameters, same instances), no failed probe")
    view = cloud.ensure_environment(STRATEGY, APP_STACK, stand_in_parameters("1.0"),
                                    cloud.events.append)
    before = cloud.describe_environment(STRATEGY)
    watch = Watch(view.url)
    if case == "provisioner fails":
        template, variables = FIXTURES / "failing.pkr.hcl", {"etherpad_version": "2.0"}
        expect = "exit code 7"
    else:
        # The real template; the source refuses connections (nothing listens on port 9).
        template = REPO / "packer" / "etherpad.pkr.hcl"
        variables = {"etherpad_version": "1.8.18",
                     "etherpad_source": "http://127.0.0.1:9/etherpad-lite.git"}
        expect = "cannot reach 127.0.0.1:9"
    with pytest.raises(DeployerError) as failed:
        cloud.build_image(template, variables, lambda event: None)
    analysis = watch.stop()
    drill.probes(analysis)

    message = str(failed.value)
    assert expect in message and "no image was registered" in message, message
    assert cloud.list_images() == []
    assert not any((cloud.home / "images").glob("*")), "an image tree was left behind"
    assert not any((cloud.home / "builds").glob("*")), "the build host was left behind"
    running = {i.instance_id for i in before.instances}
    assert marked_ids(cloud.home) <= running, "a build host process was left running"
    after = cloud.describe_environment(STRATEGY)
    assert after.parameters == before.parameters
    assert after.stack_status == before.stack_status == "CREATE_COMPLETE"
    assert [(i.instance_id, i.pid) for i in after.instances] == \
        [(i.instance_id, i.pid) for i in before.instances]
    assert analysis.probes.failed == 0
    drill.result = (f"build failed ({expect}); no image, no build host left; stack "
                    "unchanged")

"""The local cloud end to end with a stand-in app: stacks, rolling updates, signals, recovery.

Every test drives the real supervisor process, real instance processes and the real load
balancer through the same client the CLI uses, with the health poller watching.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployer.base.errors import ConfigError, DeployerError
from deployer.localcloud.client import LocalCloud
from deployer.localcloud.compute.instances import MARKER
from deployer.measure.analysis import analyse
from deployer.measure.poller import HealthPoller
from tests.helpers import processes_with

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = FIXTURES / "app-stack.yaml"
APP = FIXTURES / "app.py"
STRATEGY = "fixture"

pytestmark = pytest.mark.slow


def marked_processes(home: Path) -> list[int]:
    """Processes of any instance of this data dir (found by their environment marker)."""
    return processes_with(MARKER.encode(), home)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    home = tmp_path / "home"
    # Instances inherit DEPLOYER_HOME: it lets the test find every process of this cloud.
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    cloud = LocalCloud(home)
    events: list = []
    cloud.events = events  # type: ignore[attr-defined]
    yield cloud
    cloud.destroy_all(events.append)
    deadline = time.monotonic() + 20
    while marked_processes(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = marked_processes(home)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"processes left behind: {leftovers}"


def params(release: str, **extra: str) -> dict[str, str]:
    return {"EtherpadVersion": release, "AppScript": str(APP), "StartDelay": "0.5", **extra}


def watch(url: str):
    poller = HealthPoller(url, hz=20, timeout=2.0)
    poller.start()
    return poller


def finish(poller: HealthPoller):
    time.sleep(0.5)
    probes = poller.stop()
    return analyse(probes, url=poller.url, hz=poller.hz,
                   duration_s=max((p.sent_s for p in probes), default=0.0))


def test_create_update_and_down(cloud: LocalCloud):
    view = cloud.ensure_environment(STRATEGY, TEMPLATE, params("1.0"), cloud.events.append)
    assert view.stack_status == "CREATE_COMPLETE"
    assert len(view.instances) == 1 and view.instances[0].release == "1.0"
    statuses = [e.status for e in cloud.events]
    assert "SIGNAL_RECEIVED" in statuses and statuses[-1] == "CREATE_COMPLETE"

    poller = watch(view.url)
    result = cloud.update_stack(STRATEGY, {"EtherpadVersion": "2.0"}, cloud.events.append)
    report = finish(poller)
    assert result.status == "UPDATE_COMPLETE", result
    assert report.zero_downtime, report.downtime_windows
    assert [v.version for v in report.versions] == ["1.0", "2.0"]
    after = cloud.describe_environment(STRATEGY)
    assert [i.release for i in after.instances] == ["2.0"]
    assert after.instances[0].target_health == "healthy"

    supervisor = cloud.supervisor_info()["pid"]
    cloud.destroy_all(cloud.events.append)
    assert not alive(supervisor)
    assert marked_processes(cloud.home) == []


def test_signal_before_serving_shows_downtime(cloud: LocalCloud):
    view = cloud.ensure_environment(STRATEGY, TEMPLATE, params("1.0", StartDelay="1.5"),
                                    cloud.events.append)
    poller = watch(view.url)
    result = cloud.update_stack(STRATEGY, {"EtherpadVersion": "2.0", "SignalEarly": "true"},
                                cloud.events.append)
    time.sleep(3.0)  # the new instance serves only after its start delay and a health check
    report = finish(poller)
    assert result.status == "UPDATE_COMPLETE"
    assert not report.zero_downtime
    assert report.probes.failed > 0


def test_failed_batch_rolls_back_to_the_previous_launch_template(cloud: LocalCloud):
    view = cloud.ensure_environment(STRATEGY, TEMPLATE, params("1.0"), cloud.events.append)
    poller = watch(view.url)
    result = cloud.update_stack(STRATEGY, {"EtherpadVersion": "2.0", "FailStart": "true"},
                                cloud.events.append)
    report = finish(poller)
    assert result.status == "UPDATE_ROLLBACK_COMPLETE"
    assert "FAILURE" in result.reason or "SUCCESS signal" in result.reason
    assert report.zero_downtime, report.downtime_windows
    assert {v.version for v in report.versions} == {"1.0"}
    after = cloud.describe_environment(STRATEGY)
    assert after.parameters["EtherpadVersion"] == "1.0"
    assert [i.release for i in after.instances] == ["1.0"]


def test_bad_parameter_changes_nothing(cloud: LocalCloud):
    cloud.ensure_environment(STRATEGY, TEMPLATE, params("1.0"), cloud.events.append)
    with pytest.raises(ConfigError, match="SignalEarly"):
        cloud.update_stack(STRATEGY, {"SignalEarly": "maybe"}, cloud.events.append)
    assert cloud.describe_environment(STRATEGY).stack_status == "CREATE_COMPLETE"


def test_supervisor_sigkill_recovers(cloud: LocalCloud):
    view = cloud.ensure_environment(STRATEGY, TEMPLATE, params("1.0", Capacity="2",
                                                               MaxCapacity="3"),
                                    cloud.events.append)
    before = {i.instance_id: i.pid for i in view.instances}
    old_supervisor = cloud.supervisor_info()["pid"]
    # One instance dies with the supervisor; the other keeps running unsupervised.
    lost = next(iter(before))
    os.kill(old_supervisor, signal.SIGKILL)
    os.killpg(before[lost], signal.SIGKILL)
    time.sleep(0.5)

    cli = subprocess.run([sys.executable, "-m", "deployer", "status", "--json"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DEPLOYER_HOME": str(cloud.home)})
    assert cli.returncode == 0, cli.stderr
    doc = json.loads(cli.stdout)
    assert doc["supervisor"]["pid"] != old_supervisor
    cloud._url = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        env = cloud.describe_environment(STRATEGY)
        healthy = [i for i in env.instances if i.target_health == "healthy"]
        if len(env.instances) == 2 and len(healthy) == 2:
            break
        time.sleep(0.5)
    ids = {i.instance_id for i in env.instances}
    adopted = set(before) - {lost}
    assert adopted <= ids, "the surviving instance was not adopted"
    assert lost not in ids and len(ids) == 2, "the lost instance was not replaced"
    assert len(healthy) == 2
    # Nothing orphaned: every marked process belongs to a live instance.
    live_pids = {i.pid for i in env.instances}
    for pid in marked_processes(cloud.home):
        assert os.getpgid(pid) in live_pids


# -- CodeDeploy in place, through the stack's deployment group -----------------------------
CD_TEMPLATE = FIXTURES / "codedeploy-stack.yaml"
REVISION = FIXTURES / "revision"


def bundle(tmp_path: Path, release: str, *, fail_start: bool = False) -> Path:
    """A revision archive of the stand-in app at ``release``."""
    import shutil
    import tarfile

    tree = tmp_path / f"rev-{release}"
    shutil.copytree(REVISION, tree)
    shutil.copy2(APP, tree / "app.py")  # the same stand-in app the other stacks run
    (tree / "RELEASE").write_text(release)
    if fail_start:
        (tree / "FAIL_START").write_text("1")
    archive = tmp_path / f"rev-{release}.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(tree.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(tree)), recursive=False)
    return archive


def test_codedeploy_in_place_and_auto_rollback(cloud: LocalCloud, tmp_path: Path):
    cd = "fixture-cd"
    view = cloud.ensure_environment(cd, CD_TEMPLATE, {"EtherpadVersion": "1.0", "Capacity": "2",
                                                      "MaxCapacity": "3"}, cloud.events.append)
    first = cloud.put_artifact(cd, "app/1.0.tgz", bundle(tmp_path, "1.0"))
    result = cloud.deploy_revision(cd, first, cloud.events.append)
    assert result.status == "Succeeded", result

    poller = watch(view.url)
    second = cloud.put_artifact(cd, "app/2.0.tgz", bundle(tmp_path, "2.0"))
    result = cloud.deploy_revision(cd, second, cloud.events.append)
    report = finish(poller)
    assert result.status == "Succeeded", result
    assert report.zero_downtime, report.downtime_windows
    assert [v.version for v in report.versions] == ["1.0", "2.0"]
    # Per-instance lifecycle events were followed as they happened, in CodeDeploy's order.
    lifecycle = [e.resource.rsplit("/", 1)[1] for e in cloud.events
                 if e.resource.startswith(result.deployment_id + "/i-")
                 and e.resource.count("/") == 2 and e.status == "Succeeded"]
    per_instance = lifecycle[:len(lifecycle) // 2]
    assert per_instance[:3] == ["BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic"]
    assert per_instance[-3:] == ["BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"]

    poller = watch(view.url)
    broken = cloud.put_artifact(cd, "app/3.0.tgz", bundle(tmp_path, "3.0", fail_start=True))
    result = cloud.deploy_revision(cd, broken, cloud.events.append)
    report = finish(poller)
    assert result.status == "Failed"
    assert result.rollback_deployment_id and result.rollback_status == "Succeeded", result
    assert report.zero_downtime, report.downtime_windows
    assert {v.version for v in report.versions} == {"2.0"}

    # An instance the group launches later gets the last successful revision (2.0).
    lost = cloud.describe_environment(cd).instances[0]
    os.killpg(lost.pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        env = cloud.describe_environment(cd)
        if len(env.instances) == 2 and all(i.target_health == "healthy" for i in env.instances) \
                and lost.instance_id not in {i.instance_id for i in env.instances}:
            break
        time.sleep(0.5)
    assert lost.instance_id not in {i.instance_id for i in env.instances}
    assert all(i.target_health == "healthy" for i in env.instances)
    probes = HealthPoller(view.url, hz=20, timeout=2.0).run_for(1.0)
    assert {p.version for p in probes} == {"2.0"}


def test_unhealthy_instance_is_replaced(cloud: LocalCloud):
    view = cloud.ensure_environment(STRATEGY, TEMPLATE, params("1.0", GracePeriod="0"),
                                    cloud.events.append)
    victim = view.instances[0]
    app_pid = next(pid for pid in marked_processes(cloud.home)
                   if b"app.py" in Path(f"/proc/{pid}/cmdline").read_bytes())
    os.kill(app_pid, signal.SIGKILL)  # the app dies; the instance (its init) lives on
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        env = cloud.describe_environment(STRATEGY)
        if env.instances and env.instances[0].instance_id != victim.instance_id and \
                env.instances[0].target_health == "healthy":
            break
        time.sleep(0.5)
    assert [i.instance_id for i in env.instances] != [victim.instance_id]
    assert env.instances[0].target_health == "healthy"
    events = [e for e in cloud.raw_state()["stacks"]["etherpad-fixture"]["events"]
              if e["status"] == "UNHEALTHY"]
    assert events and "ELB health checks" in events[0]["reason"]



def test_up_right_after_the_last_down_starts_a_new_supervisor(cloud: LocalCloud):
    """The supervisor exits when its last stack goes; a command at that moment still works,
    whether the old supervisor takes it or hands over to a new one."""
    for pause in (0.0, 0.5):
        cloud.ensure_environment(STRATEGY, TEMPLATE, params("1.0"), cloud.events.append)
        cloud.destroy_environment(STRATEGY, cloud.events.append)
        time.sleep(pause)
        view = cloud.ensure_environment(STRATEGY, TEMPLATE, params("1.0"), cloud.events.append)
        assert view.stack_status == "CREATE_COMPLETE"
        cloud.destroy_environment(STRATEGY, cloud.events.append)


def test_a_creation_that_rolled_back_keeps_no_supervisor_up(tmp_path, monkeypatch):
    """Like on AWS the stack stays in ROLLBACK_COMPLETE until deleted, but nothing runs for
    it: the supervisor exits when idle, and `down` later removes the record."""
    home = tmp_path / "home"
    monkeypatch.setenv("DEPLOYER_HOME", str(home))
    monkeypatch.setenv("DEPLOYER_SUPERVISOR_IDLE_S", "2")
    cloud = LocalCloud(home)
    events: list = []
    try:
        with pytest.raises(DeployerError):
            cloud.ensure_environment(STRATEGY, TEMPLATE, params("1.0", FailStart="true"),
                                     events.append)
        pid = cloud.supervisor_info()["pid"]
        assert cloud.describe_environment(STRATEGY).stack_status == "ROLLBACK_COMPLETE"
        deadline = time.monotonic() + 30
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive(pid), "the supervisor stayed up for a stack that holds nothing"
        assert marked_processes(home) == []
        # Still listed (from disk, without starting a supervisor), and `down` removes it.
        assert cloud.state().stack_for(STRATEGY).status.value == "ROLLBACK_COMPLETE"
        cloud.destroy_environment(STRATEGY, events.append)
        assert cloud.describe_environment(STRATEGY) is None
    finally:
        cloud.destroy_all(events.append)

"""CodeDeploy drills: hooks that fail, hang, or fail to stop the old revision.

Through the local cloud's deployment group (``LocalCloud.deploy_revision``), two instances
behind the load balancer, OneAtATime, auto-rollback on failure, the poller watching: users
must see no failed probe, because each instance is taken out of the target group before its
hooks run and the other one keeps serving.
"""

from __future__ import annotations

import shutil
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest

from deployer.localcloud.client import LocalCloud
from deployer.measure.poller import HealthPoller
from tests.drills.conftest import APP, CD_STACK, Watch, processes_with

pytestmark = pytest.mark.slow

CD = "fixture-cd"
REVISION = Path(__file__).resolve().parents[1] / "localcloud" / "fixtures" / "revision"
HOOKS = {"ApplicationStop": ("scripts/stop.sh", 30),
         "ApplicationStart": ("scripts/start.sh", 30),
         "ValidateService": ("scripts/validate.sh", 60)}


def revision(tmp_path: Path, release: str, *, scripts: dict[str, str] | None = None,
             hooks: dict[str, tuple[str, int]] | None = None) -> Path:
    """A revision archive of the stand-in app; ``scripts`` adds or replaces hook scripts."""
    tree = tmp_path / f"rev-{release}"
    shutil.copytree(REVISION, tree)
    shutil.copy2(APP, tree / "app.py")
    (tree / "RELEASE").write_text(release)
    for name, text in (scripts or {}).items():
        script = tree / "scripts" / name
        script.write_text("#!/bin/bash\n" + textwrap.dedent(text))
        script.chmod(0o755)
    events = {**HOOKS, **(hooks or {})}
    order = ["ApplicationStop", "BeforeInstall", "AfterInstall", "ApplicationStart",
             "ValidateService"]
    hook_yaml = "".join(f"  {event}:\n    - location: {events[event][0]}\n"
                        f"      timeout: {events[event][1]}\n"
                        for event in order if event in events)
    (tree / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /opt/app\n"
        f"file_exists_behavior: OVERWRITE\nhooks:\n{hook_yaml}")
    archive = tmp_path / f"rev-{release}.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(tree.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(tree)), recursive=False)
    return archive


def served(url: str) -> set[str]:
    return {p.version for p in HealthPoller(url, hz=20, timeout=2.0).run_for(1.0) if p.ok}


def deploy(cloud: LocalCloud, tmp_path: Path, release: str, **kwargs):
    flags = {k: kwargs.pop(k) for k in ("ignore_application_stop_failures",) if k in kwargs}
    artifact = cloud.put_artifact(CD, f"app/{release}.tgz", revision(tmp_path, release, **kwargs))
    return cloud.deploy_revision(CD, artifact, lambda event: None, release=release, **flags)


@pytest.fixture
def fleet(cloud: LocalCloud, tmp_path: Path):
    """Two instances behind the load balancer, running release 1.0."""
    view = cloud.ensure_environment(CD, CD_STACK, {"EtherpadVersion": "1.0", "Capacity": "2",
                                                   "MaxCapacity": "3"}, cloud.events.append)
    assert deploy(cloud, tmp_path, "1.0").status == "Succeeded"
    return view


@pytest.mark.parametrize("failure", ["exits non-zero", "exceeds its timeout"])
def test_failing_hook_fails_the_deployment_and_codedeploy_rolls_back(
        cloud: LocalCloud, fleet, tmp_path: Path, drill, failure):
    drill.title = f"CodeDeploy: a hook {failure}"
    drill.app = "stand-in"
    token = uuid.uuid4().hex
    if failure == "exits non-zero":
        scripts = {"migrate.sh": 'echo "migrating the schema"; exit 3\n'}
        hooks = {"AfterInstall": ("scripts/migrate.sh", 30)}
        expect = "failed with exit code 3"
        drill.expected = ("the deployment fails, CodeDeploy rolls back to the last good "
                          "revision, no failed probe")
    else:
        # A background child that kept no stdout/stderr, and the script itself, both hanging.
        scripts = {"warm.sh": f"""\
            DRILL_TOKEN={token} sleep 600 > /dev/null 2>&1 < /dev/null &
            DRILL_TOKEN={token} sleep 600
            """}
        hooks = {"BeforeInstall": ("scripts/warm.sh", 2)}
        expect = "failed to complete in 2 seconds"
        drill.expected = ("the hook's process group is killed at its timeout (no process "
                          "left), the deployment fails and rolls back, no failed probe")
    watch = Watch(fleet.url)
    result = deploy(cloud, tmp_path, "2.0", scripts=scripts, hooks=hooks)
    analysis = watch.stop()
    drill.probes(analysis)

    assert result.status == "Failed", result
    assert expect in result.reason, result.reason
    assert result.rollback_deployment_id and result.rollback_status == "Succeeded", result
    assert processes_with(token.encode()) == [], "the hook's processes outlived its timeout"
    assert analysis.probes.failed == 0, analysis.downtime_windows
    assert served(fleet.url) == {"1.0"}
    env = cloud.describe_environment(CD)
    assert len(env.instances) == 2 and all(i.target_health == "healthy" for i in env.instances)
    drill.result = (f"Failed ({expect}); rollback {result.rollback_status}; serving 1.0 on 2 "
                    "healthy instances"
                    + ("; no hook process left" if failure != "exits non-zero" else ""))


def test_application_stop_failure_blocks_until_ignored(cloud: LocalCloud, fleet,
                                                       tmp_path: Path, drill):
    drill.title = "CodeDeploy: ApplicationStop of the previous revision fails"
    drill.app = "stand-in"
    drill.expected = ("without ignore_application_stop_failures the deployment (and its "
                      "rollback) fails at ApplicationStop; with it the deployment proceeds; "
                      "no failed probe")
    # Revision 2.0's stop script stops the app, if one runs, and then always exits 1 (a bug
    # in its last line).
    broken_stop = {"stop.sh": """\
        pidfile="$INSTANCE_ROOT/var/app.pid"
        if [ -f "$pidfile" ]; then
          pid=$(cat "$pidfile")
          kill "$pid" 2>/dev/null || true
          for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
          rm -f "$pidfile"
        fi
        echo "stop: cleanup failed"; exit 1
        """}
    watch = Watch(fleet.url)
    assert deploy(cloud, tmp_path, "2.0", scripts=broken_stop).status == "Succeeded"

    stuck = deploy(cloud, tmp_path / "stuck", "3.0")
    assert stuck.status == "Failed" and "ApplicationStop" in stuck.reason, stuck
    # The rollback redeploys 2.0, whose own ApplicationStop fails the same way: the trap
    # ignore_application_stop_failures exists for.
    assert stuck.rollback_status == "Failed", stuck
    assert served(fleet.url) == {"2.0"}  # the other instance kept serving

    proceeds = deploy(cloud, tmp_path / "ignored", "3.0", ignore_application_stop_failures=True)
    analysis = watch.stop()
    drill.probes(analysis)
    assert proceeds.status == "Succeeded", proceeds
    assert served(fleet.url) == {"3.0"}
    env = cloud.describe_environment(CD)
    assert len(env.instances) == 2 and all(i.target_health == "healthy" for i in env.instances)
    assert analysis.probes.failed == 0, analysis.downtime_windows
    drill.result = ("without the flag: Failed at ApplicationStop, rollback Failed, the other "
                    "instance kept serving 2.0; with it: Succeeded, 3.0 on 2 healthy instances")

"""The CodeDeploy agent on one instance: lifecycle order, hooks, scripts, Install, bundles."""

from __future__ import annotations

import io
import os
import pwd
import signal
import socket
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from deployer.appspec.reader import LifecycleEvent
from deployer.base.errors import ConfigError
from deployer.cloud.port import Artifact
from deployer.localcloud.codedeploy.agent import (
    CodeDeployAgent,
    DeploymentSpec,
    ErrorCode,
    LifecycleEventRecord,
    LifecycleEventStatus,
    Revision,
    lifecycle_events,
)
from deployer.localcloud.codedeploy.service import CodeDeployService, Deployment, InstanceStatus

from .codedeploy_fixtures import (
    APP,
    GROUP,
    PYTHON,
    EventLog,
    FakeFleet,
    Instance,
    make_instance,
    make_service,
    write_revision,
)

S = LifecycleEventStatus


def single(tmp_path: Path, *, load_balancer: bool = False, **env: str
           ) -> tuple[CodeDeployService, FakeFleet, Instance]:
    instance = make_instance(tmp_path / "instances", "i-1", **env)
    fleet = FakeFleet([instance], load_balancer=load_balancer)
    return make_service(tmp_path, fleet), fleet, instance


def events_of(deployment: Deployment, instance_id: str = "i-1") -> dict[str, LifecycleEventRecord]:
    return {r.event.value: r for r in deployment.instances[instance_id].lifecycle_events}


def statuses(deployment: Deployment, instance_id: str = "i-1") -> list[tuple[str, str]]:
    return [(r.event.value, r.status.value)
            for r in deployment.instances[instance_id].lifecycle_events]


# -- lifecycle order and which revision's scripts run ----------------------------------------

def test_first_deployment_without_load_balancer(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    events = EventLog()
    rev1 = write_revision(tmp_path, "r1")
    result = service.deploy(APP, GROUP, rev1, on_event=events)
    assert result.status == "Succeeded", result.reason
    deployment = service.get_deployment(result.deployment_id)
    assert statuses(deployment) == [
        ("ApplicationStop", "Skipped"), ("DownloadBundle", "Succeeded"),
        ("BeforeInstall", "Succeeded"), ("Install", "Succeeded"), ("AfterInstall", "Succeeded"),
        ("ApplicationStart", "Succeeded"), ("ValidateService", "Succeeded")]
    assert events_of(deployment)["ApplicationStop"].note == \
        "no earlier revision was installed on this instance"
    assert instance.trace() == ["r1 BeforeInstall", "r1 AfterInstall", "r1 ApplicationStart",
                                "r1 ValidateService"]
    assert (instance.root / "opt/app/version.txt").read_text() == "r1\n"
    # Events arrive as they happen: InProgress before the outcome, the deployment last.
    did = result.deployment_id
    pairs = events.pairs()
    assert pairs[0] == (did, "InProgress")
    assert pairs.index((f"{did}/i-1/BeforeInstall", "InProgress")) < \
        pairs.index((f"{did}/i-1/BeforeInstall", "Succeeded")) < \
        pairs.index((f"{did}/i-1/Install", "InProgress"))
    assert pairs[-2:] == [(f"{did}/i-1", "Succeeded"), (did, "Succeeded")]


def test_second_deployment_with_load_balancer_runs_old_scripts_first(tmp_path: Path) -> None:
    service, fleet, instance = single(tmp_path, load_balancer=True)
    assert service.deploy(APP, GROUP, write_revision(tmp_path, "r1")).status == "Succeeded"
    first = instance.trace()
    # BlockTraffic is the agent's own and always runs; the old revision's hooks have nothing
    # to run on a first deployment.
    assert first[:2] == ["LB block", "r1 BeforeInstall"]
    assert first[-3:] == ["r1 BeforeAllowTraffic", "LB allow", "r1 AfterAllowTraffic"]
    instance.trace_file.unlink()

    result = service.deploy(APP, GROUP, write_revision(tmp_path, "r2"))
    assert result.status == "Succeeded", result.reason
    assert instance.trace() == [
        "r1 BeforeBlockTraffic", "LB block", "r1 AfterBlockTraffic", "r1 ApplicationStop",
        "r2 BeforeInstall", "r2 AfterInstall", "r2 ApplicationStart", "r2 ValidateService",
        "r2 BeforeAllowTraffic", "LB allow", "r2 AfterAllowTraffic"]
    deployment = service.get_deployment(result.deployment_id)
    assert [r.event for r in deployment.instances["i-1"].lifecycle_events] == \
        lifecycle_events(True) == list(LifecycleEvent)
    assert all(r.status is S.SUCCEEDED for r in deployment.instances["i-1"].lifecycle_events)
    assert fleet.traffic.calls == [("block", "i-1"), ("allow", "i-1")] * 2


def test_allow_traffic_failure_fails_the_instance(tmp_path: Path) -> None:
    service, fleet, _ = single(tmp_path, load_balancer=True)
    fleet.traffic.unhealthy.add("i-1")
    result = service.deploy(APP, GROUP, write_revision(tmp_path, "r1"))
    assert result.status == "Failed"
    record = events_of(service.get_deployment(result.deployment_id))["AllowTraffic"]
    assert record.status is S.FAILED
    assert record.diagnostics.error_code is ErrorCode.UNKNOWN_ERROR
    assert "did not become healthy" in record.diagnostics.message
    assert events_of(service.get_deployment(result.deployment_id))["AfterAllowTraffic"].status \
        is S.SKIPPED


def test_hook_environment_and_working_directory(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path, FROM_INSTANCE="yes")
    dump = 'env > "$INSTANCE_ROOT/env-$LIFECYCLE_EVENT"; pwd > "$INSTANCE_ROOT/cwd"\n'
    rev = write_revision(tmp_path, "r1", scripts={"AfterInstall": dump, "ValidateService": dump})
    bundle_copy = tmp_path / "store" / "000001-abc"  # the artifact store keeps no extension
    bundle_copy.parent.mkdir()
    with tarfile.open(bundle_copy, "w:gz") as tf:
        tf.add(rev.bundle, arcname=".")
    artifact = Artifact(bucket="releases", key="etherpad/r1.tgz", etag="abc123",
                        version="000001-abc", size=bundle_copy.stat().st_size)
    result = service.deploy(APP, GROUP, Revision(bundle=bundle_copy, artifact=artifact))
    assert result.status == "Succeeded", result.reason
    env = dict(line.split("=", 1) for line in
               (instance.root / "env-AfterInstall").read_text().splitlines() if "=" in line)
    group = service.get_deployment_group(APP, GROUP)
    assert env["APPLICATION_NAME"] == APP
    assert env["DEPLOYMENT_ID"] == result.deployment_id
    assert env["DEPLOYMENT_GROUP_NAME"] == GROUP
    assert env["DEPLOYMENT_GROUP_ID"] == group.group_id
    assert env["LIFECYCLE_EVENT"] == "AfterInstall"
    assert (env["BUNDLE_BUCKET"], env["BUNDLE_KEY"], env["BUNDLE_VERSION"], env["BUNDLE_ETAG"]) \
        == ("releases", "etherpad/r1.tgz", "000001-abc", "abc123")
    assert env["FROM_INSTANCE"] == "yes"
    assert "LIFECYCLE_EVENT=ValidateService" in (instance.root / "env-ValidateService").read_text()
    archive = (instance.root / "opt/codedeploy-agent/deployment-root" / group.group_id
               / result.deployment_id / "deployment-archive")
    assert Path((instance.root / "cwd").read_text().strip()) == archive
    assert (archive / "appspec.yml").is_file()


def test_directory_revisions_have_no_bundle_variables(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    rev = write_revision(tmp_path, "r1", scripts={"AfterInstall": 'env > "$INSTANCE_ROOT/env"\n'})
    assert service.deploy(APP, GROUP, rev).status == "Succeeded"
    assert "BUNDLE_" not in (instance.root / "env").read_text()


# -- a real app started and stopped by the hooks ----------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_revision(base: Path, label: str) -> Revision:
    start = (f'nohup {PYTHON} -m http.server "$APP_PORT" --bind 127.0.0.1 '
             '--directory "$INSTANCE_ROOT/opt/app" >/dev/null 2>&1 </dev/null &\n'
             'echo $! > "$INSTANCE_ROOT/app.pid"\n')
    validate = (f"{PYTHON} - <<EOF\n"
                "import sys, time, urllib.request\n"
                "deadline = time.time() + 5\n"
                "while time.time() < deadline:\n"
                "    try:\n"
                "        url = 'http://127.0.0.1:$APP_PORT/version.txt'\n"
                "        body = urllib.request.urlopen(url, timeout=1).read().decode()\n"
                f"        sys.exit(0 if body.strip() == '{label}' else 3)\n"
                "    except OSError:\n"
                "        time.sleep(0.05)\n"
                "sys.exit(1)\nEOF\n")
    stop = ('[ -f "$INSTANCE_ROOT/app.pid" ] || exit 0\n'
            'kill "$(cat "$INSTANCE_ROOT/app.pid")"; rm -f "$INSTANCE_ROOT/app.pid"\n'
            f"{PYTHON} - <<EOF\n"
            "import socket, sys, time\n"
            "for _ in range(100):\n"
            "    try:\n"
            "        socket.create_connection(('127.0.0.1', $APP_PORT), 0.2).close()\n"
            "        time.sleep(0.05)\n"
            "    except OSError:\n"
            "        sys.exit(0)\n"
            "sys.exit(1)\nEOF\n")
    return write_revision(base, label, scripts={"ApplicationStart": start,
                                                "ValidateService": validate,
                                                "ApplicationStop": stop})


def test_a_real_app_is_started_validated_and_stopped_by_the_old_revision(tmp_path: Path) -> None:
    port = free_port()
    service, _, instance = single(tmp_path, APP_PORT=str(port))
    try:
        assert service.deploy(APP, GROUP, app_revision(tmp_path, "r1")).status == "Succeeded"
        first_pid = int((instance.root / "app.pid").read_text())
        result = service.deploy(APP, GROUP, app_revision(tmp_path, "r2"))
        assert result.status == "Succeeded", result.reason
        assert "r1 ApplicationStop" in instance.trace()
        second_pid = int((instance.root / "app.pid").read_text())
        assert second_pid != first_pid
        import urllib.request
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/version.txt", timeout=2).read()
        assert body == b"r2\n"
    finally:
        pid_file = instance.root / "app.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


# -- script outcomes ---------------------------------------------------------------------------

def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # a zombie is dead; only its parent may reap it


def wait_gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.02)
    return process_gone(pid)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    # The child ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    hang = ("sh -c 'trap \"\" TERM; echo child-started; while :; do sleep 0.05; done' "
            '>/dev/null 2>&1 & echo $! > "$INSTANCE_ROOT/child.pid"\n'
            'echo $$ > "$INSTANCE_ROOT/script.pid"\necho waiting-for-ever\nsleep 30\n')
    rev = write_revision(tmp_path, "r1", scripts={"AfterInstall": hang},
                         timeouts={"AfterInstall": 1})
    started = time.monotonic()
    result = service.deploy(APP, GROUP, rev)
    elapsed = time.monotonic() - started
    assert result.status == "Failed"
    record = events_of(service.get_deployment(result.deployment_id))["AfterInstall"]
    assert record.status is S.FAILED
    assert record.diagnostics.error_code is ErrorCode.SCRIPT_TIMED_OUT
    assert record.diagnostics.script_name == "hooks/AfterInstall.sh"
    assert "failed to complete in 1 seconds" in record.diagnostics.message
    assert "[stdout]waiting-for-ever" in record.diagnostics.log_tail
    assert wait_gone(int((instance.root / "script.pid").read_text()))
    assert wait_gone(int((instance.root / "child.pid").read_text()))
    assert elapsed < 10  # 1 s timeout + 0.5 s grace, with room for a loaded machine


def test_background_process_holding_the_output_times_out_with_advice(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    leak = 'sleep 30 &\necho $! > "$INSTANCE_ROOT/child.pid"\nexit 0\n'
    rev = write_revision(tmp_path, "r1", scripts={"ApplicationStart": leak},
                         timeouts={"ApplicationStart": 1})
    result = service.deploy(APP, GROUP, rev)
    record = events_of(service.get_deployment(result.deployment_id))["ApplicationStart"]
    assert record.diagnostics.error_code is ErrorCode.SCRIPT_TIMED_OUT
    assert "still holds its stdout/stderr; redirect" in record.diagnostics.message
    assert wait_gone(int((instance.root / "child.pid").read_text()))


def test_non_zero_exit_fails_the_event_and_skips_the_rest(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    rev = write_revision(tmp_path, "r1", scripts={"AfterInstall": "echo broken >&2\nexit 3\n"})
    result = service.deploy(APP, GROUP, rev)
    assert result.status == "Failed"
    deployment = service.get_deployment(result.deployment_id)
    assert statuses(deployment)[4:] == [("AfterInstall", "Failed"),
                                        ("ApplicationStart", "Skipped"),
                                        ("ValidateService", "Skipped")]
    record = events_of(deployment)["AfterInstall"]
    assert record.diagnostics.error_code is ErrorCode.SCRIPT_FAILED
    assert record.diagnostics.message == ("Script at specified location: hooks/AfterInstall.sh "
                                          "failed with exit code 3")
    assert "[stderr]broken" in record.diagnostics.log_tail
    assert result.reason == (
        "0 of 1 instances succeeded; CodeDeployDefault.OneAtATime needs at least 1 (first "
        "failure: i-1: AfterInstall: Script at specified location: hooks/AfterInstall.sh failed "
        "with exit code 3)")
    assert instance.trace()[-1] == "r1 AfterInstall"
    scripts_log = (instance.root / "opt/codedeploy-agent/deployment-root"
                   / deployment.deployment_group_id / deployment.deployment_id
                   / "logs/scripts.log").read_text()
    assert "LifecycleEvent - AfterInstall" in scripts_log
    assert "Script - hooks/AfterInstall.sh" in scripts_log
    assert "[stderr]broken" in scripts_log


def test_missing_script_and_scripts_without_exec_bit(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    rev = write_revision(tmp_path, "r1")
    (rev.bundle / "hooks/BeforeInstall.sh").chmod(0o644)
    (rev.bundle / "hooks/AfterInstall.sh").unlink()
    result = service.deploy(APP, GROUP, rev)
    record = events_of(service.get_deployment(result.deployment_id))["AfterInstall"]
    assert record.diagnostics.error_code is ErrorCode.SCRIPT_MISSING
    assert "Script does not exist at specified location: hooks/AfterInstall.sh" in \
        record.diagnostics.message
    assert instance.trace() == ["r1 BeforeInstall"]  # made executable, as the agent does


def test_scripts_without_a_shebang_run_with_the_shell(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    rev = write_revision(tmp_path, "r1", hooked=["AfterInstall"])
    (rev.bundle / "hooks/AfterInstall.sh").write_text('echo "plain $LIFECYCLE_EVENT" >> "$TRACE"\n')
    assert service.deploy(APP, GROUP, rev).status == "Succeeded"
    assert instance.trace() == ["plain AfterInstall"]


def test_a_broken_event_callback_does_not_break_the_deployment(tmp_path: Path) -> None:
    service, _, _ = single(tmp_path)

    def explode(event) -> None:
        raise RuntimeError("display went away")

    result = service.deploy(APP, GROUP, write_revision(tmp_path, "r1"), on_event=explode)
    assert result.status == "Succeeded"


def test_ignore_application_stop_failures(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    rev1 = write_revision(tmp_path, "r1", scripts={"ApplicationStop": "exit 1\n"})
    assert service.deploy(APP, GROUP, rev1).status == "Succeeded"
    rev2 = write_revision(tmp_path, "r2")
    failed = service.deploy(APP, GROUP, rev2)
    assert failed.status == "Failed"
    record = events_of(service.get_deployment(failed.deployment_id))["ApplicationStop"]
    assert record.status is S.FAILED and record.diagnostics.error_code is ErrorCode.SCRIPT_FAILED
    assert "r2 BeforeInstall" not in instance.trace()

    ignored = service.deploy(APP, GROUP, rev2, ignore_application_stop_failures=True)
    assert ignored.status == "Succeeded", ignored.reason
    record = events_of(service.get_deployment(ignored.deployment_id))["ApplicationStop"]
    assert record.status is S.FAILED
    assert "ignore_application_stop_failures" in record.note
    assert instance.trace()[-1] == "r2 ValidateService"


def test_runas_switches_user_when_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    base = Path(tempfile.mkdtemp(prefix="codedeploy-runas-"))
    try:
        base.chmod(0o755)  # the hook, as nobody, must reach its deployment archive
        instance = make_instance(base, "i-1")
        instance.root.chmod(0o755)
        out = base / "whoami"
        out.touch()
        out.chmod(0o666)
        rev = write_revision(base, "r1", hooked=["AfterInstall"],
                             scripts={"AfterInstall": f"id -un > {out}\n"})
        (rev.bundle / "hooks/AfterInstall.sh").write_text(f"#!/bin/sh\nid -un > {out}\n")
        text = (rev.bundle / "appspec.yml").read_text()
        (rev.bundle / "appspec.yml").write_text(text + "      runas: nobody\n")
        service = make_service(base, FakeFleet([instance]))
        result = service.deploy(APP, GROUP, rev)
        assert result.status == "Succeeded", result.reason
        assert out.read_text().strip() == "nobody"
    finally:
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def run_agent(agent: CodeDeployAgent, revision: Revision) -> dict[str, LifecycleEventRecord]:
    records: dict[str, LifecycleEventRecord] = {}
    spec = DeploymentSpec(deployment_id="d-TEST", application_name=APP,
                          deployment_group_name=GROUP, deployment_group_id="g-1",
                          revision=revision)
    agent.run(spec, traffic=None, report=lambda r: records.__setitem__(r.event.value, r))
    return records


def test_runas_without_root_is_an_event_error(tmp_path: Path) -> None:
    instance = make_instance(tmp_path, "i-1")
    rev = write_revision(tmp_path, "r1", hooked=["BeforeInstall"])
    (rev.bundle / "appspec.yml").write_text((rev.bundle / "appspec.yml").read_text()
                                            + "      runas: somebody-else\n")
    me = pwd.getpwuid(os.geteuid()).pw_uid
    agent = CodeDeployAgent(instance, effective_uid=lambda: 12345 if me == 0 else me)
    records = run_agent(agent, rev)
    record = records["BeforeInstall"]
    assert record.status is S.FAILED
    assert "asks to run as user somebody-else" in record.diagnostics.message
    assert "cannot switch users; run the local cloud as root or remove runas" in \
        record.diagnostics.message


def test_runas_unknown_user_is_an_event_error(tmp_path: Path) -> None:
    instance = make_instance(tmp_path, "i-1")
    rev = write_revision(tmp_path, "r1", hooked=["BeforeInstall"])
    (rev.bundle / "appspec.yml").write_text((rev.bundle / "appspec.yml").read_text()
                                            + "      runas: no-such-user-here\n")
    records = run_agent(CodeDeployAgent(instance, effective_uid=lambda: 0), rev)
    assert "who does not exist on this machine" in records["BeforeInstall"].diagnostics.message


# -- Install: files, file_exists_behavior, permissions -----------------------------------------

def test_install_cleans_up_what_the_last_install_put_there(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    rev1 = write_revision(tmp_path, "r1", app_files={"version.txt": "1", "old/only.txt": "x"})
    assert service.deploy(APP, GROUP, rev1).status == "Succeeded"
    assert (instance.root / "opt/app/old/only.txt").exists()
    rev2 = write_revision(tmp_path, "r2", app_files={"version.txt": "2"})
    result = service.deploy(APP, GROUP, rev2)
    assert result.status == "Succeeded", result.reason  # DISALLOW: these files were its own
    assert (instance.root / "opt/app/version.txt").read_text() == "2"
    assert not (instance.root / "opt/app/old").exists()


@pytest.mark.parametrize("behavior,status,content", [
    (None, "Failed", "mine"),
    ("DISALLOW", "Failed", "mine"),
    ("OVERWRITE", "Succeeded", "r1\n"),
    ("RETAIN", "Succeeded", "mine"),
])
def test_file_exists_behavior(tmp_path: Path, behavior: str | None, status: str,
                              content: str) -> None:
    service, _, instance = single(tmp_path)
    existing = instance.root / "opt/app/version.txt"
    existing.parent.mkdir(parents=True)
    existing.write_text("mine")
    extra = f"file_exists_behavior: {behavior}\n" if behavior else ""
    rev = write_revision(tmp_path, "r1", extra=extra)
    result = service.deploy(APP, GROUP, rev)
    assert result.status == status, result.reason
    assert existing.read_text() == content
    if status == "Failed":
        record = events_of(service.get_deployment(result.deployment_id))["Install"]
        assert record.status is S.FAILED
        assert ("a specified file already exists at this location: /opt/app/version.txt"
                in record.diagnostics.message)


def test_files_entries_and_permissions(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    files = ("files:\n  - source: app\n    destination: /opt/app\n"
             "  - source: app/version.txt\n    destination: /etc/etherpad\n"
             "permissions:\n  - object: /opt/app\n    pattern: '*.sh'\n    mode: 750\n"
             "    type: [file]\n  - object: /etc/etherpad/version.txt\n    mode: 600\n")
    rev = write_revision(tmp_path, "r1", files=files,
                         app_files={"version.txt": "1", "run.sh": "#!/bin/sh\n",
                                    "notes.txt": "n"})
    result = service.deploy(APP, GROUP, rev)
    assert result.status == "Succeeded", result.reason
    mode = lambda p: (instance.root / p).stat().st_mode & 0o7777  # noqa: E731
    assert mode("opt/app/run.sh") == 0o750
    assert mode("opt/app/notes.txt") == 0o644
    assert mode("etc/etherpad/version.txt") == 0o600  # a single file lands inside destination


def test_owner_and_group_are_applied_as_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    service, _, instance = single(tmp_path)
    files = ("files:\n  - source: app\n    destination: /opt/app\n"
             "permissions:\n  - object: /opt/app\n    owner: nobody\n    type: [file]\n")
    assert service.deploy(APP, GROUP, write_revision(tmp_path, "r1", files=files)).status \
        == "Succeeded"
    assert (instance.root / "opt/app/version.txt").stat().st_uid == pwd.getpwnam("nobody").pw_uid


def test_whole_bundle_source(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    rev = write_revision(tmp_path, "r1",
                         files="files:\n  - source: /\n    destination: /srv/etherpad\n")
    assert service.deploy(APP, GROUP, rev).status == "Succeeded"
    assert (instance.root / "srv/etherpad/appspec.yml").is_file()
    assert (instance.root / "srv/etherpad/app/version.txt").read_text() == "r1\n"


def test_destination_through_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (instance.root / "opt").mkdir()
    (instance.root / "opt/app").symlink_to(outside)
    result = service.deploy(APP, GROUP, write_revision(tmp_path, "r1"))
    assert result.status == "Failed"
    record = events_of(service.get_deployment(result.deployment_id))["Install"]
    assert "leads outside the instance root through a symbolic link" in \
        record.diagnostics.message
    assert list(outside.iterdir()) == []


# -- bundles -----------------------------------------------------------------------------------

def test_zip_and_tgz_bundles(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    rev = write_revision(tmp_path, "r1")
    zipped = tmp_path / "r1.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for path in sorted(rev.bundle.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(path.relative_to(rev.bundle).as_posix())
                info.external_attr = (path.stat().st_mode & 0o777) << 16
                zf.writestr(info, path.read_bytes())
    assert service.deploy(APP, GROUP, Revision(bundle=zipped)).status == "Succeeded"
    rev2 = write_revision(tmp_path, "r2")
    tgz = tmp_path / "r2.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(rev2.bundle, arcname=".")
    result = service.deploy(APP, GROUP, Revision(bundle=tgz))
    assert result.status == "Succeeded", result.reason
    assert instance.trace()[-1] == "r2 ValidateService"
    assert "r1 ApplicationStop" in instance.trace()


def tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(path, "w") as tf:
        appspec = b"version: 0.0\nos: linux\n"
        info = tarfile.TarInfo("appspec.yml")
        info.size = len(appspec)
        tf.addfile(info, io.BytesIO(appspec))
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)


@pytest.mark.parametrize("name,kind,link,message", [
    ("../evil.sh", tarfile.REGTYPE, "", "bundle entry '../evil.sh' points outside the bundle"),
    ("/etc/evil", tarfile.REGTYPE, "", "bundle entry '/etc/evil' points outside the bundle"),
    ("app/passwd", tarfile.SYMTYPE, "/etc/passwd", "is a link to '/etc/passwd', outside"),
    ("app/up", tarfile.SYMTYPE, "../../x", "is a link to '../../x', outside the bundle"),
    ("app/hard", tarfile.LNKTYPE, "../x", "bundle entry '../x' points outside the bundle"),
])
def test_archive_entries_escaping_the_bundle_are_refused(tmp_path: Path, name: str, kind: bytes,
                                                         link: str, message: str) -> None:
    service, _, _instance = single(tmp_path)
    bundle = tmp_path / "evil.tar"
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = link
    tar_with(bundle, member, b"x")
    with pytest.raises(ConfigError) as err:
        service.create_deployment(APP, GROUP, Revision(bundle=bundle))
    assert message in str(err.value)
    assert str(bundle) in str(err.value)
    assert service.list_deployments() == []


def test_zip_entry_escaping_the_bundle_is_refused(tmp_path: Path) -> None:
    service, _, _ = single(tmp_path)
    bundle = tmp_path / "evil.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("appspec.yml", "version: 0.0\nos: linux\n")
        zf.writestr("../../evil.sh", "x")
    with pytest.raises(ConfigError, match=r"'\.\./\.\./evil\.sh' points outside the bundle"):
        service.create_deployment(APP, GROUP, Revision(bundle=bundle))


def test_symlink_in_a_directory_bundle_escaping_it_is_refused(tmp_path: Path) -> None:
    service, _, _ = single(tmp_path)
    rev = write_revision(tmp_path, "r1")
    (rev.bundle / "app/secret").symlink_to("/etc/shadow")
    with pytest.raises(ConfigError, match=r"'app/secret' is a link to '/etc/shadow', outside"):
        service.create_deployment(APP, GROUP, rev)


def test_windows_revisions_are_refused_at_deploy_time(tmp_path: Path) -> None:
    service, _, _ = single(tmp_path)
    rev = write_revision(tmp_path, "r1", hooked=[], files="")
    (rev.bundle / "appspec.yml").write_text("version: 0.0\nos: windows\n")
    with pytest.raises(ConfigError) as err:
        service.create_deployment(APP, GROUP, rev)
    assert "os: windows" in str(err.value) and "runs Linux instances only" in str(err.value)
    assert err.value.location.endswith(": os")


def test_invalid_appspec_in_the_bundle_is_refused_before_deploying(tmp_path: Path) -> None:
    service, _, _ = single(tmp_path)
    rev = write_revision(tmp_path, "r1", timeouts={"AfterInstall": 0})
    with pytest.raises(ConfigError, match=r"appspec\.yml: hooks\.AfterInstall\[0\]\.timeout: "):
        service.create_deployment(APP, GROUP, rev)
    (rev.bundle / "appspec.yml").unlink()
    with pytest.raises(ConfigError, match=r"the revision has no appspec.yml at its root"):
        service.create_deployment(APP, GROUP, rev)


def test_only_five_archives_are_kept_and_never_the_last_good_one(tmp_path: Path) -> None:
    service, _, instance = single(tmp_path)
    results = [service.deploy(APP, GROUP, write_revision(tmp_path, f"r{n}", hooked=[]))
               for n in range(7)]
    assert all(r.status == "Succeeded" for r in results)
    group_dir = (instance.root / "opt/codedeploy-agent/deployment-root"
                 / service.get_deployment_group(APP, GROUP).group_id)
    kept = {p.name for p in group_dir.iterdir()}
    assert len(kept) == 5
    assert results[-1].deployment_id in kept and results[0].deployment_id not in kept
    marker = (instance.root / "opt/codedeploy-agent/deployment-root/deployment-instructions"
              / f"{group_dir.name}_last_successful_install")
    assert marker.read_text().strip() == \
        f"/opt/codedeploy-agent/deployment-root/{group_dir.name}/{results[-1].deployment_id}"
    assert service.get_deployment(results[-1].deployment_id).instances["i-1"].status is \
        InstanceStatus.SUCCEEDED

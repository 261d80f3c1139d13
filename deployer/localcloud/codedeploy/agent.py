"""The CodeDeploy agent on one instance: lifecycle events, the revision on disk, hook scripts.

Built after aws/aws-codedeploy-agent so that what a revision does locally is what it does on
EC2. The agent keeps its files where the real one does, under the instance's root::

    opt/codedeploy-agent/deployment-root/
        <deployment-group-id>/<deployment-id>/deployment-archive/   the unpacked revision
        <deployment-group-id>/<deployment-id>/logs/scripts.log      hook output
        deployment-instructions/<deployment-group-id>_last_successful_install
        deployment-instructions/<deployment-group-id>-cleanup       files the last Install made
        deployment-instructions/<deployment-group-id>-install.json  what the last Install did

Like the real agent, "last successful install" is written when the Install event succeeds,
not when the whole deployment does: a revision whose ApplicationStart failed is the one whose
ApplicationStop runs next time, because its files are the ones on disk.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Protocol, TextIO

from pydantic import BaseModel

from deployer.appspec.reader import (
    MAX_EVENT_TIMEOUT_S,
    AppSpec,
    Hook,
    LifecycleEvent,
    OperatingSystem,
)
from deployer.base import logs
from deployer.base.clock import Clock
from deployer.base.processes import group_alive
from deployer.localcloud.codedeploy.install import (
    BundleType,
    Installer,
    Revision,
    cleanup_old_archives,
    instance_path,
    read_archive_appspec,
    read_revision_appspec,
    unpack_bundle,
    windows_unsupported,
    write_atomically,
)

__all__ = [
    "BundleType", "CodeDeployAgent", "DeploymentSpec", "Diagnostics", "ErrorCode",
    "InstanceHandle", "LifecycleEventRecord", "LifecycleEventStatus", "Revision",
    "TrafficControl", "lifecycle_events", "read_revision_appspec",
]

log = logs.get_logger(component="codedeploy-agent")

DEPLOYMENT_ROOT = PurePosixPath("/opt/codedeploy-agent/deployment-root")
SCRIPT_LOG_TAIL_CHARS = 2048  # what the real agent reports with a failed lifecycle event

# Events whose scripts come from the last successful install rather than the new revision.
OLD_REVISION_EVENTS = frozenset({LifecycleEvent.BEFORE_BLOCK_TRAFFIC,
                                 LifecycleEvent.AFTER_BLOCK_TRAFFIC,
                                 LifecycleEvent.APPLICATION_STOP})
TRAFFIC_EVENTS = frozenset({LifecycleEvent.BEFORE_BLOCK_TRAFFIC, LifecycleEvent.BLOCK_TRAFFIC,
                            LifecycleEvent.AFTER_BLOCK_TRAFFIC,
                            LifecycleEvent.BEFORE_ALLOW_TRAFFIC, LifecycleEvent.ALLOW_TRAFFIC,
                            LifecycleEvent.AFTER_ALLOW_TRAFFIC})


def lifecycle_events(with_load_balancer: bool) -> list[LifecycleEvent]:
    """The events of an in-place deployment; the traffic ones only behind a load balancer."""
    return [e for e in LifecycleEvent if with_load_balancer or e not in TRAFFIC_EVENTS]


class InstanceHandle(Protocol):
    instance_id: str
    root: Path  # appspec destinations map under it: "/opt/etherpad" -> root / "opt/etherpad"
    env: dict[str, str]  # the instance's environment; hooks inherit it


class TrafficControl(Protocol):
    """The load balancer as the agent's BlockTraffic/AllowTraffic see it."""

    def block(self, instance_id: str) -> None:
        """Deregister the instance and return once draining has finished."""

    def allow(self, instance_id: str) -> None:
        """Register the instance and return once it is healthy; raise if it never is."""


class LifecycleEventStatus(str, Enum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class ErrorCode(str, Enum):
    """The agent's lifecycle event error codes, as CodeDeploy reports them."""

    SCRIPT_MISSING = "ScriptMissing"
    SCRIPT_NOT_EXECUTABLE = "ScriptNotExecutable"
    SCRIPT_TIMED_OUT = "ScriptTimedOut"
    SCRIPT_FAILED = "ScriptFailed"
    UNKNOWN_ERROR = "UnknownError"


class Diagnostics(BaseModel):
    error_code: ErrorCode
    message: str
    script_name: str | None = None
    log_tail: str = ""


class LifecycleEventRecord(BaseModel):
    event: LifecycleEvent
    status: LifecycleEventStatus = LifecycleEventStatus.PENDING
    started_at: float | None = None
    ended_at: float | None = None
    diagnostics: Diagnostics | None = None
    note: str = ""  # why an event was skipped or a failure ignored


class DeploymentSpec(BaseModel):
    """What the service tells the agent about one deployment (the real deployment spec)."""

    deployment_id: str
    application_name: str
    deployment_group_name: str
    deployment_group_id: str
    revision: Revision
    ignore_application_stop_failures: bool = False


class EventFailed(Exception):
    """A lifecycle event failed; carries what CodeDeploy shows for it."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        super().__init__(diagnostics.message)
        self.diagnostics = diagnostics


class _EventSkipped(Exception):
    pass


Report = Callable[[LifecycleEventRecord], None]


class CodeDeployAgent:
    """The agent of one instance. One deployment at a time runs on it."""

    def __init__(self, instance: InstanceHandle, *, kill_grace_s: float = 3.0,
                 effective_uid: Callable[[], int] = os.geteuid,
                 clock: Clock | None = None) -> None:
        self.instance = instance
        self.kill_grace_s = kill_grace_s
        # Hook timeouts bound real processes; the clock is injected all the same, so a test
        # of the agent's bookkeeping can run on a fake one.
        self.clock = clock or Clock()
        self._effective_uid = effective_uid
        self._lock = threading.Lock()

    # -- paths -------------------------------------------------------------------------------
    def host_path(self, path: PurePosixPath | str) -> Path:
        """Where an absolute path on the instance lives on this machine."""
        return instance_path(self.instance.root, path)

    @property
    def instructions_dir(self) -> Path:
        return self.host_path(DEPLOYMENT_ROOT / "deployment-instructions")

    def deployment_dir(self, group_id: str, deployment_id: str) -> PurePosixPath:
        return DEPLOYMENT_ROOT / group_id / deployment_id

    def last_successful_install(self, group_id: str) -> PurePosixPath | None:
        marker = self.instructions_dir / f"{group_id}_last_successful_install"
        if not marker.is_file():
            return None
        text = marker.read_text().strip()
        return PurePosixPath(text) if text else None

    # -- a deployment ------------------------------------------------------------------------
    def run(self, spec: DeploymentSpec, *, traffic: TrafficControl | None, report: Report,
            stop_requested: Callable[[], bool] = lambda: False) -> bool:
        """Run every lifecycle event of ``spec`` on this instance; True if it succeeded.

        ``report`` gets each event record whenever it changes. After a failure, or once a stop
        is requested, the remaining events are reported Skipped.
        """
        with self._lock:
            return _Run(self, spec, traffic, report, stop_requested).execute()


class _Run:
    """One deployment on one instance."""

    def __init__(self, agent: CodeDeployAgent, spec: DeploymentSpec,
                 traffic: TrafficControl | None, report: Report,
                 stop_requested: Callable[[], bool]) -> None:
        self.agent = agent
        self.spec = spec
        self.traffic = traffic
        self.report = report
        self.stop_requested = stop_requested
        self.deployment_dir = agent.deployment_dir(spec.deployment_group_id, spec.deployment_id)
        self.archive = agent.host_path(self.deployment_dir / "deployment-archive")
        self.previous = agent.last_successful_install(spec.deployment_group_id)
        self.appspec: AppSpec | None = None
        self.script_log = _ScriptLog(agent.host_path(self.deployment_dir / "logs/scripts.log"))
        self.log = log.bind(instance=agent.instance.instance_id,
                            deployment=spec.deployment_id)

    def execute(self) -> bool:
        events = lifecycle_events(self.traffic is not None)
        try:
            for index, event in enumerate(events):
                if self.stop_requested():
                    self._skip(events[index:], "the deployment was stopped")
                    return False
                record = LifecycleEventRecord(event=event,
                                              status=LifecycleEventStatus.IN_PROGRESS,
                                              started_at=self.agent.clock.now())
                self.report(record.model_copy())
                self.script_log.start_event()
                try:
                    self._perform(event)
                    record.status = LifecycleEventStatus.SUCCEEDED
                except _EventSkipped as skipped:
                    record.status = LifecycleEventStatus.SKIPPED
                    record.note = str(skipped)
                except EventFailed as failed:
                    record.status = LifecycleEventStatus.FAILED
                    record.diagnostics = failed.diagnostics
                except Exception as exc:
                    record.status = LifecycleEventStatus.FAILED
                    record.diagnostics = Diagnostics(
                        error_code=ErrorCode.UNKNOWN_ERROR, message=str(exc) or repr(exc),
                        log_tail=self.script_log.tail())
                record.ended_at = self.agent.clock.now()
                failure = record.diagnostics.message if record.diagnostics else ""
                ignored = (record.status is LifecycleEventStatus.FAILED
                           and event in OLD_REVISION_EVENTS
                           and self.spec.ignore_application_stop_failures)
                if ignored:
                    record.note = ("failure ignored: the deployment was created with "
                                   "ignore_application_stop_failures")
                    self.script_log.write(f"{event.value} failed and was ignored: "
                                          f"{failure}\n")
                self.report(record.model_copy())
                if record.status is LifecycleEventStatus.FAILED and not ignored:
                    self.log.warning("lifecycle event failed", lifecycle_event=event.value,
                                     reason=failure)
                    self._skip(events[index + 1:], f"{event.value} failed")
                    return False
            return True
        finally:
            self.script_log.close()

    def _skip(self, events: list[LifecycleEvent], why: str) -> None:
        for event in events:
            self.report(LifecycleEventRecord(event=event, status=LifecycleEventStatus.SKIPPED,
                                             note=why))

    def _perform(self, event: LifecycleEvent) -> None:
        if event is LifecycleEvent.BLOCK_TRAFFIC:
            assert self.traffic is not None
            self.traffic.block(self.agent.instance.instance_id)
        elif event is LifecycleEvent.ALLOW_TRAFFIC:
            assert self.traffic is not None
            self.traffic.allow(self.agent.instance.instance_id)
        elif event is LifecycleEvent.DOWNLOAD_BUNDLE:
            self._download_bundle()
        elif event is LifecycleEvent.INSTALL:
            self._install()
        elif event in OLD_REVISION_EVENTS:
            if self.previous is None:
                raise _EventSkipped("no earlier revision was installed on this instance")
            archive = self.agent.host_path(self.previous / "deployment-archive")
            if not archive.is_dir():
                raise _EventSkipped(f"the last installed revision is gone from {self.previous}")
            self._run_scripts(event, read_archive_appspec(archive), archive)
        else:
            assert self.appspec is not None, "DownloadBundle runs before the new revision's hooks"
            self._run_scripts(event, self.appspec, self.archive)

    # -- DownloadBundle ------------------------------------------------------------------------
    def _download_bundle(self) -> None:
        group_dir = self.agent.host_path(DEPLOYMENT_ROOT / self.spec.deployment_group_id)
        cleanup_old_archives(group_dir, self.agent.host_path(self.previous)
                             if self.previous else None, keep_also=self.archive.parent)
        shutil.rmtree(self.archive, ignore_errors=True)
        self.archive.parent.mkdir(parents=True, exist_ok=True)
        unpack_bundle(self.spec.revision, self.archive)
        appspec = read_archive_appspec(self.archive)
        if appspec.os is OperatingSystem.WINDOWS:
            raise windows_unsupported(self.spec.revision)
        self.appspec = appspec

    # -- Install -------------------------------------------------------------------------------
    def _install(self) -> None:
        assert self.appspec is not None
        installer = Installer(self.agent.instance.root, self.agent.instructions_dir, self.archive,
                              warn=self.script_log.write,
                              as_root=self.agent._effective_uid() == 0)
        installer.install(self.spec.deployment_group_id, self.appspec)
        marker = (self.agent.instructions_dir
                  / f"{self.spec.deployment_group_id}_last_successful_install")
        write_atomically(marker, f"{self.deployment_dir}\n")

    # -- hook scripts --------------------------------------------------------------------------
    def _run_scripts(self, event: LifecycleEvent, appspec: AppSpec, archive: Path) -> None:
        hooks = appspec.scripts(event)
        if not hooks:
            return
        self.script_log.write(f"LifecycleEvent - {event.value}\n")
        env = dict(self.agent.instance.env)
        env.update({
            "LIFECYCLE_EVENT": event.value,
            "DEPLOYMENT_ID": self.spec.deployment_id,
            "APPLICATION_NAME": self.spec.application_name,
            "DEPLOYMENT_GROUP_NAME": self.spec.deployment_group_name,
            "DEPLOYMENT_GROUP_ID": self.spec.deployment_group_id,
        })
        artifact = self.spec.revision.artifact
        if artifact is not None:
            env.update({"BUNDLE_BUCKET": artifact.bucket, "BUNDLE_KEY": artifact.key,
                        "BUNDLE_VERSION": artifact.version or "", "BUNDLE_ETAG": artifact.etag})
        # However the timeouts add up, one lifecycle event gets at most 3600 s of scripts.
        event_deadline = self.agent.clock.monotonic() + MAX_EVENT_TIMEOUT_S
        for hook in hooks:
            hook_deadline = self.agent.clock.monotonic() + hook.timeout
            _ScriptRun(self.agent, hook, archive, env, self.script_log,
                       deadline=min(hook_deadline, event_deadline)).run()


class _ScriptRun:
    """One hook script: its own process group, output to scripts.log, bounded by its timeout."""

    def __init__(self, agent: CodeDeployAgent, hook: Hook, archive: Path, env: dict[str, str],
                 script_log: _ScriptLog, *, deadline: float) -> None:
        self.deadline = deadline
        self.limit_s = max(0, round(deadline - agent.clock.monotonic()))
        self.agent = agent
        self.hook = hook
        self.archive = archive
        self.env = env
        self.script_log = script_log

    def fail(self, code: ErrorCode, message: str) -> EventFailed:
        return EventFailed(Diagnostics(error_code=code, message=message,
                                       script_name=self.hook.location,
                                       log_tail=self.script_log.tail()))

    def run(self) -> None:
        hook = self.hook
        path = self.archive / hook.location.lstrip("/")
        if not path.is_file():
            raise self.fail(ErrorCode.SCRIPT_MISSING,
                            f"Script does not exist at specified location: {hook.location}")
        if not os.access(path, os.X_OK):
            # The real agent makes hook scripts executable before giving up on them.
            try:
                path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            except OSError as exc:
                raise self.fail(ErrorCode.SCRIPT_NOT_EXECUTABLE,
                                f"Unable to set script at specified location: {hook.location} "
                                f"as executable ({exc})") from exc
        user_kwargs = self.user_switch()
        self.script_log.write(f"Script - {hook.location}\n")
        try:
            process = self.spawn([str(path)], user_kwargs)
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise self.fail(ErrorCode.SCRIPT_FAILED,
                                f"Script at specified location: {hook.location} could not be "
                                f"started: {exc}") from exc
            # No shebang line: run it with the shell, as execvp would.
            process = self.spawn(["/bin/sh", str(path)], user_kwargs)
        self.wait(process)

    def user_switch(self) -> dict:
        runas = self.hook.runas
        if not runas:
            return {}
        uid = self.agent._effective_uid()
        try:
            current = pwd.getpwuid(uid).pw_name
        except KeyError:
            current = str(uid)
        if runas == current:
            return {}
        if uid != 0:
            raise self.fail(ErrorCode.UNKNOWN_ERROR,
                            f"Script at specified location: {self.hook.location} asks to run as "
                            f"user {runas}, but the local cloud's agent runs as {current}, not "
                            "root, and cannot switch users; run the local cloud as root or "
                            "remove runas")
        try:
            user = pwd.getpwnam(runas)
        except KeyError:
            raise self.fail(ErrorCode.UNKNOWN_ERROR,
                            f"Script at specified location: {self.hook.location} asks to run as "
                            f"user {runas}, who does not exist on this machine; create the user "
                            "or change runas") from None
        self.env = {**self.env, "HOME": user.pw_dir, "USER": runas, "LOGNAME": runas}
        return {"user": user.pw_uid, "group": user.pw_gid,
                "extra_groups": os.getgrouplist(runas, user.pw_gid)}

    def spawn(self, argv: list[str], user_kwargs: dict) -> subprocess.Popen:
        return subprocess.Popen(argv, cwd=self.archive, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, **user_kwargs)

    def wait(self, process: subprocess.Popen) -> None:
        hook = self.hook
        deadline = self.deadline
        readers = [threading.Thread(target=self.pump, args=(stream, label), daemon=True)
                   for stream, label in ((process.stdout, "stdout"), (process.stderr, "stderr"))]
        for reader in readers:
            reader.start()
        try:
            process.wait(timeout=max(0.0, deadline - self.agent.clock.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill_group(process)
            raise self.fail(ErrorCode.SCRIPT_TIMED_OUT,
                            f"Script at specified location: {hook.location} failed to complete "
                            f"in {self.limit_s} seconds") from None
        for reader in readers:
            reader.join(max(0.0, deadline - self.agent.clock.monotonic()))
        if any(reader.is_alive() for reader in readers):
            # Like the real agent, wait for the script's output to close, not just for the
            # script: a background process that kept stdout/stderr holds the event open.
            self.kill_group(process)
            raise self.fail(ErrorCode.SCRIPT_TIMED_OUT,
                            f"Script at specified location: {hook.location} failed to complete "
                            f"in {self.limit_s} seconds: a process it started in the background "
                            "still holds its stdout/stderr; redirect the background process's "
                            "output (> /dev/null 2>&1 < /dev/null &)")
        if process.returncode != 0:
            who = f" run as user {hook.runas}" if hook.runas else ""
            raise self.fail(ErrorCode.SCRIPT_FAILED,
                            f"Script at specified location: {hook.location}{who} failed with "
                            f"exit code {_exit_code(process.returncode)}")

    def pump(self, stream, label: str) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                self.script_log.write(f"[{label}]" + raw.decode("utf-8", "replace"))

    def kill_group(self, process: subprocess.Popen) -> None:
        """SIGTERM to the script's process group, SIGKILL to whatever is left after the grace."""
        pgid = process.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        grace_end = self.agent.clock.monotonic() + self.agent.kill_grace_s
        while self.agent.clock.monotonic() < grace_end:
            process.poll()
            if not group_alive(pgid):
                break
            self.agent.clock.sleep(0.05)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _exit_code(returncode: int) -> str:
    return f"{returncode}" if returncode >= 0 else f"{128 - returncode} (signal {-returncode})"


class _ScriptLog:
    """The deployment's scripts.log, plus the tail of the current lifecycle event's output."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None
        self._tail = ""
        self._lock = threading.Lock()

    def start_event(self) -> None:
        with self._lock:
            self._tail = ""

    def write(self, message: str) -> None:
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self._file.write(f"{stamp} {message}")
            self._file.flush()
            self._tail = (self._tail + message)[-SCRIPT_LOG_TAIL_CHARS:]

    def tail(self) -> str:
        with self._lock:
            return self._tail

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

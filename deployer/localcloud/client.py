"""The local cloud as a :class:`deployer.cloud.port.CloudPort`: a client of the supervisor's API.

Every verb starts the supervisor if it is not running (which recovers the environments from
disk), then follows the operation's events until it ends, noticing the end within a fifth of
a second. Every request carries the owner's token, read from ``supervisor.json`` (0600, this
user's own: see :mod:`deployer.localcloud.access`).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from deployer.base import errors
from deployer.base.clock import Clock
from deployer.base.home import check_home, deployer_home
from deployer.base.processes import module_args, pid_alive
from deployer.cloud.port import (
    Artifact,
    CloudPort,
    DeploymentResult,
    EnvironmentView,
    Event,
    Image,
    InstanceView,
    OnEvent,
    StackResult,
    StackStatus,
    TargetHealth,
    raise_if_not_all_removed,
)
from deployer.localcloud.access import INFO_FILE, Readable, Unauthorized, read_info
from deployer.localcloud.operations import OperationStatus
from deployer.localcloud.state import CloudState, ImageState, Store
from deployer.localcloud.supervisor import cloud_dir

POLL_S = 0.2
START_TIMEOUT_S = 60.0


class _Unreachable(Exception):
    """The supervisor did not answer at the transport level."""


# How long a rollback waits for a stack operation it did not start to end (an update's
# batches wait for signals up to their PauseTime, 20 minutes in the shipped stacks).
STACK_OPERATION_TIMEOUT_S = 3 * 3600.0


def is_supervisor_of(pid: int, home: Path) -> bool:
    """Whether ``pid`` is this user's supervisor of ``home`` (not a reused pid, not a stranger)."""
    args = module_args(pid, "deployer.localcloud.supervisor")
    if args is None or "--home" not in args[:-1]:
        return False
    return Path(args[args.index("--home") + 1]).resolve() == home.resolve()


def stack_name(strategy: str) -> str:
    return f"etherpad-{strategy}"


class LocalCloud(CloudPort):
    name = "local"
    fetches_releases_on_this_machine = True  # instances and bakes run here

    def __init__(self, home: Path | None = None, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        # Checked: what the data dir holds (the supervisor's address above all) is trusted.
        self.home = check_home(home) if home else deployer_home()
        self.dir = cloud_dir(self.home)
        self._url: str | None = None
        self._token = ""

    # -- supervisor -------------------------------------------------------------------------
    def supervisor_info(self) -> dict | None:
        """``supervisor.json`` of a live supervisor, or None.

        The file must be this user's own and private (it holds the owner's token, and a URL
        a forged one could point elsewhere): otherwise a one-line :class:`StateError`.
        """
        try:
            info = read_info(self.dir)
        except Readable:
            # Written by an older deployer (0644, no token): fine if its supervisor is gone.
            try:
                info = json.loads((self.dir / INFO_FILE).read_text())
            except (OSError, ValueError):
                return None
            if isinstance(info, dict) and "token" not in info:
                info.pop("url", None)
            else:
                raise
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            return None
        if not is_supervisor_of(info["pid"], self.home):
            return None  # gone, or the pid is now another program's or another user's
        if not isinstance(info.get("url"), str) or not isinstance(info.get("token"), str):
            raise errors.StateError(
                f"a local cloud supervisor from an older deployer runs (pid {info['pid']}) "
                "and takes no credential", hint=f"stop it: kill {info['pid']}")
        return info

    def ensure_supervisor(self) -> str:
        if self._url:
            return self._url
        info = self.supervisor_info()
        if info is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            stale = self.dir / INFO_FILE
            stale.unlink(missing_ok=True)
            log_path = self.dir / "supervisor.log"
            log_file = open(log_path, "ab")
            log_start = log_file.tell()
            proc = subprocess.Popen([sys.executable, "-m", "deployer.localcloud.supervisor",
                                     "--home", str(self.home)], stdin=subprocess.DEVNULL,
                                    stdout=log_file, stderr=log_file, start_new_session=True,
                                    close_fds=True, cwd="/")
            log_file.close()
            deadline = self.clock.monotonic() + START_TIMEOUT_S
            while info is None:
                code = proc.poll()
                if code:  # it died at start: say why now, not after the timeout
                    why = last_line(log_path, log_start).removeprefix(
                        "deployer-supervisor: error: ")
                    raise errors.CloudError(
                        f"the local cloud supervisor did not start: "
                        f"{why or f'exit status {code}'}",
                        hint=f"see {log_path}")
                if self.clock.monotonic() > deadline:
                    raise errors.CloudError(
                        "the local cloud supervisor did not start",
                        hint=f"see {log_path}")
                self.clock.sleep(0.1)
                info = self.supervisor_info()
        self._url = info["url"]
        self._token = info["token"]
        return self._url

    def running(self) -> bool:
        return self.supervisor_info() is not None

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        try:
            return self._call_once(method, path, body)
        except Unauthorized:
            # Another supervisor took over since we read its token (a restart): read again.
            self._url = None
            return self._call_once(method, path, body)
        except _Unreachable:
            # The supervisor went away under us (it exits when its last stack is deleted):
            # start a new one and ask again, once.
            self._wait_gone(timeout=15.0)
            try:
                return self._call_once(method, path, body)
            except _Unreachable as exc:
                raise errors.CloudError(f"cannot reach the local cloud supervisor: {exc}",
                                        hint="run the command again; it restarts the "
                                             "supervisor") from None

    def _wait_gone(self, timeout: float) -> None:
        deadline = self.clock.monotonic() + timeout
        while self.clock.monotonic() < deadline:
            info = read_info(self.dir)
            if info is None or not pid_alive(int(info.get("pid", 0))):
                return
            self.clock.sleep(0.1)

    def _call_once(self, method: str, path: str, body: dict | None = None) -> Any:
        url = self.ensure_supervisor() + path
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self._token}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"{}").get("error", {})
            except (ValueError, AttributeError):
                payload = {"message": f"HTTP {exc.code}"}
            if exc.code == 401:
                raise Unauthorized(payload.get("message", "refused")) from None
            raise remote_error(payload) from None
        except (OSError, http.client.HTTPException) as exc:
            self._url = None
            raise _Unreachable(str(exc)) from None

    def _follow(self, op: dict, stack: str | None, on_event: OnEvent) -> Any:
        seen = op_seen = 0
        if stack and op.get("kind") != "create":
            try:
                seen = max((e["seq"] for e in self._call("GET", f"/stacks/{stack}/events")),
                           default=0)
            except errors.NotFound:
                # A delete of a stack with nothing running (half created) can be over
                # before this first look: the stack is gone already.
                seen = 0
        while True:
            if stack:
                try:
                    events = self._call("GET", f"/stacks/{stack}/events?after={seen}")
                except errors.NotFound:
                    events = []
                for e in events:
                    seen = max(seen, e["seq"])
                    on_event(Event(at=e["at"], source="stack", resource=e["resource"],
                                   status=e["status"], reason=e["reason"]))
            current = self._call("GET", f"/operations/{op['id']}?after={op_seen}")
            for e in current.get("events", []):
                on_event(Event(**e))
            op_seen = current.get("events_total", op_seen)
            if current["status"] != OperationStatus.RUNNING:
                if stack:
                    try:
                        for e in self._call("GET", f"/stacks/{stack}/events?after={seen}"):
                            on_event(Event(at=e["at"], source="stack", resource=e["resource"],
                                           status=e["status"], reason=e["reason"]))
                    except errors.NotFound:
                        pass
                if current["status"] == OperationStatus.FAILED:
                    raise remote_error(current["error"])
                return current["result"]
            self.clock.sleep(POLL_S)

    # -- the port ---------------------------------------------------------------------------
    def state(self) -> CloudState:
        return Store.read(self.dir / "state.json")

    def raw_state(self) -> dict:
        return self._call("GET", "/state")

    def ensure_environment(self, strategy: str, template: Path, parameters: dict[str, str],
                           on_event: OnEvent) -> EnvironmentView:
        view = self.describe_environment(strategy)
        if view is not None:
            status = StackStatus(view.stack_status)
            if status is StackStatus.UPDATE_ROLLBACK_FAILED:
                # The local cloud has no ContinueUpdateRollback: say what does the same.
                raise errors.StateError(
                    f"stack {view.stack_name} is UPDATE_ROLLBACK_FAILED",
                    hint=f"remove it with 'deployer down --strategy {strategy}', then run again")
            if status.usable:
                return view
            if status.half_created:
                # Never an environment, or halfway gone: delete it, then create it anew.
                self.destroy_environment(strategy, on_event)
        op = self._call("POST", "/stacks", {"strategy": strategy, "template": str(template),
                                            "parameters": parameters})
        self._follow(op, stack_name(strategy), on_event)
        view = self.describe_environment(strategy)
        assert view is not None
        return view

    def describe_environment(self, strategy: str) -> EnvironmentView | None:
        if not self.running() and self.state().stack_for(strategy) is None:
            return None  # nothing there: don't start a supervisor just to say so
        state = self.raw_state()
        stack = state["stacks"].get(stack_name(strategy))
        if stack is None:
            return None
        return environment_view(stack, state)

    def destroy_environment(self, strategy: str, on_event: OnEvent) -> None:
        if not self.running() and self.state().stack_for(strategy) is None:
            return
        if self.describe_environment(strategy) is None:
            return
        op = self._call("POST", f"/stacks/{stack_name(strategy)}/delete")
        self._follow(op, stack_name(strategy), on_event)

    def destroy_all(self, on_event: OnEvent) -> None:
        if not self.running() and not self.state().stacks:
            return
        failed: dict[str, Exception] = {}
        removed: list[str] = []
        for name in list(self.raw_state()["stacks"]):
            try:
                op = self._call("POST", f"/stacks/{name}/delete")
                self._follow(op, name, on_event)
                removed.append(name)
            except errors.DeployerError as exc:
                failed[name] = exc
        if not failed:
            self.stop_supervisor()  # a stack left behind keeps its supervisor
        raise_if_not_all_removed(failed, removed)

    def stop_supervisor(self, timeout: float = 30.0) -> None:
        info = self.supervisor_info()
        if info is None:
            return
        try:
            self._call_once("POST", "/shutdown")  # never start a supervisor to stop it
        except (_Unreachable, errors.CloudError):
            pass
        deadline = self.clock.monotonic() + timeout
        while pid_alive(int(info["pid"])) and self.clock.monotonic() < deadline:
            self.clock.sleep(0.1)
        self._url = None

    def update_stack(self, strategy: str, parameters: dict[str, str],
                     on_event: OnEvent) -> StackResult:
        name = stack_name(strategy)
        op = self._call("POST", f"/stacks/{name}/update", {"parameters": parameters})
        try:
            self._follow(op, name, on_event)
        except errors.CloudError:
            raise
        except errors.DeployerError:
            pass  # the stack's final status below says what happened
        stack = self.raw_state()["stacks"][name]
        return StackResult(stack_name=name, status=stack["status"],
                           reason=stack.get("status_reason", ""))

    def wait_for_stack_operation(self, strategy: str, on_event: OnEvent) -> StackResult | None:
        name = stack_name(strategy)
        deadline = self.clock.monotonic() + STACK_OPERATION_TIMEOUT_S
        seen = False
        while True:
            stack = self.raw_state()["stacks"].get(name)
            if stack is None:
                return None
            status = StackStatus(stack["status"])
            if not status.in_progress:
                if not seen:
                    return None
                on_event(Event(at=self.clock.now(), source="stack", resource=name,
                               status=status.value, reason=stack.get("status_reason", "")))
                return StackResult(stack_name=name, status=status,
                                   reason=stack.get("status_reason", ""))
            seen = True
            if self.clock.monotonic() > deadline:
                raise errors.CloudError(f"stack {name} is still {status.value} after "
                                        f"{STACK_OPERATION_TIMEOUT_S:.0f} s")
            self.clock.sleep(0.5)

    def put_artifact(self, strategy: str, key: str, path: Path) -> Artifact:
        bucket = f"{stack_name(strategy)}-artifacts"
        return Artifact(**self._call("POST", "/artifacts", {"bucket": bucket, "key": key,
                                                            "path": str(path)}))

    def deploy_revision(self, strategy: str, revision: Artifact, on_event: OnEvent, *,
                        release: str | None = None,
                        ignore_application_stop_failures: bool = False) -> DeploymentResult:
        op = self._call("POST", "/deployments", {
            "stack": stack_name(strategy), "revision": revision.model_dump(), "release": release,
            "ignore_application_stop_failures": ignore_application_stop_failures})
        result = self._follow(op, stack_name(strategy), on_event)
        return DeploymentResult(**result)

    def build_image(self, template: Path, variables: dict[str, str],
                    on_event: OnEvent) -> Image:
        op = self._call("POST", "/images/build", {"template": str(template),
                                                  "variables": variables})
        return Image(**self._follow(op, None, on_event))

    def list_images(self) -> list[Image]:
        return [Image(image_id=i.image_id, name=i.name, release=i.tags.get("Release"),
                      size_bytes=i.size_bytes, created_at=i.created_at, tags=i.tags)
                for i in self.state().images.values() if i.state is ImageState.AVAILABLE]

    def images_in_use(self) -> set[str]:
        from deployer.localcloud.images.baking import images_in_state

        return images_in_state(self.state())

    def deregister_image(self, image_id: str) -> list[str]:
        # The supervisor checks again under its lock and refuses an image in use.
        self._call("POST", "/images/deregister", {"image_id": image_id})
        return []  # a local image is a directory tree: nothing like snapshots is left over

    def target_health_history(self, strategy: str) -> list[dict]:
        stack = self.raw_state()["stacks"].get(stack_name(strategy)) or {}
        return [{"at": h["at"], "target_id": h["target_id"], "from_state": h["from_state"],
                 "to_state": h["to_state"], "reason": h.get("reason", "")}
                for h in stack.get("health_history", [])]

    def etherpad_api_key(self, strategy: str) -> str | None:
        # Read from the owner's own state file: the key never crosses the supervisor's API.
        record = self.state().stack_for(strategy)
        return record.secrets.get("ETHERPAD_APIKEY") if record is not None else None

    def instance_urls(self, strategy: str) -> dict[str, str]:
        view = self.describe_environment(strategy)
        if view is None:
            return {}
        return {inst.instance_id: f"http://{inst.endpoint}/" for inst in view.instances
                if inst.endpoint and inst.state == "running"
                and inst.target_health in ("healthy", "draining")}

    def target_health(self, strategy: str) -> list[TargetHealth]:
        stack = self.raw_state()["stacks"].get(stack_name(strategy)) or {}
        return [TargetHealth(target_id=tid, state=t["state"], reason=t.get("reason", ""))
                for tid, t in stack.get("targets", {}).items()]


def environment_view(stack: dict, state: dict) -> EnvironmentView:
    instances = []
    for inst in state["instances"].values():
        if inst["stack"] != stack["name"] or inst["state"] == "terminated":
            continue
        target = stack.get("targets", {}).get(inst["instance_id"], {})
        instances.append(InstanceView(
            instance_id=inst["instance_id"], state=inst["state"], image_id=inst["image_id"],
            release=inst["release"], target_health=target.get("state"), pid=inst["pid"],
            endpoint=f"127.0.0.1:{inst['port']}"))
    return EnvironmentView(
        strategy=stack["strategy"], stack_name=stack["name"], stack_status=stack["status"],
        url=stack.get("url"), parameters=stack.get("parameters", {}),
        outputs=stack.get("outputs", {}), instances=instances,
        release=stack.get("parameters", {}).get("EtherpadVersion"))


def last_line(path: Path, offset: int = 0) -> str:
    """The last line ``path`` got after ``offset``, for a one-line error."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            lines = [line.strip() for line in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else ""


def remote_error(payload: dict) -> errors.DeployerError:
    """Rebuild the supervisor's error as the same type on this side."""
    cls = getattr(errors, payload.get("type", ""), None)
    message = payload.get("message", "the local cloud failed")
    if isinstance(cls, type) and issubclass(cls, errors.DeployerError) and cls not in (
            errors.ConfigError, errors.UnsupportedProperty):
        err = cls.__new__(cls)
        errors.DeployerError.__init__(err, message)
        return err
    if cls in (errors.ConfigError, errors.UnsupportedProperty):
        return errors.ConfigError(message)
    return errors.CloudError(f"local cloud: {message}")

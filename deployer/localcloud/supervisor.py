"""The local cloud's supervisor: one process per data dir that runs every environment.

It owns the running parts (load balancers, Auto Scaling groups, instance processes, the
databases, CodeDeploy) and serves a small JSON API on loopback that the CLI (and
``cfn-signal`` on the instances) talk to. Long activities — creating, updating, deleting a
stack, a deployment, an image build — run as operations in threads; clients follow their
events, as one follows CloudFormation stack events.

Started on demand by any CLI command (:func:`deployer.localcloud.client.ensure_supervisor`).
If it is killed (even SIGKILL), the next command starts a new one, which recovers from the
state on disk: instances still running are adopted, lost ones replaced, nothing orphaned.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from deployer.base import errors, logs
from deployer.base.clock import Clock
from deployer.base.fsutil import ForeignFile, open_lock_file
from deployer.base.home import check_home
from deployer.localcloud.artifacts import ArtifactStore
from deployer.localcloud.codedeploy.wiring import LocalCodeDeploy
from deployer.localcloud.compute.instances import ImageStore, InstanceLauncher
from deployer.localcloud.context import CloudContext
from deployer.localcloud.images.baking import build_image_operation, deregister_image
from deployer.localcloud.operations import Operation, Operations, error_payload
from deployer.localcloud.stack import StackRuntime
from deployer.localcloud.state import (
    InstanceState,
    SignalStatus,
    StackRecord,
    StackStatus,
    Store,
)

log = logs.get_logger(component="supervisor")


# A supervisor with nothing to run exits after this long (tests shorten it).
IDLE_EXIT_S = float(os.environ.get("DEPLOYER_SUPERVISOR_IDLE_S", "30"))


def cloud_dir(home: Path) -> Path:
    return home / "localcloud"


class Supervisor:
    """Builds the cloud's shared parts once (a :class:`CloudContext`) and runs the stacks,
    CodeDeploy and image builds on it; none of them sees the supervisor itself."""

    def __init__(self, home: Path, clock: Clock | None = None) -> None:
        self.home = home
        self.dir = cloud_dir(home)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock or Clock()
        self.store = Store(self.dir / "state.json", clock=self.clock)
        self.bin_dir = self.dir / "bin"
        self.artifacts = ArtifactStore(home)
        self.images = ImageStore(home)
        self.stacks: dict[str, StackRuntime] = {}
        self.operations = Operations(self.clock)
        self.server: ThreadingHTTPServer | None = None
        self.ctx: CloudContext | None = None  # built by serve(): the launcher needs our URL
        self.stopping = threading.Event()
        self.codedeploy: LocalCodeDeploy | None = None

    def _context(self, url: str) -> CloudContext:
        launcher = InstanceLauncher(self.home, url, self.bin_dir, clock=self.clock)
        return CloudContext(home=self.home, dir=self.dir, store=self.store, launcher=launcher,
                            images=self.images, artifacts=self.artifacts,
                            operations=self.operations, clock=self.clock)

    @property
    def context(self) -> CloudContext:
        if self.ctx is None:
            raise errors.StateError("the local cloud supervisor is not serving yet")
        return self.ctx

    def _runtime_for(self, record: StackRecord) -> StackRuntime:
        return StackRuntime(self.context, record, codedeploy=self.codedeploy)

    # -- lifecycle --------------------------------------------------------------------------
    def serve(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
        self.server.daemon_threads = True
        url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.ctx = self._context(url)
        write_instance_tools(self.bin_dir)
        self.codedeploy = LocalCodeDeploy(self.ctx, self.stacks.get)
        self.recover()
        (self.dir / "supervisor.json").write_text(json.dumps(
            {"pid": os.getpid(), "url": url, "started_at": self.clock.now()}))
        log.info("supervisor.ready", url=url, pid=os.getpid())
        threading.Thread(target=self._tick, name="tick", daemon=True).start()
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=self.shutdown).start())
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self, stop_stacks: bool = False) -> None:
        """Stop serving. With ``stop_stacks``, every stack is deleted first."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        # Clients that look now start a new supervisor (it waits for our lock to be freed).
        try:
            (self.dir / "supervisor.json").unlink()
        except FileNotFoundError:
            pass
        if stop_stacks:
            for runtime in list(self.stacks.values()):
                runtime.delete()
        else:
            for runtime in self.stacks.values():
                if runtime.lb:
                    runtime.lb.stop()
        if self.server:
            self.server.shutdown()

    def _live_stacks(self) -> set[str]:
        """The stacks that run something.

        A stack whose creation rolled back holds nothing that runs (its resources were torn
        down); like on AWS it stays listed until deleted, but it keeps no process alive.
        """
        return {name for name, runtime in self.stacks.items()
                if runtime.record.status is not StackStatus.ROLLBACK_COMPLETE}

    def _busy(self) -> bool:
        """A live stack or a running operation keeps the supervisor up."""
        return bool(self._live_stacks()) or self.operations.running()

    def _shutdown_if_idle(self) -> None:
        """Exit when no live stack is left and nothing runs: no process stays behind."""
        with self.store.lock:
            if not self._busy():
                self.shutdown()

    def recover(self) -> None:
        for record in list(self.store.state.stacks.values()):
            if record.status is StackStatus.DELETE_COMPLETE:
                continue
            runtime = self._runtime_for(record)
            self.stacks[record.name] = runtime
            if record.status is StackStatus.ROLLBACK_COMPLETE:
                continue  # listed until deleted, as on AWS; nothing of it runs
            try:
                runtime.recover()
            except errors.DeployerError as exc:
                log.error("stack.recover_failed", stack=record.name, reason=str(exc))
        # Instances of stacks that no longer exist, or hold nothing, must not survive us.
        live = self._live_stacks()
        for inst in self.store.state.instances.values():
            if inst.stack not in live and inst.state is not InstanceState.TERMINATED:
                self.context.launcher.terminate(inst, grace_s=2.0)
        self.store.save()

    def _tick(self) -> None:
        clock = self.clock
        idle_since = clock.monotonic()
        while not clock.wait(self.stopping, 1.0):
            self.context.launcher.reap()
            if self._busy():
                idle_since = clock.monotonic()
            elif clock.monotonic() - idle_since > IDLE_EXIT_S:
                self._shutdown_if_idle()
            for runtime in list(self.stacks.values()):
                if self.operations.busy(runtime.record.name):
                    continue
                try:
                    for group in runtime.groups.values():
                        group.check_health()
                    runtime.ensure_capacity()
                except Exception as exc:  # keep the supervisor alive; the log says why
                    log.error("tick.failed", stack=runtime.record.name, reason=str(exc))

    def start_operation(self, kind: str, stack: str | None, fn) -> Operation:
        return self.operations.start(kind, stack, fn)

    def create_stack(self, strategy: str, template: str, parameters: dict[str, str]) -> Operation:
        name = f"etherpad-{strategy}"
        existing = self.store.state.stacks.get(name)
        if existing and existing.status not in (StackStatus.DELETE_COMPLETE,
                                                StackStatus.ROLLBACK_COMPLETE):
            raise errors.StateError(f"stack {name} already exists ({existing.status.value})",
                                    hint="use 'deployer down' first, or release into it")
        record = StackRecord(name=name, strategy=strategy, template=template,
                             status=StackStatus.CREATE_IN_PROGRESS, parameters=parameters)
        with self.store.lock:
            self.store.state.stacks[name] = record
            self.store.save()
        runtime = self._runtime_for(record)
        self.stacks[name] = runtime
        return self.start_operation("create", name, runtime.create)

    def runtime(self, name: str) -> StackRuntime:
        runtime = self.stacks.get(name)
        if runtime is None:
            raise errors.NotFound(f"stack {name} does not exist",
                                  hint="create it with 'deployer up --strategy ...'")
        return runtime

    def update_stack(self, name: str, parameters: dict[str, str]) -> Operation:
        runtime = self.runtime(name)
        if runtime.record.status.in_progress:
            raise errors.LockedError(f"stack {name} is in {runtime.record.status.value}",
                                     hint="wait for the running operation to finish")
        merged, model = runtime.plan_update(parameters)
        return self.start_operation("update", name, lambda: runtime.update(merged, model))

    def delete_stack(self, name: str) -> Operation:
        runtime = self.runtime(name)

        def delete() -> None:
            runtime.delete()
            with self.store.lock:
                self.store.state.stacks.pop(name, None)
                for iid in [i for i, r in self.store.state.instances.items() if r.stack == name]:
                    del self.store.state.instances[iid]
                self.store.save()
            self.stacks.pop(name, None)
            if not self._busy():
                # Nothing left to run: leave no process behind.
                threading.Timer(0.5, self._shutdown_if_idle).start()

        return self.start_operation("delete", name, delete)

    def signal(self, payload: dict) -> dict:
        """cfn-signal from an instance: SUCCESS or FAILURE for the instance's resource."""
        instance_id = payload.get("instance_id", "")
        with self.store.lock:
            record = self.store.state.instances.get(instance_id)
            if record is None:
                raise errors.NotFound(f"instance {instance_id} is not known to the local cloud")
            stack = self.store.state.stacks.get(record.stack)
            if payload.get("stack") and stack and payload["stack"] != stack.name:
                raise errors.NotFound(f"stack {payload['stack']} does not exist")
            if payload.get("resource") and payload["resource"] != record.group:
                raise errors.NotFound(f"resource {payload['resource']} is not in stack "
                                      f"{record.stack}")
            record.signal = (SignalStatus.SUCCESS if int(payload.get("exit_code", 0)) == 0
                             else SignalStatus.FAILURE)
            self.store.save()
        if stack:
            reason = f"Received {record.signal.value} signal with UniqueId {instance_id}"
            if record.signal is SignalStatus.FAILURE:
                # What an operator would read in the instance's console output.
                tail = output_tail(Path(record.root))
                reason += f"; cloud-init-output.log ends: {tail}" if tail else ""
                record.signal_reason = tail
            self.store.add_event(stack, record.group, "AWS::AutoScaling::AutoScalingGroup",
                                 "SIGNAL_RECEIVED", reason)
        return {"ok": True}

    def describe_target_health(self, arn: str, ids: list[str]) -> dict:
        """elbv2 DescribeTargetHealth for a target group of a stack (by its physical id)."""
        for runtime in self.stacks.values():
            model = runtime.model
            if runtime.lb is None or model is None:
                continue
            names = {f"{runtime.record.name}-{logical}" for logical in model.target_groups}
            names |= {spec.name for spec in model.target_groups.values()}
            if arn not in names:
                continue
            states = runtime.lb.states()
            wanted = ids or list(states)
            return {"TargetHealthDescriptions": [
                {"Target": {"Id": tid, "Port": states[tid].port if tid in states else None},
                 "TargetHealth": ({"State": states[tid].state.value, "Reason": states[tid].reason,
                                   "Description": states[tid].description}
                                  if tid in states else
                                  {"State": "unused", "Reason": "Target.NotRegistered"})}
                for tid in wanted]}
        raise errors.NotFound(f"Target groups '{arn}' not found")

    # -- views ------------------------------------------------------------------------------
    def view(self) -> dict:
        with self.store.lock:
            state = json.loads(self.store.state.model_dump_json())
        for stack in state["stacks"].values():
            mask_secrets(stack)
        for name, runtime in self.stacks.items():
            stack = state["stacks"].get(name)
            if stack is None:
                continue
            stack["url"] = runtime.lb.url if runtime.lb else None
            stack["targets"] = {tid: {"state": str(t.state.value), "reason": t.reason}
                                for tid, t in runtime.lb.states().items()} if runtime.lb else {}
            history = runtime.lb.history() if runtime.lb else []
            stack["health_history"] = [h.model_dump(mode="json") for h in history[-500:]]
        state["supervisor"] = {"pid": os.getpid()}
        state["operations"] = self.operations.views()
        return state


def mask_secrets(stack: dict) -> None:
    """A stack as the API shows it, like describe-stacks: what it generated stays in the
    cloud, NoEcho parameters (current and previous) and the database password are masked."""
    stack.pop("secrets", None)
    for field in ("parameters", "previous_parameters"):
        for key in stack.get("noecho", []):
            if key in stack.get(field, {}):
                stack[field][key] = "****"
    stack["database"] = {k: ("****" if k == "password" else v)
                         for k, v in stack.get("database", {}).items()}


def output_tail(root: Path, lines: int = 4) -> str:
    log_file = root / "var/log/cloud-init-output.log"
    try:
        text = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    useful = [line.strip() for line in text if line.strip() and "Cloud-init:" not in line]
    return " | ".join(useful[-lines:])


def write_instance_tools(bin_dir: Path) -> None:
    """Put ``cfn-signal`` on the instances' PATH: it signals this supervisor."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, module in (("cfn-signal", "cfn_signal"), ("aws", "aws_cli")):
        tool = bin_dir / name
        tool.write_text(f"#!{sys.executable}\nfrom deployer.localcloud.tools.{module} import main\n"
                        "main()\n")
        tool.chmod(0o755)


def make_handler(sup: Supervisor):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}") if length else {}

        def _dispatch(self, method: str) -> None:
            path = self.path.split("?", 1)[0].strip("/").split("/")
            try:
                payload = route(sup, method, path, self._body() if method != "GET" else {},
                                self.path)
                self._send(200, payload)
            except errors.DeployerError as exc:
                status = 404 if isinstance(exc, errors.NotFound) else 409 if isinstance(
                    exc, errors.StateError) else 400
                self._send(status, {"error": error_payload(exc)})
            except Exception as exc:
                log.error("api.failed", path=self.path, reason=repr(exc))
                self._send(500, {"error": error_payload(exc)})

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

    return Handler


def route(sup: Supervisor, method: str, path: list[str], body: dict, raw: str) -> Any:
    match method, path:
        case "GET", ["health"]:
            return {"ok": True, "pid": os.getpid()}
        case "GET", ["state"]:
            return sup.view()
        case "GET", ["operations", op_id]:
            op = sup.operations.get(op_id)
            if op is None:
                raise errors.NotFound(f"operation {op_id} is not known")
            after = int(raw.split("after=", 1)[1]) if "after=" in raw else 0
            return op.view(after)
        case "GET", ["stacks", name, "events"]:
            after = int(raw.split("after=", 1)[1]) if "after=" in raw else 0
            record = sup.store.state.stacks.get(name)
            if record is None:
                raise errors.NotFound(f"stack {name} does not exist")
            return [e.model_dump() for e in record.events if e.seq > after]
        case "GET", ["target-health"]:
            from urllib.parse import parse_qs, urlsplit

            query = parse_qs(urlsplit(raw).query)
            return sup.describe_target_health(query.get("arn", [""])[0],
                                              [i for i in query.get("ids", [""])[0].split(",")
                                               if i])
        case "POST", ["stacks"]:
            return sup.create_stack(body["strategy"], body["template"], body["parameters"]).view()
        case "POST", ["stacks", name, "update"]:
            return sup.update_stack(name, body["parameters"]).view()
        case "POST", ["stacks", name, "delete"]:
            return sup.delete_stack(name).view()
        case "POST", ["signal"]:
            return sup.signal(body)
        case "POST", ["artifacts"]:
            artifact = sup.artifacts.put(body["bucket"], body["key"], Path(body["path"]))
            return artifact.model_dump()
        case "POST", ["deployments"]:
            if sup.codedeploy is None:
                raise errors.CloudError("CodeDeploy is not available in this local cloud")
            return sup.codedeploy.start_deployment(body).view()
        case "POST", ["images", "build"]:
            return build_image_operation(sup.context, body).view()
        case "POST", ["images", "deregister"]:
            return deregister_image(sup.context, body["image_id"])
        case "POST", ["shutdown"]:
            threading.Thread(target=sup.shutdown, kwargs={"stop_stacks": bool(
                body.get("delete_stacks"))}).start()
            return {"ok": True}
    raise errors.NotFound(f"no such API: {method} /{'/'.join(path)}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="deployer-supervisor")
    parser.add_argument("--home", required=True)
    args = parser.parse_args()
    home = Path(args.home)
    try:
        check_home(home)
        cloud_dir(home).mkdir(mode=0o700, parents=True, exist_ok=True)
        # One supervisor per data dir: the lock is held for the process's whole life.
        lock_file = open(open_lock_file(cloud_dir(home) / "supervisor.lock"), "w")
    except (errors.DeployerError, ForeignFile) as exc:
        print(f"deployer-supervisor: {exc}", file=sys.stderr)
        sys.exit(1)
    logs.configure("json")
    # A supervisor that is shutting down holds the lock for a moment: wait for the handover.
    clock = Clock()
    deadline = clock.monotonic() + 30.0
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if clock.monotonic() > deadline:
                print("another supervisor is running for this data dir", file=sys.stderr)
                sys.exit(0)
            clock.sleep(0.1)
    Supervisor(home, clock).serve()


if __name__ == "__main__":
    main()

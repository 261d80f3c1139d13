"""The local cloud's supervisor: one process per data dir that runs every environment.

It owns the running parts (load balancers, Auto Scaling groups, instance processes, the
databases, CodeDeploy) and serves a small JSON API on loopback that the CLI (and
``cfn-signal`` on the instances) talk to. Every request carries a credential: the owner's
token, or an instance's narrow one (:mod:`deployer.localcloud.access`); every name in it is
checked (:mod:`deployer.localcloud.names`). Long activities — creating, updating, deleting a
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
from urllib.parse import parse_qs, urlsplit

from deployer.base import errors, logs
from deployer.base.clock import Clock
from deployer.base.fsutil import open_lock_file
from deployer.base.home import check_home
from deployer.localcloud import names
from deployer.localcloud.access import (
    BadRequest,
    Caller,
    Credentials,
    Forbidden,
    Unauthorized,
    status_of,
    write_info,
)
from deployer.localcloud.artifacts import ArtifactStore
from deployer.localcloud.codedeploy.wiring import LocalCodeDeploy
from deployer.localcloud.compute.instances import ImageStore, InstanceLauncher
from deployer.localcloud.context import CloudContext
from deployer.localcloud.images.baking import build_image_operation, deregister_image
from deployer.localcloud.operations import Operation, Operations, error_payload, internal_error
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
# Requests are small JSON documents: a larger body is refused before it is read.
MAX_BODY = 1 << 20
# A client that stops sending (a body shorter than its Content-Length, an idle keep-alive
# connection) frees its handler thread after this long.
REQUEST_TIMEOUT_S = 10.0


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
        self.credentials = Credentials.for_cloud(self.dir)
        self.port = 0  # the API's, once serve() has bound it

    def _context(self, url: str) -> CloudContext:
        launcher = InstanceLauncher(self.home, url, self.bin_dir, clock=self.clock,
                                    credential=self.credentials.instance_token)
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
        self.port = self.server.server_address[1]
        url = f"http://127.0.0.1:{self.port}"
        self.ctx = self._context(url)
        write_instance_tools(self.bin_dir)
        self.codedeploy = LocalCodeDeploy(self.ctx, self.stacks.get)
        self.recover()
        # The owner's token goes with the URL, readable by this user only (0600).
        write_info(self.dir, {"pid": os.getpid(), "url": url, "started_at": self.clock.now(),
                              "token": self.credentials.owner_token})
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
                if runtime.record.status is not StackStatus.ROLLBACK_COMPLETE
                and not runtime.record.status.half_created}

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
            if record.status is StackStatus.ROLLBACK_COMPLETE or record.status.half_created:
                # Listed until deleted, as on AWS; nothing of it runs (REVIEW_IN_PROGRESS,
                # ROLLBACK_FAILED, DELETE_FAILED and CREATE_FAILED stacks are no environment).
                continue
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
        name = f"etherpad-{names.strategy(strategy)}"
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
        if not runtime.record.status.usable:
            strategy = runtime.record.strategy
            raise errors.StateError(f"stack {name} is {runtime.record.status.value}: not an "
                                    "environment to release on",
                                    hint=f"'deployer up --strategy {strategy} --version "
                                         "VERSION' recreates it")
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
        instance_id = names.instance_id(payload.get("instance_id"))
        if payload.get("stack") is not None:
            names.stack(payload["stack"])
        if payload.get("resource") is not None:
            names.logical_id(payload["resource"])
        exit_code = payload.get("exit_code", 0)
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            raise errors.UsageError("exit_code must be an integer")
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
            record.signal = (SignalStatus.SUCCESS if exit_code == 0 else SignalStatus.FAILURE)
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

    def describe_target_health(self, arn: str, ids: list[str],
                               stack: str | None = None) -> dict:
        """elbv2 DescribeTargetHealth for a target group of a stack (by its physical id);
        with ``stack``, only that stack's target groups are looked at."""
        for runtime in self.stacks.values():
            if stack is not None and runtime.record.name != stack:
                continue
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
        timeout = REQUEST_TIMEOUT_S  # the socket's: a silent client frees its thread

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, payload: Any, close: bool = False) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="deployer local cloud"')
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            try:
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client hung up first: nothing to tell it
                self.close_connection = True

        def _check_origin(self) -> None:
            """Only this machine's own clients: no browser, no DNS rebinding."""
            host = self.headers.get("Host", "")
            if host not in (f"127.0.0.1:{sup.port}", f"localhost:{sup.port}"):
                raise BadRequest(400, f"Host {host[:80]!r} is not this supervisor's")
            # A browser says where a page came from; deployer's clients never do.
            if self.headers.get("Origin") is not None or \
                    self.headers.get("Sec-Fetch-Site") is not None:
                raise Forbidden("the local cloud API does not answer browsers")

        def _body(self) -> dict:
            if self.headers.get("Transfer-Encoding") is not None:
                raise BadRequest(411, "send the body with a Content-Length, not chunked")
            ctype = self.headers.get("Content-Type", "")
            if ctype.split(";", 1)[0].strip().lower() != "application/json":
                raise BadRequest(415, "the body must be JSON (Content-Type: application/json)")
            length = self.headers.get("Content-Length")
            if length is None:
                raise BadRequest(411, "a POST needs a Content-Length")
            if not length.isdigit() or len(length) > 18:
                raise BadRequest(400, f"Content-Length {length[:20]!r} is not a size")
            size = int(length)
            if size > MAX_BODY:
                raise BadRequest(413, f"the body is {size} bytes, more than {MAX_BODY}")
            try:
                data = self.rfile.read(size)
            except TimeoutError:
                raise BadRequest(408, "the body did not come in time") from None
            if len(data) < size:
                raise BadRequest(400, "the body ended before its Content-Length")
            if not data:
                return {}
            try:
                body = json.loads(data)
            except (ValueError, RecursionError):
                raise BadRequest(400, "the body is not JSON") from None
            if not isinstance(body, dict):
                raise BadRequest(400, "the body must be a JSON object")
            return body

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            path = url.path.strip("/").split("/")
            try:
                self._check_origin()
                caller = sup.credentials.caller(self.headers.get("Authorization"))
                body = self._body() if method == "POST" else {}
                payload = route(sup, caller, method, path, body, parse_qs(url.query))
                self._send(200, payload)
            except BadRequest as exc:
                # The body may be unread: nothing more can be read from this connection.
                self._send(exc.status, {"error": error_payload(exc)}, close=True)
            except errors.DeployerError as exc:
                self._send(status_of(exc), {"error": error_payload(exc)},
                           close=isinstance(exc, Unauthorized | Forbidden))
            except Exception as exc:
                log.exception("api.failed", path=url.path, reason=repr(exc))
                self._send(500, {"error": internal_error(exc)}, close=True)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

    return Handler


def _query(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def route_instance(sup: Supervisor, caller: Caller, method: str, path: list[str], body: dict,
                   query: dict[str, list[str]]) -> Any:
    """What an instance's credential allows: its own signal, its own stack's target health."""
    assert caller.instance_id is not None
    with sup.store.lock:
        record = sup.store.state.instances.get(caller.instance_id)
    if record is None:
        raise Forbidden(f"instance {caller.instance_id} is not known to the local cloud")
    match method, path:
        case "POST", ["signal"]:
            if body.get("instance_id", caller.instance_id) != caller.instance_id:
                raise Forbidden(f"instance {caller.instance_id} may signal only for itself")
            return sup.signal({**body, "instance_id": caller.instance_id})
        case "GET", ["target-health"]:
            return sup.describe_target_health(
                names.target_group(_query(query, "arn") or ""),
                [names.instance_id(i) for i in (_query(query, "ids") or "").split(",") if i],
                stack=record.stack)
        case "GET", ["health"]:
            return {"ok": True}
    raise Forbidden(f"an instance's credential does not allow {method} /{'/'.join(path)}",
                    hint="only the local cloud's owner may")


def route(sup: Supervisor, caller: Caller, method: str, path: list[str], body: dict,
          query: dict[str, list[str]]) -> Any:
    if not caller.owner:
        return route_instance(sup, caller, method, path, body, query)
    match method, path:
        case "GET", ["health"]:
            return {"ok": True, "pid": os.getpid()}
        case "GET", ["state"]:
            return sup.view()
        case "GET", ["operations", op_id]:
            op = sup.operations.get(names.operation_id(op_id))
            if op is None:
                raise errors.NotFound(f"operation {op_id} is not known")
            return op.view(names.counter(_query(query, "after")))
        case "GET", ["stacks", name, "events"]:
            after = names.counter(_query(query, "after"))
            record = sup.store.state.stacks.get(names.stack(name))
            if record is None:
                raise errors.NotFound(f"stack {name} does not exist")
            return [e.model_dump() for e in record.events if e.seq > after]
        case "GET", ["target-health"]:
            return sup.describe_target_health(
                names.target_group(_query(query, "arn") or ""),
                [names.instance_id(i) for i in (_query(query, "ids") or "").split(",") if i])
        case "POST", ["stacks"]:
            return sup.create_stack(
                names.strategy(body.get("strategy")),
                str(names.template_path(body.get("template"))),
                names.string_map(body.get("parameters"), "parameter")).view()
        case "POST", ["stacks", name, "update"]:
            return sup.update_stack(names.stack(name),
                                    names.string_map(body.get("parameters"), "parameter")).view()
        case "POST", ["stacks", name, "delete"]:
            return sup.delete_stack(names.stack(name)).view()
        case "POST", ["signal"]:
            return sup.signal(body)
        case "POST", ["artifacts"]:
            artifact = sup.artifacts.put(names.bucket(body.get("bucket")),
                                         names.key(body.get("key")),
                                         names.upload_path(body.get("path")))
            return artifact.model_dump()
        case "POST", ["deployments"]:
            if sup.codedeploy is None:
                raise errors.CloudError("CodeDeploy is not available in this local cloud")
            return sup.codedeploy.start_deployment(names.deployment(body)).view()
        case "POST", ["images", "build"]:
            return build_image_operation(sup.context, {
                "template": str(names.template_path(body.get("template"))),
                "variables": names.string_map(body.get("variables"), "variable",
                                              names.VARIABLE)}).view()
        case "POST", ["images", "deregister"]:
            return deregister_image(sup.context, names.image_id(body.get("image_id")))
        case "POST", ["shutdown"]:
            threading.Thread(target=sup.shutdown, kwargs={"stop_stacks": bool(
                body.get("delete_stacks"))}).start()
            return {"ok": True}
    raise errors.NotFound(f"no such API: {method} /{'/'.join(path)[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="deployer-supervisor")
    parser.add_argument("--home", required=True)
    home = Path(parser.parse_args().home)
    logs.configure("json")
    clock = Clock()
    try:
        # One supervisor per data dir (checked first): the lock is held for the process's
        # whole life. One shutting down holds it for a moment: wait for the handover.
        lock_file = open(open_lock_file(cloud_dir(check_home(home)) / "supervisor.lock"), "w")
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
    except errors.DeployerError as exc:
        # One line the client shows (it reads the log's last line): a corrupt state file,
        # a key file or lock file someone else owns, a data dir others may write.
        print(f"deployer-supervisor: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

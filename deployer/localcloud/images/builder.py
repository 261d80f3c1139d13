"""The local cloud's ``packer build``: the template's provisioners, run on a build host.

A build host stands in for the temporary EC2 instance Packer launches from ``source_ami``:
a directory tree (``root``) with an environment, on which commands run. Its root stands for
``/``: every absolute path the template names on the host (file destinations, where
scripts are uploaded) lands under ``root``, so ``/tmp/x`` is ``root/tmp/x``. Paths the
scripts compute themselves come from the host's environment (the local cloud sets
``ETHERPAD_HOME`` under the root; on AWS the scripts' defaults apply), which is why the
template passes no absolute paths in ``environment_vars``.

The provisioners run as Packer runs them: in order, for the build's source (``only`` /
``except`` honoured); shell ``inline`` commands become one script starting with the
``inline_shebang`` (``/bin/sh -e``), ``script``/``scripts`` are uploaded then executed with
the ``execute_command`` (``{{.Vars}}`` and ``{{.Path}}`` rendered as Packer renders them);
the first provisioner that fails fails the build with :class:`BuildFailed`, so no image is
registered from a half-provisioned host. ``sudo`` in an execute_command runs the command
as the build host's user: on the local cloud that user already owns everything under root.

After the caller registers the image, :meth:`LocalImageBuilder.write_manifest` writes the
manifest post-processor's file exactly as Packer would, so the same reader serves both
clouds.
"""

from __future__ import annotations

import getpass
import random
import re
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from deployer.base import logs
from deployer.base.errors import CloudError, UnsupportedProperty
from deployer.cloud.port import Event
from deployer.packer.manifest import ManifestBuild, write_manifest
from deployer.packer.model import (
    Build,
    FileProvisioner,
    OtherProvisioner,
    PackerTemplate,
    ShellProvisioner,
)

log = logs.get_logger(component="imagebuilder")

LAST_LINES = 20
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_TEMPLATE_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
_BUILD_VARIABLE = re.compile(r"\$\{build\.(\w+)\}")
# sudo on the build host: options a provisioning command uses are accepted and the
# command runs as the host's user, who owns the host's whole root on the local cloud.
_SUDO_SHIM = """#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    -E|-H|-n|-S|-i|--preserve-env|--non-interactive|--stdin) shift ;;
    -u|--user) shift 2 ;;
    --) shift; break ;;
    -*) echo "sudo (local build host): unsupported option $1" >&2; exit 1 ;;
    *) break ;;
  esac
done
exec "$@"
"""



def _fill_fields(text: str, fields: dict[str, str]) -> str:
    """``{{.Path}}``-style fields of an execute_command; unknown ones are left as written."""
    return _TEMPLATE_FIELD.sub(lambda m: fields.get(m.group(1), m.group(0)), text)

class BuildHost(Protocol):
    """The temporary machine an image is provisioned on."""

    root: Path  # the build instance's root directory: "/" for the template's paths
    env: dict[str, str]  # its environment (ETHERPAD_HOME etc. come from here)

    def run(self, argv: list[str], env: dict[str, str], log: Callable[[str], None]) -> int:
        """Run a command on the host (cwd root), streaming output lines to ``log``."""
        ...


class BuildFailed(CloudError):
    """A provisioner failed: the image must not be registered."""

    def __init__(self, index: int, type_: str, reason: str, *, exit_code: int | None = None,
                 last_lines: list[str] | None = None) -> None:
        self.index = index
        self.provisioner_type = type_
        self.exit_code = exit_code
        self.last_lines = list(last_lines or [])
        message = f"image build failed in provisioner {index} ({type_}): {reason}"
        if exit_code is not None:
            message += f" (exit code {exit_code})"
        if self.last_lines:
            message += "; last output: " + " | ".join(self.last_lines[-5:])
        super().__init__(message, hint="fix the provisioner or its script; no image was registered")


class ProvisionerState(Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class ProvisionerRun(BaseModel):
    """What happened to one provisioner, for reports."""

    index: int
    type: str
    state: ProvisionerState = ProvisionerState.PENDING
    started_at: float | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    attempts: int = 0


def go_duration(text: str | None) -> float:
    """Seconds in a Go duration string (``10s``, ``1m30s``, ``500ms``)."""
    if not text:
        return 0.0
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r}")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def flattened_vars(env: dict[str, str], env_var_format: str = "%s='%s' ") -> str:
    """``{{.Vars}}``: sorted ``KEY='value' `` pairs, single quotes escaped for sh, as Packer."""
    try:
        return "".join(env_var_format % (key, env[key].replace("'", "'\"'\"'"))
                       for key in sorted(env))
    except (TypeError, ValueError) as err:
        raise ValueError(f"env_var_format {env_var_format!r} needs two %s") from err


class _Output:
    """A provisioner's output: to the build log, to the caller, and its last lines kept."""

    def __init__(self, run: ProvisionerRun, log_file,
                 forward: Callable[[str], None] | None) -> None:
        self.prefix = f"provisioner {run.index} ({run.type}): "
        self.log_file = log_file
        self.forward = forward
        self.lines: deque[str] = deque(maxlen=LAST_LINES)

    def __call__(self, line: str) -> None:
        line = line.rstrip("\n")
        self.lines.append(line)
        self.log_file.write(self.prefix + line + "\n")
        self.log_file.flush()
        if self.forward:
            self.forward(line)


class LocalImageBuilder:
    """Runs one build of a Packer template on a local build host."""

    def __init__(self, template: PackerTemplate, work_dir: Path, on_event: Callable[[Event], None],
                 *, build_name: str | None = None, run_uuid: str | None = None,
                 on_output: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.template = template
        self.work_dir = Path(work_dir).absolute()  # commands run with cwd at the host root
        self.on_event = on_event
        self.on_output = on_output
        self.clock = clock
        self.sleep = sleep
        self.build = self._pick_build(build_name)
        # The local cloud stands in for the build's first source (amazon-ebs.etherpad).
        self.source = template.source(self.build.sources[0])
        self.run_uuid = run_uuid or str(uuid.uuid4())
        self.runs = [ProvisionerRun(index=p.index, type=p.type) for p in self.build.provisioners]
        self._check_supported()

    # -- set-up ---------------------------------------------------------------------------
    def _pick_build(self, name: str | None) -> Build:
        if name is None:
            return self.template.builds[0]
        for build in self.template.builds:
            if build.name == name:
                return build
        raise CloudError(f"template {self.template.path} has no build named {name!r}")

    def _check_supported(self) -> None:
        """Refuse up front what the local build host cannot do, before anything runs."""
        for p in self.build.provisioners:
            if not p.applies_to(self.source.key):
                continue
            where = str(self.template.path)
            if isinstance(p, OtherProvisioner):
                raise UnsupportedProperty(f"provisioner {p.index}", p.type, location=where,
                                          why="the local build host runs shell and file "
                                              "provisioners")
            if p.timeout:
                raise UnsupportedProperty(f"provisioner {p.index} ({p.type})", "timeout",
                                          location=where,
                                          why="a build host command cannot be interrupted")
            try:
                go_duration(p.pause_before)
            except ValueError as err:
                raise UnsupportedProperty(f"provisioner {p.index} ({p.type})", "pause_before",
                                          location=where, why=str(err)) from err
            if isinstance(p, FileProvisioner) and p.direction == "download" \
                    and p.content is not None:
                raise UnsupportedProperty(f"provisioner {p.index} (file)", "content",
                                          location=where)

    @property
    def build_variables(self) -> dict[str, str]:
        """``${build.X}`` values known on the local cloud."""
        return {"ID": f"local-{self.run_uuid[:8]}", "PackerRunUUID": self.run_uuid,
                "Host": "127.0.0.1", "Port": "22", "User": getpass.getuser(),
                "ConnType": "ssh"}

    # -- events and output ----------------------------------------------------------------
    def _emit(self, run: ProvisionerRun, status: str, reason: str = "") -> None:
        self.on_event(Event(at=self.clock(), source="image",
                            resource=f"provisioner {run.index} ({run.type})",
                            status=status, reason=reason))

    # -- the build ------------------------------------------------------------------------
    def provision(self, host: BuildHost) -> None:
        """Run every provisioner in order; the first failure raises :class:`BuildFailed`."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (host.root / "tmp").mkdir(parents=True, exist_ok=True)  # a machine always has /tmp
        build_log = self.work_dir / "build.log"
        with build_log.open("a") as log_file:
            for provisioner, run in zip(self.build.provisioners, self.runs, strict=False):
                if not provisioner.applies_to(self.source.key):
                    run.state = ProvisionerState.SKIPPED
                    self._emit(run, "skipped", f"not for {self.source.key}")
                    continue
                self._provision_one(provisioner, run, host, log_file)

    def _provision_one(self, provisioner, run: ProvisionerRun, host: BuildHost, log_file) -> None:
        pause = go_duration(provisioner.pause_before)
        if pause:
            self.sleep(pause)
        run.state = ProvisionerState.RUNNING
        run.started_at = self.clock()
        self._emit(run, "started")
        output = _Output(run, log_file, self.on_output)

        failure: BuildFailed | None = None
        for attempt in range(provisioner.max_retries + 1):
            run.attempts = attempt + 1
            try:
                if isinstance(provisioner, ShellProvisioner):
                    run.exit_code = self._shell(provisioner, host, output)
                else:
                    self._file(provisioner, host)
                failure = None
                break
            except BuildFailed as err:
                failure = err
                if attempt < provisioner.max_retries:
                    output(f"retrying after: {err.message}")
        run.duration_s = self.clock() - run.started_at
        if failure is not None:
            run.state = ProvisionerState.FAILED
            run.exit_code = failure.exit_code
            self._emit(run, "failed", f"{failure.message} after {run.duration_s:.1f} s")
            raise failure
        run.state = ProvisionerState.SUCCEEDED
        self._emit(run, "succeeded", f"{run.duration_s:.1f} s")

    # -- paths ----------------------------------------------------------------------------
    def host_path(self, host: BuildHost, remote: str) -> Path:
        """Where a path on the build host lives locally: ``/x`` is ``host.root/x``."""
        root = host.root.resolve()
        target = (root / remote.lstrip("/")).resolve()
        if target != root and root not in target.parents:
            raise CloudError(f"path {remote!r} leaves the build host's root")
        return target

    def local_path(self, path: str) -> Path:
        """A path on this machine; relative ones from the template's folder, where Packer runs."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.template.directory / candidate

    def _fill_build_variables(self, text: str, p) -> str:
        known = self.build_variables

        def value(match: re.Match[str]) -> str:
            if match.group(1) not in known:
                raise BuildFailed(p.index, p.type, f"${{build.{match.group(1)}}} is not known on "
                                  f"the local cloud (known: {', '.join(sorted(known))})")
            return known[match.group(1)]
        return _BUILD_VARIABLE.sub(value, text)

    # -- shell ----------------------------------------------------------------------------
    def _shell(self, p: ShellProvisioner, host: BuildHost, output: _Output) -> int:
        remote_file = p.remote_file or f"script_{random.randrange(10000)}.sh"
        remote_path = p.remote_path or f"{p.remote_folder.rstrip('/')}/{remote_file}"
        target = self.host_path(host, remote_path)
        if not target.parent.is_dir():
            raise BuildFailed(p.index, p.type, f"remote folder {Path(remote_path).parent} does not "
                              "exist on the build host")
        env = {"PACKER_BUILDER_TYPE": self.source.type, "PACKER_BUILD_NAME": self.source.name}
        env.update({k: self._fill_build_variables(v, p) for k, v in p.environment.items()})
        command_env = dict(host.env)
        command_env["PATH"] = f"{self._tools_dir()}:{host.env.get('PATH', '/usr/bin:/bin')}"

        if p.inline is not None:
            scripts = [self._inline_script(p)]
        else:
            scripts = [self.local_path(s) for s in p.script_paths]
        code = 0
        for script in scripts:
            if not script.is_file():
                raise BuildFailed(p.index, p.type, f"script {script} does not exist")
            shutil.copyfile(script, target)
            try:
                fields = {"Path": str(target), "Vars": flattened_vars(env, p.env_var_format)}
            except ValueError as err:
                raise BuildFailed(p.index, p.type, str(err)) from err
            command = _fill_fields(p.execute_command, fields)
            unknown = _TEMPLATE_FIELD.findall(command)
            if unknown:
                raise BuildFailed(p.index, p.type, f"execute_command uses {{{{.{unknown[0]}}}}}, "
                                  "which Packer's shell provisioner does not define")
            output(f"running {script.name} as {remote_path}")
            code = host.run(["/bin/sh", "-c", command], command_env, output)
            if not p.skip_clean:
                target.unlink(missing_ok=True)
            if code not in p.valid_exit_codes:
                raise BuildFailed(p.index, p.type, f"script {script.name} failed",
                                  exit_code=code, last_lines=list(output.lines))
        return code

    def _inline_script(self, p: ShellProvisioner) -> Path:
        lines = [self._fill_build_variables(line, p) for line in p.inline or []]
        script = self.work_dir / f"inline-{p.index}.sh"
        script.write_text(f"#!{p.inline_shebang}\n" + "".join(f"{line}\n" for line in lines))
        return script

    def _tools_dir(self) -> Path:
        tools = self.work_dir / "host-bin"
        tools.mkdir(parents=True, exist_ok=True)
        sudo = tools / "sudo"
        if not sudo.exists():
            sudo.write_text(_SUDO_SHIM)
            sudo.chmod(0o755)
        return tools

    # -- file -----------------------------------------------------------------------------
    def _file(self, p: FileProvisioner, host: BuildHost) -> None:
        if p.direction == "download":
            for source in p.source_paths:
                self._copy(p, self.host_path(host, source), source, self.local_path(p.destination),
                           p.destination)
            return
        destination = self.host_path(host, p.destination)
        if p.content is not None:
            if destination.is_dir():
                destination = destination / "pkr-file-content"
            self._require_parent(p, destination, p.destination)
            destination.write_text(self._fill_build_variables(p.content, p))
            return
        if p.sources is not None and not p.destination.endswith("/"):
            raise BuildFailed(p.index, p.type, "with sources, destination must be a directory "
                              "ending in /")
        for source in p.source_paths:
            self._copy(p, self.local_path(source), source, destination, p.destination)

    def _require_parent(self, p: FileProvisioner, path: Path, shown: str) -> None:
        if not path.parent.is_dir():
            raise BuildFailed(p.index, p.type, f"destination {shown}: its parent directory does "
                              "not exist (Packer needs it to exist already)")

    def _copy(self, p: FileProvisioner, src: Path, src_text: str, dst: Path, dst_text: str) -> None:
        """Copy with the file provisioner's rules (scp's: a trailing slash means "contents of")."""
        if not src.exists():
            raise BuildFailed(p.index, p.type, f"source {src_text} does not exist")
        if src.is_dir():
            if src_text.endswith("/"):
                self._require_parent(p, dst, dst_text)
                dst.mkdir(exist_ok=True)
                shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
            else:
                into = dst / src.name if dst.is_dir() else dst
                self._require_parent(p, into, dst_text)
                shutil.copytree(src, into, symlinks=True, dirs_exist_ok=True)
            return
        into = dst / src.name if dst.is_dir() or dst_text.endswith("/") else dst
        self._require_parent(p, into, dst_text)
        shutil.copy2(src, into)

    # -- after registration ---------------------------------------------------------------
    def write_manifest(self, image_id: str, region: str | None = None) -> Path | None:
        """Write the manifest post-processor's file for a registered image, if it has one.

        A relative ``output`` is resolved in ``work_dir`` (where this build "runs"); the
        artifact id reads ``<region>:<image id>`` like an amazon-ebs build's.
        """
        manifest = self.build.manifest
        if manifest is None or not manifest.applies_to(self.source.key):
            return None
        output = Path(manifest.output)
        path = output if output.is_absolute() else self.work_dir / output
        region = region or self.source.region or "local"
        entry = ManifestBuild(
            name=self.source.name, builder_type=self.source.type,
            build_time=None if manifest.strip_time else int(self.clock()),
            files=None, artifact_id=f"{region}:{image_id}", packer_run_uuid=self.run_uuid,
            custom_data=manifest.custom_data)
        write_manifest(path, [entry])
        log.info("manifest written", path=str(path), image_id=image_id, run_uuid=self.run_uuid)
        return path


"""The real ``packer`` binary: init where needed, build, stream progress, read the AMI id.

``packer build -machine-readable`` prints ``timestamp,target,type,data…`` lines; the
``ui`` lines (say, message, error) become events as they arrive. The AMI id comes from the
manifest post-processor's file, written into a fresh temporary folder that Packer runs in
(the build whose ``packer_run_uuid`` equals ``last_run_uuid``), with the ``artifact,0,id``
line as fallback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from deployer.base import logs
from deployer.base.errors import CloudError, ConfigError, DeployerError
from deployer.cloud.port import Event, OnEvent
from deployer.packer.manifest import parse_machine_readable_artifact, read_manifest_artifact
from deployer.packer.template import load_packer_template

INSTALL_HINT = ("install Packer: 'apt-get install packer' on Debian/Ubuntu, or see "
                "developer.hashicorp.com/packer/install; or set DEPLOYER_PACKER to its path")
AMAZON_PLUGIN = "github.com/hashicorp/amazon"
MANIFEST = "packer-manifest.json"


class Runner(Protocol):
    def __call__(self, argv: list[str], cwd: Path, env: dict[str, str],
                 on_line: Callable[[str], None]) -> int: ...


def run_streaming(argv: list[str], cwd: Path, env: dict[str, str],
                  on_line: Callable[[str], None]) -> int:
    """Run a command, handing each output line over as it comes; its exit code."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1)
    except FileNotFoundError as exc:
        raise ConfigError(f"packer not found ({argv[0]})", hint=INSTALL_HINT) from exc
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        return proc.wait()
    except KeyboardInterrupt:
        # Packer cleans up its build instance, key pair and security group on SIGINT: give
        # it the time to, rather than leaving a running instance behind.
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=300)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.kill()
        raise


def parse_version(text: str) -> tuple[int, int, int]:
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        raise CloudError(f"cannot tell the Packer version from {text.strip()[:80]!r}")
    return int(match[1]), int(match[2]), int(match[3])


def machine_readable(line: str) -> tuple[str, str, list[str]] | None:
    """``timestamp,target,type,data…`` -> (target, type, data), data unescaped."""
    fields = line.split(",")
    if len(fields) < 3 or not fields[0].isdigit():
        return None
    data = [f.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")
            for f in fields[3:]]
    return fields[1], fields[2], data


class PackerCli:
    """Builds images with the packer binary; the runner is injectable for tests."""

    def __init__(self, binary: str | None = None, runner: Runner = run_streaming,
                 env: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.binary = binary or os.environ.get("DEPLOYER_PACKER", "packer")
        self.runner = runner
        self.env = dict(os.environ if env is None else env)
        self.clock = clock

    def _path(self) -> str:
        found = shutil.which(self.binary, path=self.env.get("PATH"))
        if found is None:
            raise ConfigError(f"packer not found ({self.binary})", hint=INSTALL_HINT)
        return found

    def _run(self, args: list[str], cwd: Path, on_line: Callable[[str], None],
             env: dict[str, str] | None = None) -> int:
        return self.runner([self._path(), *args], cwd, env or self.env, on_line)

    def version(self) -> tuple[int, int, int]:
        lines: list[str] = []
        code = self._run(["version"], Path(tempfile.gettempdir()), lines.append)
        if code != 0:
            raise CloudError(f"'packer version' failed (exit {code}): {' '.join(lines)[:200]}")
        return parse_version("\n".join(lines))

    def prepare(self, template: Path, on_event: OnEvent) -> tuple[int, int, int]:
        """``packer init`` where the Packer needs it; the amazon plugin where none is bundled."""
        version = self.version()
        if version >= (1, 7, 0):
            # 1.7 brought `packer init` for required_plugins. The template has no such
            # block (1.6 rejects it), so init alone installs nothing; it still checks the
            # template's packer block and is what a later template with plugins needs.
            self._checked(["init", str(template)], template.parent, on_event, "init")
        if version >= (1, 10, 0):
            # 1.10 stopped bundling the amazon builder; install it if it isn't there.
            lines: list[str] = []
            self._run(["plugins", "installed"], template.parent, lines.append)
            if not any("amazon" in line for line in lines):
                self._checked(["plugins", "install", AMAZON_PLUGIN], template.parent, on_event,
                              "plugins install")
        return version

    def _checked(self, args: list[str], cwd: Path, on_event: OnEvent, what: str) -> None:
        lines: list[str] = []

        def on_line(line: str) -> None:
            lines.append(line)
            on_event(Event(at=self.clock(), source="image", resource="packer",
                           status=what.replace(" ", "_"), reason=line))

        code = self._run(args, cwd, on_line)
        if code != 0:
            raise CloudError(f"'packer {what}' failed (exit {code}): "
                             f"{(lines[-1] if lines else '').strip()[:300]}")

    def build(self, template: Path, variables: dict[str, str], region: str,
              on_event: OnEvent, extra_env: dict[str, str] | None = None) -> str:
        """Bake the image; its AMI id."""
        template = template.resolve()
        declared = load_packer_template(template, variables).variables  # bad vars fail here
        if "region" in declared and "region" not in variables:
            variables = {**variables, "region": region}
        self.prepare(template, on_event)
        args = ["build", "-machine-readable", "-color=false"]
        for name, value in variables.items():
            args += ["-var", f"{name}={value}"]
        args.append(str(template))
        output: list[str] = []
        errors: list[str] = []
        log = logs.get_logger()

        def on_line(line: str) -> None:
            output.append(line)
            parsed = machine_readable(line)
            if parsed is None:
                return
            target, kind, data = parsed
            if kind == "ui" and len(data) >= 2 and data[0] in ("say", "message", "error"):
                message = data[1].strip()
                if data[0] == "error":
                    errors.append(message)
                if message:
                    on_event(Event(at=self.clock(), source="image",
                                   resource=target or "packer", status=data[0],
                                   reason=message))
            elif kind == "artifact" and len(data) >= 3 and data[1] == "id":
                on_event(Event(at=self.clock(), source="image", resource=target or "packer",
                               status="artifact", reason=data[2]))

        with tempfile.TemporaryDirectory(prefix="deployer-packer-") as work:
            work_dir = Path(work)
            env = {**self.env, "AWS_REGION": region, **(extra_env or {}),
                   "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}
            log.info("packer.build", template=str(template), region=region,
                     variables=sorted(variables))
            code = self._run(args, work_dir, on_line, env)
            if code != 0:
                why = errors[-1] if errors else (output[-1] if output else "")
                raise CloudError(f"packer build failed (exit {code}): {why.strip()[:500]}",
                                 hint="see the packer output above")
            manifest = work_dir / MANIFEST
            if manifest.exists():
                try:
                    return read_manifest_artifact(manifest, region=region)
                except DeployerError as exc:
                    log.warning("packer.manifest_unusable", reason=str(exc))
        image = parse_machine_readable_artifact(output, region=region)
        if image is None:
            raise CloudError("packer build succeeded but named no AMI in its manifest or output",
                             hint="check the template's manifest post-processor")
        return image

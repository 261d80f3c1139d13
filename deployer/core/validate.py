"""`deployer validate`: every static check of the release assets, one line per finding.

The assets that ship (``appspec/``, ``packer/``, ``etherpad/``) are read by the same readers
a release uses, with placeholder values where a release would supply real ones:

- ``appspec/appspec.yml`` with the appspec reader, and every hook it names must exist;
- each ``etherpad/stacks/*.yaml`` with the local cloud's template reader (placeholder
  parameters and attributes), then ``cfn-lint`` if it is installed;
- every Auto Scaling group that can run two Etherpads at once must keep the pad lease
  (``deployer.cfn.padservers``);
- the user data of every launch template, resolved: ``bash -n`` (and ``shellcheck``);
- ``packer/etherpad.pkr.hcl`` with the HCL reader (a placeholder ``etherpad_version``), then
  ``packer validate -syntax-only`` if Packer is installed;
- every shell script (``appspec/hooks``, ``etherpad/bin``, ``packer``): ``bash -n`` or
  ``sh -n`` by its shebang, and ``shellcheck`` (warnings and errors) if it is installed.

Optional tools that are missing are reported as skipped, never as findings.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import BaseModel

from deployer.base.errors import ConfigError, DeployerError, UsageError

TOOL_TIMEOUT_S = 180
MESSAGE_CHARS = 300  # one finding, one readable line
PLACEHOLDER_RELEASE = "1.8.18"
PLACEHOLDER_IMAGE = "ami-0123456789abcdef0"
# What a running stack answers for GetAtt; only the shape matters to the checks.
PLACEHOLDER_ATTRIBUTES = {
    "DNSName": "etherpad-0123456789.us-east-1.elb.amazonaws.com",
    "Endpoint.Address": "etherpad.abcdefghijkl.us-east-1.rds.amazonaws.com",
    "Endpoint.Port": "5432",
}


class Finding(BaseModel):
    check: str  # appspec | template | cfn-lint | user data | packer | script | shellcheck ...
    where: str  # file[:line] or file: field
    message: str

    def line(self) -> str:
        return f"{self.where}: {self.check}: {self.message}"


class Validation(BaseModel):
    root: str
    findings: list[Finding] = []
    checked: list[str] = []  # what was checked, for the summary
    skipped: list[str] = []  # optional tools that are not installed

    def lines(self) -> list[str]:
        out = [f.line() for f in self.findings]
        summary = (f"{len(self.findings)} finding(s)" if self.findings else "no findings")
        out.append(f"{summary}; checked {len(self.checked)}: {', '.join(self.checked)}"
                   + (f"; skipped (not installed): {', '.join(self.skipped)}"
                      if self.skipped else ""))
        return out


class _Run:
    def __init__(self, root: Path, which: Callable[[str], str | None]) -> None:
        self.root = root
        self.which = which
        self.result = Validation(root=str(root))

    def rel(self, text: str) -> str:
        """Paths inside the assets folder, relative to it (messages stay readable)."""
        return text.replace(f"{self.root}/", "")

    def add(self, check: str, where: str, message: str) -> None:
        message = self.rel(message)
        if len(message) > MESSAGE_CHARS:
            message = message[:MESSAGE_CHARS - 1] + "…"
        self.result.findings.append(Finding(check=check, where=self.rel(where),
                                            message=message))

    def config_error(self, check: str, path: Path, exc: DeployerError) -> None:
        # A reader's error starts with its own location (file:line or file: field).
        text = str(exc)
        location = getattr(exc, "location", None)
        if location and text.startswith(f"{location}: "):
            self.add(check, location, text[len(location) + 2:])
        else:
            self.add(check, str(path), text)

    def tool(self, name: str) -> bool:
        if self.which(name):
            return True
        if name not in self.result.skipped:
            self.result.skipped.append(name)
        return False

    def command(self, argv: list[str], *, cwd: Path | None = None,
                stdin: str | None = None) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True,
                                  timeout=TOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.add(Path(argv[0]).name, " ".join(argv[1:3]),
                     f"did not finish within {TOOL_TIMEOUT_S} s")
        except OSError as exc:
            self.add(Path(argv[0]).name, argv[0], f"could not run: {exc}")
        return None


CHECKS = ("appspec", "templates", "packer", "scripts")


def validate_assets(root: Path, checks: Iterable[str] | None = None, *,
                    which: Callable[[str], str | None] = shutil.which) -> Validation:
    """Run the static checks (``checks``, default all of :data:`CHECKS`) on the assets folder
    ``root`` (holding appspec/, packer/, etherpad/). ``which`` finds optional tools; tests
    pass one that finds none."""
    wanted = list(dict.fromkeys(checks or CHECKS))
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown:
        raise UsageError(f"unknown check {unknown[0]!r}", hint=f"use {', '.join(CHECKS)}")
    root = root.resolve()
    missing = [name for name in ("appspec", "packer", "etherpad") if not (root / name).is_dir()]
    if missing:
        raise UsageError(f"{root} is not a deployer assets folder (no "
                         f"{', '.join(m + '/' for m in missing)})",
                         hint="pass --assets with the folder holding appspec/, packer/ and "
                              "etherpad/")
    run = _Run(root, which)
    steps = {"appspec": _appspec, "templates": _templates, "packer": _packer,
             "scripts": _scripts}
    for check in wanted:
        steps[check](run)
    return run.result


# -- appspec ------------------------------------------------------------------------------

def _appspec(run: _Run) -> None:
    from deployer.appspec.reader import load_appspec

    path = run.root / "appspec" / "appspec.yml"
    run.result.checked.append("appspec")
    try:
        appspec = load_appspec(path)
    except ConfigError as exc:
        run.config_error("appspec", path, exc)
        return
    # The revision is appspec.yml and hooks/ at the top of the bundle, beside the release.
    for event, hooks in appspec.hooks.items():
        for index, hook in enumerate(hooks):
            script = path.parent / hook.location.lstrip("/")
            if not script.is_file():
                run.add("appspec", f"{path}: hooks.{event.value}[{index}].location",
                        f"{hook.location} is not in the revision (expected {script}); add the "
                        "script or fix the location")


# -- CloudFormation -----------------------------------------------------------------------

def _placeholder_parameters(path: Path) -> dict[str, str]:
    """Values for the parameters a release supplies (those without a Default)."""
    from deployer.cfn.document import load_document

    document = load_document(path)
    values: dict[str, str] = {}
    for name, spec in (document.get("Parameters") or {}).items():
        if not isinstance(spec, dict) or "Default" in spec:
            continue
        allowed = spec.get("AllowedValues")
        kind = str(spec.get("Type", "String"))
        if isinstance(allowed, list) and allowed:
            values[name] = str(allowed[0])
        elif kind == "AWS::EC2::Image::Id":
            values[name] = PLACEHOLDER_IMAGE
        elif kind == "Number":
            values[name] = str(spec.get("MinValue", 1))
        elif "Version" in name:
            values[name] = PLACEHOLDER_RELEASE
        else:
            values[name] = "placeholder"
    return values


PLACEHOLDER_IMAGE_ID = "ami-00000000000000000"


def _templates(run: _Run) -> None:
    from deployer.cfn import padservers
    from deployer.cfn.parameters import PUBLIC_IMAGE_PARAMETERS
    from deployer.cfn.templates import load_stack

    templates = sorted((run.root / "etherpad" / "stacks").glob("*.y*ml"))
    if not templates:
        run.add("template", str(run.root / "etherpad" / "stacks"),
                "no templates (*.yaml) here; the strategies need one each")
    for path in templates:
        run.result.checked.append(f"template {path.name}")
        try:
            model = load_stack(path, _placeholder_parameters(path),
                               stack_name=f"etherpad-{path.stem}",
                               attribute_resolver=lambda _l, a: PLACEHOLDER_ATTRIBUTES.get(a),
                               ssm_resolver=lambda name: PLACEHOLDER_IMAGE_ID
                               if name in PUBLIC_IMAGE_PARAMETERS else None)
        except ConfigError as exc:
            run.config_error("template", path, exc)
            continue
        for logical_id, message in padservers.findings(model.auto_scaling_groups,
                                                       model.launch_templates):
            run.add("pad servers", f"{path}: {logical_id}", message)
        for logical_id, template in model.launch_templates.items():
            if template.user_data:
                _shell_text(run, template.user_data, "bash",
                            f"{path}: {logical_id}.LaunchTemplateData.UserData", "user data")
    if templates and run.tool("cfn-lint"):
        run.result.checked.append("cfn-lint")
        done = run.command(["cfn-lint", "--format", "parseable", *map(str, templates)])
        if done is not None and done.returncode != 0:
            for line in done.stdout.splitlines():
                parts = line.split(":", 6)
                if len(parts) == 7:
                    file, start, _col, _end, _endcol, rule, message = parts
                    run.add("cfn-lint", f"{file}:{start}", f"{rule} {message}")
                elif line.strip():
                    run.add("cfn-lint", "etherpad/stacks", line.strip())
            if not done.stdout.strip():
                run.add("cfn-lint", "etherpad/stacks", (done.stderr.strip().splitlines()
                                                        or ["failed"])[-1])


# -- Packer -------------------------------------------------------------------------------

def _packer(run: _Run) -> None:
    from deployer.packer.template import load_packer_template

    path = run.root / "packer" / "etherpad.pkr.hcl"
    run.result.checked.append("packer template")
    try:
        # Exactly the variables the packer strategy passes: a template that no longer
        # declares one fails here, not in the middle of a release.
        load_packer_template(path, {"etherpad_version": PLACEHOLDER_RELEASE,
                                    "etherpad_source": "github"})
    except ConfigError as exc:
        run.config_error("packer", path, exc)
    if path.is_file() and run.tool("packer"):
        run.result.checked.append("packer validate")
        done = run.command(["packer", "validate", "-syntax-only", path.name], cwd=path.parent)
        if done is not None and done.returncode != 0:
            text = " ".join(line.strip() for line in (done.stderr + done.stdout).splitlines()
                            if line.strip())
            first = "Error:" + text.split("Error:")[1] if text.count("Error:") > 1 else text
            run.add("packer validate", str(path), first or f"exit status {done.returncode}")


# -- shell --------------------------------------------------------------------------------

def _shell_of(path: Path) -> str:
    first = path.read_text(errors="replace").split("\n", 1)[0]
    if first.startswith("#!") and "bash" not in first and ("/sh" in first or " sh" in first):
        return "sh"
    return "bash"  # bash scripts, and files without a shebang that bash hooks source


def _scripts(run: _Run) -> None:
    scripts = sorted([*(run.root / "appspec" / "hooks").glob("*.sh"),
                      *(run.root / "etherpad" / "bin").glob("*.sh"),
                      *(run.root / "packer").glob("*.sh")])
    run.result.checked.append(f"{len(scripts)} scripts")
    for script in scripts:
        shell = _shell_of(script)
        done = run.command([shell, "-n", str(script)])
        if done is not None and done.returncode != 0:
            for line, message in _shell_errors(done.stderr):
                run.add(f"{shell} -n", f"{script}:{line}" if line else str(script), message)
        if run.tool("shellcheck"):
            args = ["shellcheck", "-f", "gcc", "-S", "warning", "-x", "-P", "SCRIPTDIR"]
            if not script.read_text(errors="replace").startswith("#!"):
                args += ["-s", "bash"]
            done = run.command([*args, str(script)])
            if done is not None:
                _shellcheck_findings(run, done.stdout, str(script))
    if scripts and "shellcheck" not in run.result.skipped:
        run.result.checked.append("shellcheck")


def _shell_text(run: _Run, text: str, shell: str, where: str, what: str) -> None:
    done = run.command([shell, "-n"], stdin=text)
    if done is not None and done.returncode != 0:
        for line, message in _shell_errors(done.stderr):
            run.add(f"{what} ({shell} -n)", f"{where} line {line}" if line else where, message)
    if run.tool("shellcheck"):
        done = run.command(["shellcheck", "-f", "gcc", "-S", "warning", "-s", shell, "-"],
                           stdin=text)
        if done is not None:
            _shellcheck_findings(run, done.stdout, where, what=f"{what} (shellcheck)")


def _shell_errors(stderr: str) -> list[tuple[str, str]]:
    """``bash -n`` says ``file: line N: message`` (often twice for one line: the error, then
    the code): one (line, message) per line of the script."""
    found: dict[str, list[str]] = {}
    for raw in stderr.splitlines():
        text = raw.strip()
        if not text:
            continue
        # bash: "file: line N: message"; dash (sh -n): "file: N: message".
        _, _, rest = text.partition(": line ")
        number, _, message = rest.partition(": ")
        if not (rest and number.isdigit()):
            parts = text.split(": ", 2)
            if len(parts) == 3 and parts[1].isdigit():
                number, message = parts[1], parts[2]
            else:
                number, message = "", text.split(": ", 1)[-1]
        found.setdefault(number, []).append(message or text)
    return [(line, " — ".join(messages)) for line, messages in found.items()] or \
        [("", "syntax error")]


def _shellcheck_findings(run: _Run, stdout: str, where: str, what: str = "shellcheck") -> None:
    for raw in stdout.splitlines():
        # -f gcc: file:line:col: level: message [SCxxxx]
        parts = raw.split(":", 4)
        if len(parts) == 5:
            _file, line, _col, level, message = parts
            base = where if _file == "-" else _file
            run.add(what, f"{base}:{line}" if _file != "-" else f"{base} line {line}",
                    f"{level.strip()}: {message.strip()}")

"""A Packer HCL2 template as data: variables, sources, builds with their provisioners and
post-processors, every attribute already evaluated by
:func:`deployer.packer.template.load_packer_template`.

The provisioners and post-processors the local cloud's image builder runs itself (``shell``,
``file``, ``manifest``) are typed, with Packer's defaults and Packer's checks; any other type
is recorded as written for the AWS side's ``packer`` to run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deployer.base.errors import ConfigError

MANIFEST_DEFAULT_OUTPUT = "packer-manifest.json"
SHELL_DEFAULT_EXECUTE_COMMAND = "chmod +x {{.Path}}; {{.Vars}} {{.Path}}"
SHELL_DEFAULT_INLINE_SHEBANG = "/bin/sh -e"
# Packer's check on ami_name: anything else is refused by EC2 at registration.
AMI_NAME = re.compile(r"^[\w().\-/ '@\[\]]{3,128}$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RequiredPlugin(_Model):
    version: str | None = None
    source: str | None = None


class Validation(_Model):
    """A variable's ``validation`` block and whether the value passed it here."""

    condition: str
    error_message: str
    checked: bool  # False when the condition uses something this reader cannot evaluate


class Variable(_Model):
    name: str
    type: str = "any"
    description: str = ""
    sensitive: bool = False
    has_default: bool = False
    default: Any = None
    value: Any = None
    validations: list[Validation] = Field(default_factory=list)

    def __repr_args__(self):  # a sensitive value must not reach logs through a repr
        for name, value in super().__repr_args__():
            yield name, "<sensitive>" if self.sensitive and name in ("default", "value") else value


class Source(_Model):
    """A ``source "<type>" "<name>"`` block, every attribute evaluated.

    Nested blocks (``source_ami_filter``, ``launch_block_device_mappings``) are lists of
    dicts because HCL lets blocks repeat; attributes (``tags = {...}``) are plain values.
    """

    type: str
    name: str
    attributes: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.type}.{self.name}"

    def get(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    @property
    def ami_name(self) -> str | None:
        return self.get("ami_name")

    @property
    def region(self) -> str | None:
        return self.get("region")

    @property
    def instance_type(self) -> str | None:
        return self.get("instance_type")

    @property
    def source_ami(self) -> str | None:
        return self.get("source_ami")

    @property
    def source_ami_filter(self) -> dict[str, Any] | None:
        blocks = self.get("source_ami_filter")
        return blocks[0] if blocks else None

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.get("tags") or {})


class _Filtered(_Model):
    """``only`` / ``except``: which of a build's sources a provisioner runs for."""

    index: int
    only: list[str] = Field(default_factory=list)
    except_: list[str] = Field(default_factory=list, alias="except")

    def applies_to(self, source_key: str) -> bool:
        if self.only and source_key not in self.only:
            return False
        return source_key not in self.except_


class _ProvisionerBase(_Filtered):
    pause_before: str | None = None
    max_retries: int = 0
    timeout: str | None = None


class ShellProvisioner(_ProvisionerBase):
    type: Literal["shell"] = "shell"
    inline: list[str] | None = None
    script: str | None = None
    scripts: list[str] | None = None
    environment_vars: list[str] = Field(default_factory=list)
    env_var_format: str = "%s='%s' "
    execute_command: str = SHELL_DEFAULT_EXECUTE_COMMAND
    inline_shebang: str = SHELL_DEFAULT_INLINE_SHEBANG
    expect_disconnect: bool = False
    remote_folder: str = "/tmp"
    remote_file: str | None = None
    remote_path: str | None = None
    valid_exit_codes: list[int] = Field(default_factory=lambda: [0])
    skip_clean: bool = False

    @model_validator(mode="after")
    def _one_kind_of_script(self) -> ShellProvisioner:
        given = [n for n in ("inline", "script", "scripts") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError("Only one of inline, script, or scripts can be specified.")
        if not given or (given == ["scripts"] and not self.scripts):
            raise ValueError("Either a script file or inline script must be specified.")
        for pair in self.environment_vars:
            if "=" not in pair or pair.startswith("="):
                raise ValueError(f"Environment variable not in format 'key=value': {pair}")
        return self

    @property
    def environment(self) -> dict[str, str]:
        return dict(pair.split("=", 1) for pair in self.environment_vars)

    @property
    def script_paths(self) -> list[str]:
        return [self.script] if self.script is not None else list(self.scripts or [])


class FileProvisioner(_ProvisionerBase):
    type: Literal["file"] = "file"
    source: str | None = None
    sources: list[str] | None = None
    content: str | None = None
    destination: str
    direction: Literal["upload", "download"] = "upload"
    generated: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> FileProvisioner:
        given = [n for n in ("source", "sources", "content") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("exactly one of source, sources or content must be specified")
        if self.content is not None and self.direction == "download":
            raise ValueError("content cannot be used with direction download")
        return self

    @property
    def source_paths(self) -> list[str]:
        return [self.source] if self.source is not None else list(self.sources or [])


class OtherProvisioner(_Filtered):
    """A provisioner type this project does not run locally; recorded as written."""

    type: str
    attributes: dict[str, Any] = Field(default_factory=dict)


class ManifestPostProcessor(_Filtered):
    type: Literal["manifest"] = "manifest"
    output: str = MANIFEST_DEFAULT_OUTPUT
    strip_path: bool = False
    strip_time: bool = False
    custom_data: dict[str, str] | None = None
    keep_input_artifact: bool | None = None


class OtherPostProcessor(_Filtered):
    type: str
    attributes: dict[str, Any] = Field(default_factory=dict)


Provisioner = ShellProvisioner | FileProvisioner | OtherProvisioner
PostProcessor = ManifestPostProcessor | OtherPostProcessor


class Build(_Model):
    name: str | None = None
    sources: list[str]  # "amazon-ebs.etherpad", without the "source." prefix
    provisioners: list[Annotated[Provisioner, Field(union_mode="left_to_right")]] = Field(
        default_factory=list)
    post_processors: list[Annotated[PostProcessor, Field(union_mode="left_to_right")]] = Field(
        default_factory=list)

    @property
    def manifest(self) -> ManifestPostProcessor | None:
        return next((p for p in self.post_processors if isinstance(p, ManifestPostProcessor)), None)


class PackerTemplate(_Model):
    path: Path
    required_version: str | None = None
    required_plugins: dict[str, RequiredPlugin] = Field(default_factory=dict)
    variables: dict[str, Variable] = Field(default_factory=dict)
    locals: dict[str, Any] = Field(default_factory=dict)
    sources: dict[str, Source] = Field(default_factory=dict)  # by "type.name"
    builds: list[Build] = Field(default_factory=list)

    @property
    def directory(self) -> Path:
        """Where relative paths in the template are resolved (Packer runs from here)."""
        return self.path.parent

    @property
    def needs_init(self) -> bool:
        """Packer 1.7+ installs ``required_plugins`` with ``packer init`` before building."""
        return bool(self.required_plugins)

    def variable_values(self) -> dict[str, Any]:
        return {name: v.value for name, v in self.variables.items()}

    def source(self, key: str) -> Source:
        try:
            return self.sources[key]
        except KeyError:
            raise ConfigError(f"no source {key}", location=str(self.path)) from None

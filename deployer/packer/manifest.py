"""The manifest Packer's manifest post-processor writes after a build, and where an image id
is read back from: the manifest, or ``packer build -machine-readable`` output.

The AWS adapter reads what the ``packer`` binary wrote (:func:`read_manifest_artifact`,
:func:`parse_machine_readable_artifact`); the local cloud's image builder writes the same
file the same way (:func:`write_manifest`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from deployer.base.errors import CloudError


class ManifestFile(BaseModel):
    name: str
    size: int


class ManifestBuild(BaseModel):
    """One build in Packer's manifest, fields in Packer's order and spelling."""

    name: str
    builder_type: str
    build_time: int | None = None  # omitted when 0 (strip_time), as Go's omitempty does
    files: list[ManifestFile] | None = None
    artifact_id: str
    packer_run_uuid: str
    custom_data: dict[str, str] | None = None


class Manifest(BaseModel):
    builds: list[ManifestBuild] = Field(default_factory=list)
    last_run_uuid: str = ""


def _go_json(data: Any) -> str:
    # encoding/json's MarshalIndent: two spaces, HTML-safe escapes, no trailing newline.
    text = json.dumps(data, indent=2, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def write_manifest(path: Path, builds: Iterable[ManifestBuild], *, force: bool = False) -> Manifest:
    """Add builds to a manifest file the way Packer's manifest post-processor does.

    Packer appends to an existing manifest (``-force`` truncates it when the run differs)
    and records the run's uuid as ``last_run_uuid``; so does this.
    """
    builds = list(builds)
    if not builds:
        raise ValueError("write_manifest needs at least one build")
    run_uuid = builds[-1].packer_run_uuid
    manifest = Manifest()
    if path.exists():
        manifest = _read_manifest(path)
        if force and manifest.last_run_uuid != run_uuid:
            manifest = Manifest()
    manifest = Manifest(builds=[*manifest.builds, *builds], last_run_uuid=run_uuid)
    written = [b.model_dump(exclude_none=False) for b in manifest.builds]
    for build in written:
        if not build["build_time"]:
            del build["build_time"]
    payload = {"builds": written, "last_run_uuid": manifest.last_run_uuid}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(_go_json(payload))
    partial.replace(path)
    return manifest


def _read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(path.read_text())
    except OSError as err:
        raise CloudError(f"cannot read Packer manifest {path}: {err.strerror}") from err
    except ValidationError as err:
        problem = err.errors()[0]["msg"]
        raise CloudError(f"Packer manifest {path} is not a manifest: {problem}") from err


def _ami_from_artifact_id(artifact_id: str, region: str | None) -> str | None:
    """``us-east-1:ami-0abc`` (comma-separated when copied to several regions) -> ami id."""
    pairs = []
    for part in artifact_id.split(","):
        area, sep, image = part.strip().partition(":")
        if sep and image.startswith("ami-"):
            pairs.append((area, image))
    if region is not None:
        pairs = [p for p in pairs if p[0] == region] or []
    return pairs[0][1] if pairs else None


def read_manifest_artifact(path: Path, *, region: str | None = None,
                           build_name: str | None = None) -> str:
    """The AMI id of the last run recorded in a Packer manifest.

    Picks the build whose ``packer_run_uuid`` equals ``last_run_uuid`` (older runs stay in
    the file), and returns the id after the ``region:`` prefix.
    """
    manifest = _read_manifest(Path(path))
    runs = [b for b in manifest.builds if b.packer_run_uuid == manifest.last_run_uuid]
    if build_name is not None:
        runs = [b for b in runs if b.name == build_name]
    if not runs:
        raise CloudError(f"Packer manifest {path} has no build for the last run "
                         f"{manifest.last_run_uuid or '(none)'}")
    image = _ami_from_artifact_id(runs[-1].artifact_id, region)
    if image is None:
        raise CloudError(f"Packer manifest {path}: artifact {runs[-1].artifact_id!r} names no "
                         f"image{' in ' + region if region else ''}")
    return image


def parse_machine_readable_artifact(lines: Iterable[str], *,
                                    region: str | None = None) -> str | None:
    """The AMI id from ``packer build -machine-readable`` output, if an artifact line has one.

    Lines read ``timestamp,target,type,data...``; Packer writes commas inside data as
    ``%!(PACKER_COMMA)`` and newlines as ``\\n``.
    """
    found = None
    for line in lines:
        fields = line.rstrip("\r\n").split(",", 5)
        if len(fields) == 6 and fields[2] == "artifact" and fields[4] == "id":
            value = (fields[5].replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n")
                     .replace("\\r", "\r"))
            image = _ami_from_artifact_id(value, region)
            if image is not None and found is None:
                found = image
    return found

"""Image builds on the local cloud: ``packer build`` of the same .pkr.hcl, then register.

A build host is a fresh machine from the base image: an empty root and an instance's
environment. The template's provisioners run on it as real commands; when they all succeed
the host's root becomes the image (moved, not copied), and the manifest post-processor's
file is written as Packer writes it. A failed build registers nothing and leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deployer.base import errors
from deployer.base.fsutil import tree_size
from deployer.cloud.port import Event
from deployer.localcloud.compute.instances import MARKER, kill_instance_processes, new_id
from deployer.localcloud.images.builder import LocalImageBuilder
from deployer.localcloud.state import CloudState, ImageRecord, InstanceState
from deployer.packer.template import load_packer_template

if TYPE_CHECKING:
    from deployer.localcloud.supervisor import Operation, Supervisor


@dataclass
class LocalBuildHost:
    build_id: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, argv: list[str], env: dict[str, str], log: Callable[[str], None]) -> int:
        proc = subprocess.Popen(argv, cwd=self.root, env={**self.env, **env},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log(line.rstrip("\n"))
        return proc.wait()


def build_image(sup: Supervisor, template_path: Path, variables: dict[str, str],
                on_event: Callable[[Event], None]) -> dict:
    template = load_packer_template(template_path, variables)
    build_id = new_id("i")  # the temporary build instance
    build_dir = sup.home / "builds" / build_id
    root = build_dir / "root"
    for sub in ("tmp", "opt", "var/log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8", MARKER: build_id, "INSTANCE_ID": build_id,
        "INSTANCE_ROOT": str(root), "ETHERPAD_HOME": f"{root}/opt/etherpad",
        "TMPDIR": f"{root}/tmp",
    }
    for name in ("npm_config_cache", "NPM_CONFIG_CACHE", "DEPLOYER_HOME",
                 "npm_config_registry", "NPM_CONFIG_REGISTRY", "ETHERPAD_CACHE_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    builder = LocalImageBuilder(template, build_dir / "work", on_event)
    started = time.time()
    on_event(Event(at=started, source="image", resource=build_id, status="build_started",
                   reason=f"{template_path.name} on a local build host"))
    try:
        builder.provision(LocalBuildHost(build_id, root, env))
    except BaseException:
        kill_instance_processes(build_id, None, grace_s=2.0)
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    kill_instance_processes(build_id, None, grace_s=2.0)
    # The build host's disk becomes the image: a rename, no copy.
    image_id = new_id("ami")
    image_dir = sup.images.dir / image_id
    image_dir.mkdir(parents=True)
    (root / "tmp").exists() and shutil.rmtree(root / "tmp")
    (root / "tmp").mkdir()
    root.rename(image_dir / "root")
    size, files = tree_size(image_dir / "root")
    source = builder.source
    tags = {str(k): str(v) for k, v in (source.tags or {}).items()}
    release = variables.get("etherpad_version")
    if release:
        tags.setdefault("Release", release)
    record = ImageRecord(image_id=image_id, name=source.ami_name or image_id,
                         root=str(image_dir / "root"), size_bytes=size, files=files, tags=tags)
    with sup.store.lock:
        sup.store.state.images[image_id] = record
        sup.store.save()
    manifest = builder.write_manifest(image_id, region="us-east-1")
    shutil.rmtree(build_dir, ignore_errors=True) if manifest is None else None
    on_event(Event(at=time.time(), source="image", resource=image_id, status="available",
                   reason=f"{record.name}: {size / 1e6:.0f} MB, {files} files, "
                          f"built in {time.time() - started:.1f}s"))
    return {"image_id": image_id, "name": record.name, "release": release,
            "size_bytes": size, "created_at": record.created_at, "tags": tags}


def build_image_operation(sup: Supervisor, body: dict) -> Operation:
    template = Path(body["template"])
    variables = {str(k): str(v) for k, v in body.get("variables", {}).items()}
    # Bad variables or HCL fail the request itself, before anything is launched.
    load_packer_template(template, variables)
    events: list[Event] = []
    op = sup.start_operation("bake", None, lambda: build_image(sup, template, variables,
                                                               events.append))
    op.events = events  # type: ignore[attr-defined]
    return op


def images_in_state(state: CloudState) -> set[str]:
    """Images an instance runs or a stack names (now, or as the launch template it rolls
    back to)."""
    used = {i.image_id for i in state.instances.values()
            if i.state is not InstanceState.TERMINATED and i.image_id}
    for stack in state.stacks.values():
        used |= {v for k, v in stack.parameters.items() if k == "AMI"}
        used |= {v for k, v in stack.previous_parameters.items() if k == "AMI"}
    return used


def images_in_use(sup: Supervisor) -> set[str]:
    return images_in_state(sup.store.state)


def deregister_image(sup: Supervisor, image_id: str) -> dict:
    with sup.store.lock:
        image = sup.store.state.images.get(image_id)
        if image is None or image.state != "available":
            raise errors.NotFound(f"image {image_id} does not exist")
        if image_id in images_in_use(sup):
            raise errors.StateError(f"image {image_id} is in use by a launch template or an "
                                    "instance", hint="release another image first")
        sup.images.deregister(image)
        del sup.store.state.images[image_id]
        sup.store.save()
    return {"image_id": image_id, "deregistered": True}

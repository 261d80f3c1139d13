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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deployer.base import errors
from deployer.base.fsutil import tree_size
from deployer.cloud.port import Event
from deployer.localcloud.compute.instances import MARKER, kill_instance_processes, new_id
from deployer.localcloud.context import CloudContext
from deployer.localcloud.images.builder import LocalImageBuilder
from deployer.localcloud.operations import Operation
from deployer.localcloud.state import CloudState, ImageRecord, ImageState, InstanceState
from deployer.packer.template import load_packer_template


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


def build_image(ctx: CloudContext, template_path: Path, variables: dict[str, str],
                on_event: Callable[[Event], None]) -> dict:
    template = load_packer_template(template_path, variables)
    build_id = new_id("i")  # the temporary build instance
    clock = ctx.clock
    build_dir = ctx.home / "builds" / build_id
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
    builder = LocalImageBuilder(template, build_dir / "work", on_event, clock=clock.now,
                                sleep=clock.sleep)
    started = clock.now()
    on_event(Event(at=started, source="image", resource=build_id, status="build_started",
                   reason=f"{template_path.name} on a local build host"))
    try:
        builder.provision(LocalBuildHost(build_id, root, env))
    except BaseException:
        kill_instance_processes(build_id, None, grace_s=2.0, clock=clock)
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    kill_instance_processes(build_id, None, grace_s=2.0, clock=clock)
    # The build host's disk becomes the image: a rename, no copy.
    image_id = new_id("ami")
    image_dir = ctx.images.dir / image_id
    image_dir.mkdir(parents=True)
    if (root / "tmp").exists():
        shutil.rmtree(root / "tmp")
    (root / "tmp").mkdir()
    root.rename(image_dir / "root")
    size, files = tree_size(image_dir / "root")
    source = builder.source
    tags = {str(k): str(v) for k, v in (source.tags or {}).items()}
    release = variables.get("etherpad_version")
    if release:
        tags.setdefault("Release", release)
    record = ImageRecord(image_id=image_id, name=source.ami_name or image_id,
                         root=str(image_dir / "root"), size_bytes=size, files=files, tags=tags,
                         created_at=clock.now())
    with ctx.store.lock:
        ctx.store.state.images[image_id] = record
        ctx.store.save()
    manifest = builder.write_manifest(image_id, region="us-east-1")
    shutil.rmtree(build_dir, ignore_errors=True) if manifest is None else None
    ended = clock.now()
    on_event(Event(at=ended, source="image", resource=image_id, status=ImageState.AVAILABLE.value,
                   reason=f"{record.name}: {size / 1e6:.0f} MB, {files} files, "
                          f"built in {ended - started:.1f}s"))
    return {"image_id": image_id, "name": record.name, "release": release,
            "size_bytes": size, "created_at": record.created_at, "tags": tags}


def build_image_operation(ctx: CloudContext, body: dict) -> Operation:
    template = Path(body["template"])
    variables = {str(k): str(v) for k, v in body.get("variables", {}).items()}
    # Bad variables or HCL fail the request itself, before anything is launched.
    load_packer_template(template, variables)
    events: list[Event] = []
    op = ctx.operations.start("bake", None, lambda: build_image(ctx, template, variables,
                                                                events.append))
    op.events = events
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


def images_in_use(ctx: CloudContext) -> set[str]:
    return images_in_state(ctx.store.state)


def deregister_image(ctx: CloudContext, image_id: str) -> dict:
    with ctx.store.lock:
        image = ctx.store.state.images.get(image_id)
        if image is None or image.state is not ImageState.AVAILABLE:
            raise errors.NotFound(f"image {image_id} does not exist")
        if image_id in images_in_use(ctx):
            raise errors.StateError(f"image {image_id} is in use by a launch template or an "
                                    "instance", hint="release another image first")
        ctx.images.deregister(image)
        del ctx.store.state.images[image_id]
        ctx.store.save()
    return {"image_id": image_id, "deregistered": True}

"""Instances and images of the local cloud: real processes, real directory trees.

An instance is a process group led by a small init (``instance_init``) that runs the launch
template's user data as a real script, keeps its output like cloud-init-output.log and then
waits. Every process of an instance carries ``DEPLOYER_INSTANCE_ID`` in its environment, so
processes that left the group (setsid, double fork) are still found when it terminates.

An image is a directory tree. Launching from an image clones the tree with hardlinks, so a
150 MB, 20,000-file Etherpad image launches in a fraction of a second; files under ``var/``
(where Etherpad and the scripts write in place) are copied instead, and the scripts write
configuration by rename, so an instance never writes through into its image.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from deployer.base import logs
from deployer.base.assets import asset_path
from deployer.base.clock import Clock
from deployer.base.errors import CloudError, NotFound
from deployer.base.fsutil import tree_size
from deployer.base.processes import has_environ, pids_with_environ
from deployer.cfn.parameters import PUBLIC_IMAGE_PARAMETERS
from deployer.localcloud.state import ImageRecord, ImageState, InstanceRecord, InstanceState

MARKER = "DEPLOYER_INSTANCE_ID"
TERMINATE_GRACE_S = 10.0
# Written in place by the app or its scripts: copied, not linked, when launching from an image.
COPIED_DIRS = ("var",)

log = logs.get_logger(component="instances")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def clone_tree(src: Path, dst: Path) -> None:
    """Hardlink clone of ``src`` at ``dst``; ``var/`` directories are real copies."""
    if dst.exists():
        raise CloudError(f"cannot launch into {dst}: it already exists")
    dst.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["cp", "-al", str(src), str(dst)], capture_output=True, text=True)
    if result.returncode != 0:
        raise CloudError(f"cloning image {src} failed: {result.stderr.strip()}")
    for dirpath, dirnames, _ in os.walk(dst):
        for name in list(dirnames):
            if name in COPIED_DIRS:
                linked = Path(dirpath) / name
                original = src / linked.relative_to(dst)
                shutil.rmtree(linked)
                shutil.copytree(original, linked, symlinks=True)
                dirnames.remove(name)
        # Don't descend into node_modules looking for var/: nothing writes there.
        if "node_modules" in dirnames:
            dirnames.remove("node_modules")


# -- processes ------------------------------------------------------------------------------
def instance_pids(instance_id: str) -> list[int]:
    """Every live process that belongs to the instance, wherever it moved."""
    return pids_with_environ(MARKER, instance_id)


def is_instance_alive(record: InstanceRecord) -> bool:
    """The init process is alive and really is this instance's (not a reused pid)."""
    if not record.pid:
        return False
    return has_environ(record.pid, MARKER, record.instance_id)


def _signal_all(pids: Iterator[int] | list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_instance_processes(instance_id: str, pgid: int | None,
                            grace_s: float = TERMINATE_GRACE_S, clock: Clock | None = None) -> None:
    """SIGTERM to the group and every marked process; SIGKILL what remains after the grace."""
    clock = clock or Clock()
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if pgid:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        _signal_all(instance_pids(instance_id), sig)
        deadline = clock.monotonic() + wait_s
        while instance_pids(instance_id) and clock.monotonic() < deadline:
            clock.sleep(0.05)
        if not instance_pids(instance_id):
            return


class InstanceLauncher:
    """Starts and stops instance processes. Pure mechanism: the Auto Scaling group decides."""

    def __init__(self, home: Path, control_url: str, bin_dir: Path,
                 clock: Clock | None = None,
                 credential: Callable[[str], str] | None = None) -> None:
        self.clock = clock or Clock()
        self.home = home
        self.control_url = control_url
        # An instance's own credential for the supervisor's API: it allows the instance's
        # signal and its stack's target health, nothing else (deployer.localcloud.access).
        self.credential = credential
        self.bin_dir = bin_dir
        self._children: dict[str, subprocess.Popen] = {}

    def root_of(self, instance_id: str) -> Path:
        return self.home / "instances" / instance_id / "root"

    def prepare_root(self, record: InstanceRecord, image: ImageRecord | None) -> Path:
        root = self.root_of(record.instance_id)
        if image is not None:
            clone_tree(Path(image.root), root)
        else:
            root.mkdir(parents=True)
        for sub in ("var/log", "var/lib/cloud/instance", "opt", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return root

    def instance_env(self, record: InstanceRecord, extra: dict[str, str]) -> dict[str, str]:
        root = record.root
        env = {
            "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            MARKER: record.instance_id,
            "INSTANCE_ID": record.instance_id,
            "INSTANCE_ROOT": root,
            "ETHERPAD_HOME": f"{root}/opt/etherpad",
            "ETHERPAD_PORT": str(record.port),
            "ETHERPAD_IP": "127.0.0.1",
            "DEPLOYER_CONTROL_URL": self.control_url,
            "DEPLOYER_INSTANCE_TOKEN": self.credential(record.instance_id)
            if self.credential else "",
            "TMPDIR": f"{root}/tmp",
            # Where the deployer's etherpad/ scripts are; on EC2 user data fetches them.
            "DEPLOYER_ASSETS": str(asset_path("etherpad")),
        }
        # npm's cache is the machine's: instances install offline from the warm cache.
        # ETHERPAD_CACHE_DIR, when the operator sets it, lets instances copy an installed
        # release instead of running npm (rehearsals and tests; unset, installs are honest).
        for name in ("npm_config_cache", "NPM_CONFIG_CACHE", "DEPLOYER_HOME", "NODE_OPTIONS",
                     "npm_config_registry", "NPM_CONFIG_REGISTRY", "NPM_CONFIG_USERCONFIG",
                     "ETHERPAD_CACHE_DIR"):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(extra)
        return env

    def start(self, record: InstanceRecord, user_data: str | None, env: dict[str, str]) -> int:
        root = Path(record.root)
        script = root / "var/lib/cloud/instance/user-data.txt"
        script.write_text(user_data or "")
        script.chmod(0o700)
        cmd = [sys.executable, "-m", "deployer.localcloud.compute.instance_init",
               "--root", str(root)]
        if user_data:
            cmd += ["--user-data", str(script)]
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
        self._children[record.instance_id] = proc
        log.info("instance.started", instance_id=record.instance_id, pid=proc.pid,
                 port=record.port, image_id=record.image_id)
        return proc.pid

    def terminate(self, record: InstanceRecord, grace_s: float = TERMINATE_GRACE_S) -> None:
        kill_instance_processes(record.instance_id, record.pid, grace_s, self.clock)
        child = self._children.pop(record.instance_id, None)
        if child is not None:
            try:
                child.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        record.state = InstanceState.TERMINATED
        record.terminated_at = self.clock.now()
        log.info("instance.terminated", instance_id=record.instance_id)

    def reap(self) -> None:
        """Collect exit statuses of instance inits this process started."""
        for proc in self._children.values():
            proc.poll()

    def delete_root(self, record: InstanceRecord) -> None:
        # The console output outlives the instance, for whoever investigates a failure.
        output = Path(record.root) / "var/log/cloud-init-output.log"
        if output.exists():
            logs_dir = self.home / "localcloud" / "console"
            logs_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(output, logs_dir / f"{record.instance_id}.log")
        shutil.rmtree(self.home / "instances" / record.instance_id, ignore_errors=True)


# The public base images the local cloud knows: an instance launched from one starts with an
# empty root on this machine's own OS. The public SSM parameters that name them resolve too.
BASE_IMAGE_ID = "ami-0b45e0000000000c1"
# The public image parameters resolve to the local cloud's base image.
PUBLIC_SSM_PARAMETERS = dict.fromkeys(PUBLIC_IMAGE_PARAMETERS, BASE_IMAGE_ID)


class ImageStore:
    """Images as directory trees under ``<home>/images/<ami-id>/root``."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "images"

    def register(self, source_root: Path, name: str, tags: dict[str, str]) -> ImageRecord:
        image_id = new_id("ami")
        target = self.dir / image_id / "root"
        target.parent.mkdir(parents=True, exist_ok=True)
        # A real copy: the image must not change when the builder instance goes away.
        result = subprocess.run(["cp", "-a", str(source_root), str(target)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise CloudError(f"registering image {name} failed: {result.stderr.strip()}")
        size, files = tree_size(target)
        return ImageRecord(image_id=image_id, name=name, root=str(target), size_bytes=size,
                           files=files, tags=tags)

    def deregister(self, image: ImageRecord) -> None:
        shutil.rmtree(self.dir / image.image_id, ignore_errors=True)
        image.state = ImageState.DEREGISTERED

    @staticmethod
    def require(images: dict[str, ImageRecord], image_id: str) -> ImageRecord | None:
        """The image to launch from; None for the base image (an empty root)."""
        if image_id == BASE_IMAGE_ID:
            return None
        image = images.get(image_id)
        if image is None or image.state is not ImageState.AVAILABLE:
            raise NotFound(f"image {image_id} does not exist",
                           hint="see 'deployer images list' for the images there are")
        return image

"""Installing a release on this machine, and bundling one for CodeDeploy.

The installer is ``etherpad/bin/install-etherpad.sh``: the very file EC2 user data, the
Packer provisioner, the CodeDeploy AfterInstall hook and the local cloud's instances run.
:func:`install_release` drives it, so what is installed here is what ships, and reports
what it did. Its per-release tree cache (``ETHERPAD_CACHE_DIR``, keyed by source, release and
the installer's own revision) makes the second install of a release a copy of ~150 MB
instead of an ``npm install``; a copy rather than hard links, because instances write into
their trees.

:func:`bundle_release` makes the content of a CodeDeploy revision: the release's source
without dependencies (the AfterInstall hook installs them on the instance) plus the
scripts that do it::

    etherpad-lite/     the release tree: src/, .git for git sources, RELEASE
    etherpad/          bin/, plugin/, settings.json.template (this repository's etherpad/)

The hook then runs ``etherpad/bin/install-etherpad.sh --from-tree etherpad-lite``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from deployer.base import logs
from deployer.base.assets import asset_path
from deployer.base.errors import SourceError
from deployer.base.fsutil import tree_size
from deployer.etherpad.sources import ReleaseSource, check_release_name

log = logs.get_logger(component="etherpad.install")

INSTALL_MANIFEST = ".deployer-install.json"
INSTALL_TIMEOUT_S = 1800.0
ERROR_PREFIX = "install-etherpad.sh: error: "
# The part of etherpad/ a machine needs to install and run a release (not the stacks).
BUNDLED_ASSETS = ("bin", "plugin", "settings.json.template")


class InstalledRelease(BaseModel):
    root: Path
    release: str
    commit: str | None
    source: str
    size_bytes: int
    files: int
    seconds: float
    from_cache: bool = False


class ReleaseBundle(BaseModel):
    path: Path
    release: str
    commit: str | None
    size_bytes: int
    files: int


def script_path(name: str) -> Path:
    """One of the scripts in etherpad/bin (install-, start-, stop-etherpad.sh, wait-healthy.sh)."""
    return asset_path("etherpad", "bin", name)


def install_release(release: str, source: ReleaseSource, root: Path, *,
                    cache_dir: Path | None = None, env: Mapping[str, str] | None = None,
                    timeout: float = INSTALL_TIMEOUT_S) -> InstalledRelease:
    """Install ``release`` from ``source`` into ``root``, ready for start-etherpad.sh.

    ``root`` must be new, empty, or hold an earlier install (replaced; its var/ and keys
    are kept). ``env`` adds to the installer's environment (npm settings, for example).
    """
    check_release_name(release)
    root = root.absolute()
    installer_env = {
        **os.environ,
        **(env or {}),
        **source.installer_env(release),
        "ETHERPAD_HOME": str(root),
        "ETHERPAD_RELEASE": release,
    }
    installer_env.pop("ETHERPAD_CACHE_DIR", None)
    if cache_dir is not None:
        installer_env["ETHERPAD_CACHE_DIR"] = str(cache_dir.absolute())
    log.info("release.install", release=release, source=source.spec, root=str(root),
             cache=str(cache_dir) if cache_dir else None)
    _run_installer([str(script_path("install-etherpad.sh"))], installer_env, timeout,
                   what=f"installing {release} from {source.spec}")
    return read_install(root)


def read_install(root: Path) -> InstalledRelease:
    """What the installer recorded about the install in ``root``, with its size on disk."""
    try:
        manifest = json.loads((root / INSTALL_MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"{root} holds no finished install ({INSTALL_MANIFEST} unreadable)",
                          hint="install the release again") from exc
    size, files = tree_size(root)
    return InstalledRelease(root=root, release=manifest["release"], commit=manifest["commit"],
                            source=manifest["source"], size_bytes=size, files=files,
                            seconds=manifest["seconds"], from_cache=manifest["from_cache"])


def bundle_release(release: str, source: ReleaseSource, dest: Path) -> ReleaseBundle:
    """The content of a CodeDeploy revision for ``release``: a directory, or a tarball when
    ``dest`` ends in .tar.gz or .tgz."""
    check_release_name(release)
    dest = dest.absolute()
    as_tarball = dest.name.endswith((".tar.gz", ".tgz"))
    if dest.exists():
        raise SourceError(f"{dest} already exists", hint="bundle into a new path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as work:
        staging = Path(work) / "bundle"
        staging.mkdir()
        fetched = source.fetch(release, staging / "etherpad-lite")
        (fetched.tree / "RELEASE").write_text(release + "\n")
        assets = staging / "etherpad"
        assets.mkdir()
        for name in BUNDLED_ASSETS:
            item = asset_path("etherpad", name)
            if item.is_dir():
                shutil.copytree(item, assets / name,
                                ignore=shutil.ignore_patterns("__pycache__", ".ep_initialized"))
            else:
                shutil.copy2(item, assets / name)
        size, files = tree_size(staging)
        if as_tarball:
            with tarfile.open(dest, "w:gz") as tar:
                for child in sorted(staging.iterdir()):
                    tar.add(child, arcname=child.name)
        else:
            staging.rename(dest)
    log.info("release.bundled", release=release, source=source.spec, path=str(dest),
             size_bytes=size, files=files)
    return ReleaseBundle(path=dest, release=release, commit=fetched.commit, size_bytes=size,
                         files=files)


def _run_installer(cmd: list[str], env: Mapping[str, str], timeout: float, *,
                   what: str) -> None:
    # Its own process group: on a timeout npm and git go down with the script.
    proc = subprocess.Popen(cmd, env=dict(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise SourceError(f"{what} took longer than {timeout:.0f} s",
                          hint="check the network, or raise the timeout") from exc
    for line in (stdout + stderr).splitlines():
        if line.strip():
            log.debug("installer.output", line=line)
    if proc.returncode != 0:
        errors = [line[len(ERROR_PREFIX):] for line in stderr.splitlines()
                  if line.startswith(ERROR_PREFIX)]
        if errors:
            raise SourceError(errors[-1])
        tail = [line for line in stderr.splitlines() if line.strip()][-3:]
        raise SourceError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")

"""The Node side of the simulated editors: where its npm dependencies live and how it runs.

The editors are a Node script (``driver/driver.js``) because the two things they must get
exactly right already exist there: socket.io-client 2, whose reconnection is what Etherpad
1.8.x's pad.js configures, and Etherpad's own ``Changeset.js`` (the copy etherpad-cli-client
ships) for the changesets and their transforms. Its dependencies are installed from the npm
registry into the data dir (``./run setup`` does it once; :func:`ensure_driver` on demand),
keyed by the driver's package.json so a changed dependency gets a fresh install.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from deployer.base.errors import SourceError
from deployer.base.home import deployer_home

DRIVER_DIR = Path(__file__).with_name("driver")
DRIVER_SCRIPT = DRIVER_DIR / "driver.js"
NPM_INSTALL_TIMEOUT_S = 300


def driver_cache(home: Path | None = None) -> Path:
    manifest = (DRIVER_DIR / "package.json").read_bytes()
    digest = hashlib.sha256(manifest).hexdigest()[:12]
    return (home or deployer_home()) / "cache" / "editors-driver" / digest


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise SourceError("the simulated editors need Node.js on PATH",
                          hint="install Node 18 or 20, as Etherpad itself needs")
    return node


def ensure_driver(home: Path | None = None) -> Path:
    """The driver's node_modules, installed from the npm registry when missing."""
    cache = driver_cache(home)
    modules = cache / "node_modules"
    if (modules / ".deployer-complete").exists():
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise SourceError("the simulated editors need npm on PATH to install their client",
                          hint="install Node.js with npm, then run ./run setup")
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(DRIVER_DIR / "package.json", cache / "package.json")
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--omit=dev",
                               "--no-package-lock"], cwd=cache, capture_output=True, text=True,
                              timeout=NPM_INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"npm install of the editors' client took over "
                          f"{NPM_INSTALL_TIMEOUT_S} s", hint="check the npm registry") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SourceError(f"npm install of the editors' client failed: {last}",
                          hint="check that the npm registry is reachable, then ./run setup")
    (modules / ".deployer-complete").write_text("")
    return modules


def launch(config: dict, modules: Path) -> subprocess.Popen:
    """Start the driver with ``config``; its events come as JSON lines on stdout."""
    env = {**os.environ, "NODE_PATH": str(modules)}
    return subprocess.Popen([node_binary(), str(DRIVER_SCRIPT), json.dumps(config)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, bufsize=1)


if __name__ == "__main__":  # ./run setup
    print(ensure_driver())

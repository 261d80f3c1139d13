"""Run an installed Etherpad through the same scripts machines use, and build git fixtures.

GitHub is out of reach from test machines, so git sources are tested against repositories
made here: :func:`make_release_repo` commits one tree per release tag.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlencode

from deployer.etherpad import script_path
from deployer.etherpad.mirror import write_release_tree
from tests.support.postgres import free_port

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Fixture", "GIT_AUTHOR_EMAIL": "fixture@example.invalid",
                "GIT_COMMITTER_NAME": "Fixture", "GIT_COMMITTER_EMAIL": "fixture@example.invalid"}


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                            env={**os.environ, **GIT_IDENTITY}, timeout=60)
    return result.stdout.strip()


def make_release_repo(repo: Path, releases: Mapping[str, Callable[[Path, str], None]]) -> dict[str, str]:
    """A repository whose tags are ``releases``, each a commit of the tree its callable
    writes into the work tree (called with the work tree and the release). Annotated tags,
    as ether/etherpad-lite uses. Returns tag -> commit."""
    repo.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=develop", cwd=repo)
    commits = {}
    for release, write_tree in releases.items():
        for child in repo.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        write_tree(repo, release)
        git("add", "--all", cwd=repo)
        git("commit", "--quiet", "-m", f"Release {release}", cwd=repo)
        git("tag", "-a", release, "-m", f"Release {release}", cwd=repo)
        commits[release] = git("rev-parse", "HEAD", cwd=repo)
    return commits


def bare_copy(repo: Path, dest: Path, *, how: str = "--mirror") -> Path:
    """``git clone --mirror`` (or ``--bare``) of ``repo`` at ``dest``: a repository as a
    release manager copies it over from a machine that reaches GitHub, with no work tree."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "--quiet", how, "--", str(repo), str(dest), cwd=dest.parent)
    return dest


def tiny_etherpad(tree: Path, release: str) -> None:
    """A stand-in Etherpad tree: enough for fetching and verifying, not for running."""
    (tree / "src" / "node").mkdir(parents=True)
    (tree / "src" / "package.json").write_text(json.dumps(
        {"name": "ep_etherpad-lite", "version": release}, indent=2) + "\n")
    (tree / "src" / "node" / "server.js").write_text(f"// Etherpad {release}\n")
    (tree / "settings.json.template").write_text("{}\n")


def etherpad_from_install(installed: Path) -> Callable[[Path, str], None]:
    """The real Etherpad of an npm install, laid out as a release of the git repository:
    src/ without node_modules, and a lockfile whose sqlite3 points at GitHub, as the
    lockfiles of releases 1.8.x do (the installer must never go there)."""

    def write(tree: Path, release: str) -> None:
        write_release_tree(installed, tree, release)
        lock_file = tree / "src" / "package-lock.json"
        lock = json.loads(lock_file.read_text())
        sqlite3 = lock["packages"].get("node_modules/sqlite3")
        if sqlite3 is not None:
            sqlite3.pop("integrity", None)
            sqlite3["version"] = "5.0.2"
            sqlite3["resolved"] = ("git+ssh://git@github.com/mapbox/node-sqlite3.git"
                                   "#593c9d498be2510d286349134537e3bf89401c4a")
        lock_file.write_text(json.dumps(lock, indent=2) + "\n")
        (tree / "settings.json.template").write_text("{}\n")

    return write


class EtherpadRun:
    """One Etherpad install, started and stopped with etherpad/bin's scripts."""

    def __init__(self, home: Path, env: Mapping[str, str] | None = None,
                 port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.env = {**os.environ, "ETHERPAD_HOME": str(home), "ETHERPAD_PORT": str(self.port),
                    "ETHERPAD_IP": "127.0.0.1", **(env or {})}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def script(self, name: str, *args: str, timeout: float = 90,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(script_path(name)), *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def start(self, *, release: str | None = None, timeout: int = 60) -> None:
        started = self.script("start-etherpad.sh")
        assert started.returncode == 0, started.stderr
        wait = ["--timeout", str(timeout)] + (["--release", release] if release else [])
        healthy = self.script("wait-healthy.sh", *wait, timeout=timeout + 10)
        assert healthy.returncode == 0, healthy.stderr + self.log_tail()

    def stop(self) -> None:
        stopped = self.script("stop-etherpad.sh")
        assert stopped.returncode == 0, stopped.stderr

    def log_tail(self, lines: int = 30) -> str:
        log = self.home / "var" / "etherpad.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def get(self, path: str = "/") -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            conn.close()

    def api(self, method: str, **params: str) -> dict:
        """Etherpad's HTTP API with the install's key."""
        key = (self.home / "APIKEY.txt").read_text().strip()
        status, _, body = self.get(f"/api/1.2.15/{method}?{urlencode({'apikey': key, **params})}")
        assert status == 200, body
        answer = json.loads(body)
        assert answer["code"] == 0, answer
        return answer["data"] or {}

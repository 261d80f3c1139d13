"""A rehearsal mirror: a local git repository of Etherpad releases built from the npm release.

Machines without GitHub still have the npm registry, which carries Etherpad 1.8.14. This
lays that release out as ether/etherpad-lite's git layout (src/ with its lockfile) and
commits it under release tags, so every strategy can rehearse a real release switch —
from ``1.8.14`` to ``1.8.14-r2``, the same code under a second tag — with
``--source <mirror>``, exactly as it would from GitHub or a company mirror.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from deployer.base import logs
from deployer.base.errors import SourceError
from deployer.etherpad.install import install_release
from deployer.etherpad.sources import resolve_source

NPM_RELEASE = "1.8.14"
REHEARSAL_TAGS = (NPM_RELEASE, f"{NPM_RELEASE}-r2")
_IDENTITY = {"GIT_AUTHOR_NAME": "deployer", "GIT_AUTHOR_EMAIL": "deployer@localhost",
             "GIT_COMMITTER_NAME": "deployer", "GIT_COMMITTER_EMAIL": "deployer@localhost"}

log = logs.get_logger(component="etherpad.mirror")


def _git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, **_IDENTITY}, timeout=120)
    if result.returncode != 0:
        raise SourceError(f"git {args[0]} failed in {cwd}: {result.stderr.strip()[-300:]}")
    return result.stdout.strip()


def write_release_tree(installed: Path, tree: Path, release: str) -> None:
    """The installed npm release as a git checkout of ``release`` would hold it."""
    shutil.copytree(installed / "src", tree / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("node_modules"))
    package_file = tree / "src" / "package.json"
    package = json.loads(package_file.read_text())
    package.pop("overrides", None)
    package["version"] = release
    package_file.write_text(json.dumps(package, indent=2) + "\n")
    lock_file = tree / "src" / "package-lock.json"
    if lock_file.exists():
        lock = json.loads(lock_file.read_text())
        lock["version"] = release
        lock.get("packages", {}).get("", {})["version"] = release
        lock_file.write_text(json.dumps(lock, indent=2) + "\n")


def build_rehearsal_mirror(repo: Path, work: Path,
                           tags: tuple[str, ...] = REHEARSAL_TAGS) -> Path:
    """Create (once) a git repository at ``repo`` with one commit per tag."""
    if (repo / ".git").exists() and set(tags) <= set(_git("tag", cwd=repo).split()):
        return repo
    shutil.rmtree(repo, ignore_errors=True)
    installed = install_release(NPM_RELEASE, resolve_source("npm"), work / "npm-install")
    repo.mkdir(parents=True)
    _git("init", "--quiet", "--initial-branch=develop", cwd=repo)
    for tag in tags:
        for child in repo.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        write_release_tree(installed.root, repo, tag)
        _git("add", "--all", cwd=repo)
        _git("commit", "--quiet", "-m", f"Release {tag} (rehearsal, from npm {NPM_RELEASE})",
             cwd=repo)
        _git("tag", "-a", tag, "-m", f"Release {tag}", cwd=repo)
    shutil.rmtree(work / "npm-install", ignore_errors=True)
    log.info("mirror.built", repo=str(repo), tags=list(tags))
    return repo

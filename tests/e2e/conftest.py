"""Shared by the end-to-end tests: a git mirror of Etherpad releases built from npm.

GitHub is out of reach here, so the releases come from a git mirror built from the npm
release of Etherpad (1.8.14): tag ``1.8.14`` and tag ``1.8.14-r2`` (the same code, a second
release as far as every tool is concerned), plus ``1.8.14-broken``, whose server exits at
start. Built once per session, and handed out as a bare ``git clone --mirror`` of itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.etherpad import install_release, resolve_source
from tests.support.etherpad import bare_copy, etherpad_from_install, make_release_repo

GOOD, NEXT, BROKEN = "1.8.14", "1.8.14-r2", "1.8.14-broken"


def broken(write):
    """The release tree, with a server that refuses to start."""
    def write_broken(tree: Path, release: str) -> None:
        write(tree, release)
        (tree / "src/node/server.js").write_text("console.error('broken release');"
                                                 " process.exit(1);\n")
    return write_broken


@pytest.fixture(scope="session")
def mirror(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("mirror")
    installed = install_release(GOOD, resolve_source("npm"), work / "npm-install")
    write = etherpad_from_install(installed.root)
    repo = work / "etherpad-lite"
    make_release_repo(repo, {GOOD: write, NEXT: write, BROKEN: broken(write)})
    # Bare, as the README's `git clone --mirror` makes it: every end-to-end release and
    # compare reads its releases from a repository without a work tree.
    return bare_copy(repo, work / "etherpad-lite.git")

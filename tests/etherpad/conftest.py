"""Session fixtures: one real Etherpad 1.8.14 install from npm, one PostgreSQL server."""

from __future__ import annotations

import shutil

import pytest

from deployer.etherpad import InstalledRelease, install_release, resolve_source
from tests.support.postgres import PostgresServer, pg_bin


@pytest.fixture(scope="session")
def etherpad_workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("etherpad")
    yield work
    # ~150 MB per installed tree: do not leave them for pytest's next-but-two session.
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def release_cache(etherpad_workdir):
    return etherpad_workdir / "cache"


@pytest.fixture(scope="session")
def npm_install(etherpad_workdir, release_cache) -> InstalledRelease:
    """Etherpad 1.8.14 from the npm registry (npm's own cache makes this ~20 s warm)."""
    return install_release("1.8.14", resolve_source("npm"), etherpad_workdir / "npm-1.8.14",
                           cache_dir=release_cache)


@pytest.fixture(scope="session")
def postgres():
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with PostgresServer() as server:
        yield server

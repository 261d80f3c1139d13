"""A git release end to end, as CodeDeploy ships it: bundle on the deployer, install the
bundle's tree with the bundle's own installer, run it and read its version over HTTP.

The git repository is made here from the real Etherpad of the npm install (GitHub is out of
reach), one tag per release, with a lockfile whose sqlite3 points at GitHub like the
lockfiles of releases 1.8.x.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile

import pytest

from deployer.etherpad import bundle_release, install_release, read_install, resolve_source
from deployer.measure.versions import EtherpadVersion
from tests.support.etherpad import (
    EtherpadRun,
    bare_copy,
    etherpad_from_install,
    make_release_repo,
)


@pytest.fixture(scope="module")
def mirror(npm_install, tmp_path_factory):
    repo = tmp_path_factory.mktemp("git-release") / "etherpad-lite"
    write = etherpad_from_install(npm_install.root)
    commits = make_release_repo(repo, {"1.8.17": write, "1.8.18": write})
    return repo, commits


@pytest.mark.slow
def test_a_bundle_carries_the_release_source_and_the_scripts(mirror, tmp_path):
    repo, commits = mirror
    source = resolve_source(repo.as_uri(), known_commits={"1.8.17": commits["1.8.17"][:7]})
    bundle = bundle_release("1.8.17", source, tmp_path / "revision.tar.gz")
    assert bundle.commit == commits["1.8.17"] and bundle.release == "1.8.17"
    with tarfile.open(bundle.path) as tar:
        names = set(tar.getnames())
    assert {"etherpad-lite/src/package.json", "etherpad-lite/src/package-lock.json",
            "etherpad-lite/RELEASE", "etherpad-lite/.git/HEAD",
            "etherpad/bin/install-etherpad.sh", "etherpad/bin/start-etherpad.sh",
            "etherpad/plugin/ep_deployer_release/ep.json",
            "etherpad/settings.json.template"} <= names
    assert not any("/node_modules/" in name for name in names)
    assert bundle.size_bytes < 20_000_000  # source only: dependencies install on the instance


@pytest.mark.slow
def test_a_git_release_installed_from_its_bundle_names_its_commit_and_release(
        mirror, postgres, tmp_path):
    repo, commits = mirror
    commit = commits["1.8.18"]
    source = resolve_source(str(repo), known_commits={"1.8.18": commit[:7]})
    bundle = bundle_release("1.8.18", source, tmp_path / "revision")
    home = tmp_path / "opt" / "etherpad"
    # What the AfterInstall hook runs: the bundle's own installer on the bundle's tree.
    result = subprocess.run(
        [str(bundle.path / "etherpad" / "bin" / "install-etherpad.sh"),
         "--from-tree", str(bundle.path / "etherpad-lite")],
        env={**os.environ, "ETHERPAD_HOME": str(home)}, capture_output=True, text=True,
        timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "github.com" not in result.stderr  # the sqlite3 override kept npm off GitHub
    installed = read_install(home)
    assert (installed.release, installed.commit) == ("1.8.18", commit)
    lock = json.loads((home / "src" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/sqlite3"]["version"] == "5.1.7"

    run = EtherpadRun(home, env=postgres.etherpad_env())
    run.start(release="1.8.18")
    try:
        status, headers, _ = run.get("/")
        assert status == 200
        assert headers["server"] == f"Etherpad {commit[:7]} (https://etherpad.org)"
        assert headers["x-etherpad-release"] == "1.8.18"
        assert EtherpadVersion().extract(status, headers) == "1.8.18"
        # The Server header alone, as a poller reads a git install it knows the commits of.
        by_commit = EtherpadVersion({commit[:7]: "1.8.18"})
        assert by_commit.extract(status, {"server": headers["server"]}) == "1.8.18"
        # Pads written by the 1.8.14 test (same database) or now are readable here.
        run.api("createPad", padID="from-git", text="hello from 1.8.18")
        assert run.api("getText", padID="from-git")["text"] == "hello from 1.8.18\n"
    finally:
        run.stop()
        shutil.rmtree(home, ignore_errors=True)  # ~150 MB


@pytest.mark.slow
def test_a_release_installs_from_a_bare_mirror(mirror, tmp_path):
    """What the README tells a release manager to do: `git clone --mirror`, copy it over,
    pass its path. The installer (as instances run it) clones from the bare repository."""
    repo, commits = mirror
    bare = bare_copy(repo, tmp_path / "etherpad-lite.git")
    source = resolve_source(str(bare), known_commits={"1.8.18": commits["1.8.18"][:7]})
    home = tmp_path / "opt" / "etherpad"
    installed = install_release("1.8.18", source, home)
    try:
        assert (installed.release, installed.commit) == ("1.8.18", commits["1.8.18"])
        assert (home / "src" / "node_modules").is_dir()
        assert (home / ".git" / "HEAD").read_text().strip() == commits["1.8.18"]
    finally:
        shutil.rmtree(home, ignore_errors=True)  # ~150 MB

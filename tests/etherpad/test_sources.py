"""Release sources: fetching by tag, verifying commits and versions, failing in one line."""

from __future__ import annotations

import json
import socket
import subprocess
import tarfile
import threading
import time

import pytest

from deployer.base.errors import SourceError
from deployer.etherpad import SourceKind, resolve_source
from deployer.etherpad.sources import (
    DirectorySource,
    GitSource,
    NpmSource,
    TarballSource,
)
from tests.support.etherpad import bare_copy, git, make_release_repo, tiny_etherpad
from tests.support.postgres import free_port


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A repository with tags 1.8.17 and 1.8.18 (commits of its own, not ether's)."""
    repo = tmp_path_factory.mktemp("sources") / "mirror"
    commits = make_release_repo(repo, {"1.8.17": tiny_etherpad, "1.8.18": tiny_etherpad})
    return repo, commits


def package_version(tree):
    return json.loads((tree / "src" / "package.json").read_text())["version"]


# -- choosing a source ------------------------------------------------------------------------
def test_source_specs_name_their_kind(mirror, tmp_path):
    repo, _ = mirror
    (tmp_path / "release").mkdir()
    (tmp_path / "release.tar.gz").write_bytes(b"")
    assert resolve_source("github").kind is SourceKind.GITHUB
    assert resolve_source("").kind is SourceKind.GITHUB
    assert resolve_source("npm").kind is SourceKind.NPM
    assert resolve_source("https://git.example.invalid/etherpad.git").kind is SourceKind.GIT
    assert resolve_source("git@git.example.invalid:ether/etherpad-lite.git").kind is SourceKind.GIT
    assert resolve_source(str(repo)).kind is SourceKind.GIT
    assert resolve_source(repo.as_uri()).kind is SourceKind.GIT
    assert isinstance(resolve_source(str(tmp_path / "release")), DirectorySource)
    assert isinstance(resolve_source(str(tmp_path / "release.tar.gz")), TarballSource)
    # a folder inside a repository is a release directory, not the repository
    assert isinstance(resolve_source(str(repo / "src")), DirectorySource)


def test_a_missing_path_is_a_one_line_error(tmp_path):
    with pytest.raises(SourceError, match="no such path, and not github, npm or a git URL"):
        resolve_source(str(tmp_path / "nowhere"))


def test_release_names_cannot_escape(mirror, tmp_path):
    repo, _ = mirror
    with pytest.raises(SourceError, match="is not a release name"):
        resolve_source(str(repo), known_commits={}).fetch("../1.8.18", tmp_path / "t")


# -- hostile specs: nothing reaches git as an option, or a shell as code ----------------------
@pytest.mark.parametrize("spec", [
    "--upload-pack=touch pwned;://",
    "--upload-pack=touch${IFS}pwned",
    "-oProxyCommand=touch${IFS}pwned",
], ids=["upload-pack url", "upload-pack path", "ssh option"])
def test_a_spec_that_git_would_read_as_an_option_is_refused(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError) as err:
        resolve_source(spec).fetch("1.8.18", tmp_path / "tree")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no pwned, no tree


def test_git_gets_urls_after_a_double_dash(mirror, tmp_path, monkeypatch):
    """Past the rule (a GitSource made in code), git still reads the URL as a repository.

    Without ``--``, ``git ls-remote --tags --upload-pack=...`` in a checkout with a remote
    (deployer's own, say) runs the command against that remote."""
    repo, _ = mirror
    checkout = tmp_path / "checkout"
    git("clone", "--quiet", "--", str(repo), str(checkout), cwd=tmp_path)
    monkeypatch.chdir(checkout)
    source = GitSource("file:///nonexistent", known_commits={})
    source.url = "--upload-pack=touch pwned;:"  # what the constructor refuses
    with pytest.raises(SourceError, match="listing the tags of"):
        source.tags()
    with pytest.raises(SourceError):
        source.fetch("1.8.18", tmp_path / "tree")
    assert not (checkout / "pwned").exists() and not (tmp_path / "pwned").exists()
    with pytest.raises(SourceError, match="is not a git URL"):
        GitSource("--upload-pack=touch pwned")


@pytest.mark.parametrize("spec", [
    "https://127.0.0.1;id>pwned;#/x.git",
    "https://mirror.example.invalid/x.git' ; touch /tmp/pwned ; '",
    "/srv/mirrors/etherpad lite.git",
    "$(touch pwned)",
    "https://mirror.example.invalid/x.git\ntouch pwned",
], ids=["semicolon host", "quote", "space", "command substitution", "newline"])
def test_shell_characters_in_a_source_are_refused(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match="holds characters a source may not have"):
        resolve_source(spec)
    assert list(tmp_path.iterdir()) == []


def test_installer_env_tells_the_script_the_same_source():
    github = resolve_source("github", github_url="https://mirror.example.invalid/ep.git")
    assert github.installer_env("1.8.18") == {
        "ETHERPAD_SOURCE": "github", "ETHERPAD_COMMIT": "4b96ff6",
        "ETHERPAD_GITHUB_URL": "https://mirror.example.invalid/ep.git"}
    assert github.installer_env("1.8.16")["ETHERPAD_COMMIT"] == "any"
    assert resolve_source("npm").installer_env("1.8.14") == {
        "ETHERPAD_SOURCE": "npm", "ETHERPAD_COMMIT": "any"}


# -- git ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_fetch_by_tag_from_a_mirror(mirror, tmp_path, as_url):
    repo, commits = mirror
    source = resolve_source(repo.as_uri() if as_url else str(repo), known_commits={})
    fetched = source.fetch("1.8.17", tmp_path / "tree")
    assert fetched.release == "1.8.17"
    assert fetched.commit == commits["1.8.17"]
    assert package_version(fetched.tree) == "1.8.17"
    # .git stays: Etherpad's Server header reads the commit from it
    assert git("rev-parse", "HEAD", cwd=fetched.tree) == commits["1.8.17"]
    assert (fetched.tree / ".git" / "HEAD").read_text().strip() == commits["1.8.17"]


# -- bare repositories: what `git clone --mirror` and `--bare` make ---------------------------
@pytest.fixture(scope="module", params=["--mirror", "--bare"])
def bare(mirror, tmp_path_factory, request):
    repo, commits = mirror
    name = request.param.strip("-")
    return bare_copy(repo, tmp_path_factory.mktemp(name) / "etherpad-lite.git",
                     how=request.param), commits


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_a_bare_repository_is_a_git_source(bare, tmp_path, as_url):
    repo, commits = bare
    spec = repo.as_uri() if as_url else str(repo)
    source = resolve_source(spec, known_commits={})
    assert isinstance(source, GitSource) and source.kind is SourceKind.GIT
    assert source.tags() == {"1.8.17": commits["1.8.17"], "1.8.18": commits["1.8.18"]}
    fetched = source.fetch("1.8.18", tmp_path / "tree")
    assert fetched.commit == commits["1.8.18"]
    assert package_version(fetched.tree) == "1.8.18"
    assert (fetched.tree / ".git" / "HEAD").read_text().strip() == commits["1.8.18"]


def test_the_git_directory_of_a_work_tree_is_a_git_source(mirror, tmp_path):
    repo, commits = mirror
    source = resolve_source(str(repo / ".git"), known_commits={})
    assert isinstance(source, GitSource)
    assert source.fetch("1.8.17", tmp_path / "tree").commit == commits["1.8.17"]


def test_a_folder_inside_a_bare_repository_is_not_the_repository(bare):
    repo, _ = bare
    assert isinstance(resolve_source(str(repo / "refs")), DirectorySource)


def test_fetch_accepts_the_known_commit(mirror, tmp_path):
    repo, commits = mirror
    source = resolve_source(str(repo), known_commits={"1.8.18": commits["1.8.18"][:7]})
    assert source.fetch("1.8.18", tmp_path / "tree").commit == commits["1.8.18"]


def test_a_tag_on_another_commit_than_the_release_is_refused(mirror, tmp_path):
    repo, commits = mirror
    source = resolve_source(str(repo))  # the real commits: 1.8.17 is c85ab49
    with pytest.raises(SourceError) as err:
        source.fetch("1.8.17", tmp_path / "tree")
    message = str(err.value)
    assert f"is commit {commits['1.8.17'][:12]}, but release 1.8.17 of ether/etherpad-lite is " \
           "c85ab49" in message
    assert "\n" not in message
    assert not (tmp_path / "tree").exists()


def test_an_unknown_tag_lists_the_tags_there_are(mirror, tmp_path):
    repo, _ = mirror
    with pytest.raises(SourceError, match=r"has no tag 1\.9\.0 \(its tags: 1\.8\.17, 1\.8\.18\)"):
        resolve_source(str(repo), known_commits={}).fetch("1.9.0", tmp_path / "tree")


def test_a_tag_whose_tree_is_another_version_is_refused(tmp_path):
    repo = tmp_path / "repo"
    make_release_repo(repo, {"1.8.16": lambda tree, _release: tiny_etherpad(tree, "1.8.15")})
    with pytest.raises(SourceError, match=r"holds Etherpad 1.8.15, not 1.8.16"):
        resolve_source(str(repo), known_commits={}).fetch("1.8.16", tmp_path / "tree")


def test_fetching_into_a_non_empty_directory_is_refused(mirror, tmp_path):
    repo, _ = mirror
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "something").write_text("x")
    with pytest.raises(SourceError, match="already exists and is not empty"):
        resolve_source(str(repo), known_commits={}).fetch("1.8.17", tmp_path / "tree")


def test_offline_github_is_a_fast_one_line_error(tmp_path):
    # GitHub stand-in: a loopback port nobody listens on (tests never leave 127.0.0.1).
    unreachable = f"https://127.0.0.1:{free_port()}/ether/etherpad-lite.git"
    source = resolve_source("github", github_url=unreachable)
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        source.fetch("1.8.18", tmp_path / "tree")
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("cannot reach 127.0.0.1:")
    assert "--source with a mirror path or URL, or --source npm with release 1.8.14" in message


def test_a_host_that_never_answers_ends_at_the_list_timeout(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    stop = threading.Event()

    def accept_and_hold():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/ether/etherpad-lite.git"
        source = GitSource(url, known_commits={}, list_timeout=2)
        started = time.monotonic()
        with pytest.raises(SourceError, match="took longer than 2 s"):
            source.fetch("1.8.18", tmp_path / "tree")
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


# -- one release on disk ------------------------------------------------------------------------
def test_a_directory_is_copied_without_what_installs_add(tmp_path):
    release = tmp_path / "installed"
    tiny_etherpad(release, "1.8.14")
    for extra in ("node_modules/x", "src/node_modules/y", "var"):
        (release / extra).mkdir(parents=True)
    for secret in ("APIKEY.txt", "SESSIONKEY.txt", "settings.json"):
        (release / secret).write_text("secret")
    fetched = resolve_source(str(release)).fetch("1.8.14", tmp_path / "tree")
    assert fetched.kind is SourceKind.DIRECTORY and fetched.commit is None
    names = {p.relative_to(fetched.tree).as_posix() for p in fetched.tree.rglob("*")}
    assert "src/package.json" in names
    assert not names & {"node_modules", "src/node_modules", "var", "APIKEY.txt",
                        "SESSIONKEY.txt", "settings.json"}


def test_a_directory_of_another_release_is_refused(tmp_path):
    tiny_etherpad(tmp_path / "release", "1.8.14")
    with pytest.raises(SourceError, match=r"holds Etherpad 1.8.14, not 1.8.18"):
        resolve_source(str(tmp_path / "release")).fetch("1.8.18", tmp_path / "tree")


def test_a_git_archive_tarball_carries_its_commit(mirror, tmp_path):
    repo, commits = mirror
    tarball = tmp_path / "etherpad-lite-1.8.18.tar.gz"
    git("archive", "--format=tar.gz", "--prefix=etherpad-lite-1.8.18/", "-o", str(tarball),
        "1.8.18", cwd=repo)
    fetched = resolve_source(str(tarball), known_commits={}).fetch("1.8.18", tmp_path / "tree")
    assert fetched.commit == commits["1.8.18"]
    assert package_version(fetched.tree) == "1.8.18"
    with pytest.raises(SourceError, match=r"but release 1.8.18 of ether/etherpad-lite is 4b96ff6"):
        resolve_source(str(tarball)).fetch("1.8.18", tmp_path / "tree2")


def test_an_npm_pack_tarball_becomes_src(tmp_path):
    tiny_etherpad(tmp_path / "t", "1.8.14")
    tarball = tmp_path / "ep_etherpad-lite-1.8.14.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "t" / "src", arcname="package")
    fetched = resolve_source(str(tarball)).fetch("1.8.14", tmp_path / "tree")
    assert package_version(fetched.tree) == "1.8.14" and fetched.commit is None


# -- npm (the registry, through npm's cache) ------------------------------------------------------
def test_npm_lists_what_it_has_for_an_unknown_release(tmp_path):
    with pytest.raises(SourceError) as err:
        NpmSource().fetch("1.8.18", tmp_path / "tree")
    assert str(err.value) == ("npm has ep_etherpad-lite 1.8.14 only, not 1.8.18 "
                              "(use --source github or a mirror for 1.8.18)")


def test_npm_fetches_the_package_as_src(tmp_path):
    fetched = NpmSource().fetch("1.8.14", tmp_path / "tree")
    assert fetched.commit is None and fetched.kind is SourceKind.NPM
    assert package_version(fetched.tree) == "1.8.14"
    assert (fetched.tree / "src" / "node" / "server.js").is_file()
    assert not (fetched.tree / ".git").exists()
    # the source only: no dependencies, and no leftovers beside the tree
    assert not (fetched.tree / "src" / "node_modules").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tree"]


def test_npm_source_reports_a_missing_npm(tmp_path):
    with pytest.raises(SourceError, match=r"^npm is not installed .*install npm"):
        NpmSource(npm=str(tmp_path / "bin" / "npm")).fetch("1.8.14", tmp_path / "tree")


def test_git_history_is_shallow(mirror, tmp_path):
    repo, _ = mirror
    fetched = resolve_source(str(repo), known_commits={}).fetch("1.8.18", tmp_path / "tree")
    count = subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=fetched.tree,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert count == "1"

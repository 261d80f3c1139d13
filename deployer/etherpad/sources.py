"""Where Etherpad releases come from: the ``--source`` of a release.

==================  =====================================================================
``github``          tags of https://github.com/ether/etherpad-lite (the default)
``npm``             ``ep_etherpad-lite@VERSION`` from the npm registry (it only has 1.8.14)
URL or repo path    a git mirror holding the release tags
directory           one release tree: ``src/package.json`` (git layout) or an npm package
tarball             one release as ``.tar.gz``: ``git archive``/GitHub layout or ``npm pack``
==================  =====================================================================

A source turns a release name into an Etherpad tree in git layout (``src/`` is the
``ep_etherpad-lite`` package, ``.git`` kept for git sources so Etherpad's ``Server`` header
names the commit), verifying what can be verified on the way: a tag's commit against the
known commits of ether/etherpad-lite, and the package version against the release. Every
failure is one :class:`SourceError` line naming the source and what to do.

Machines that install on their own (user data, Packer, CodeDeploy hooks, the local cloud's
instances) run ``etherpad/bin/install-etherpad.sh``, which reads the same source specs;
:meth:`ReleaseSource.installer_env` says how to hand a source over to it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

from deployer.base import logs
from deployer.base.errors import SourceError
from deployer.etherpad.releases import (
    KNOWN_RELEASE_COMMITS,
    check_release_name,
    check_source_spec,
)

log = logs.get_logger(component="etherpad.sources")

GITHUB_URL = "https://github.com/ether/etherpad-lite.git"
NPM_PACKAGE = "ep_etherpad-lite"
# release -> commit (7 hex digits, as Etherpad's Server header shows it)
KNOWN_COMMITS: dict[str, str] = {release: commit
                                 for commit, release in KNOWN_RELEASE_COMMITS.items()}

CONNECT_TIMEOUT_S = 5.0
LIST_TIMEOUT_S = 60.0
FETCH_TIMEOUT_S = 900.0

_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@(?P<host>[A-Za-z0-9.-]+):")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
# What an install or a running Etherpad adds to a release tree; never part of a release.
_NOT_RELEASE = {"node_modules", "var", "settings.json", "credentials.json", "APIKEY.txt",
                "SESSIONKEY.txt", ".deployer-install.json"}
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
            "GIT_HTTP_LOW_SPEED_TIME": "30"}


class SourceKind(str, Enum):
    GITHUB = "github"
    NPM = "npm"
    GIT = "git"
    DIRECTORY = "directory"
    TARBALL = "tarball"


class FetchedRelease(BaseModel):
    """An Etherpad release tree on disk, not yet installed (no node_modules)."""

    release: str
    tree: Path
    commit: str | None = None
    source: str
    kind: SourceKind


class ReleaseSource(ABC):
    """Somewhere Etherpad releases can be fetched from."""

    kind: SourceKind

    def __init__(self, spec: str, *, known_commits: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.known_commits = dict(KNOWN_COMMITS if known_commits is None else known_commits)

    @abstractmethod
    def fetch(self, release: str, dest: Path) -> FetchedRelease:
        """Put the release's tree at ``dest`` (which must not exist yet, or be empty)."""

    def expected_commit(self, release: str) -> str | None:
        return self.known_commits.get(release)

    def installer_env(self, release: str) -> dict[str, str]:
        """The environment that makes install-etherpad.sh fetch ``release`` from here."""
        return {"ETHERPAD_SOURCE": self.spec,
                "ETHERPAD_COMMIT": self.expected_commit(release) or "any"}

    def __str__(self) -> str:
        return self.spec

    def _check_commit(self, release: str, commit: str, what: str) -> None:
        expected = self.expected_commit(release)
        if expected and not commit.startswith(expected):
            raise SourceError(f"{what} is commit {commit[:12]}, but release {release} of "
                              f"ether/etherpad-lite is {expected}",
                              hint="use a mirror of the real ether/etherpad-lite history")


# -- git ------------------------------------------------------------------------------------
class GitSource(ReleaseSource):
    """Release tags of a git repository: GitHub, a mirror URL, or a local repository."""

    def __init__(self, url: str, *, kind: SourceKind = SourceKind.GIT, spec: str | None = None,
                 known_commits: Mapping[str, str] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S,
                 list_timeout: float = LIST_TIMEOUT_S) -> None:
        super().__init__(spec or url, known_commits=known_commits)
        if url.startswith("-"):  # git would take it for an option (--upload-pack=...)
            raise SourceError(f"{url!r} is not a git URL", hint="give a URL or a path")
        self.kind = kind
        local = Path(url)
        self.url = local.resolve().as_uri() if "://" not in url and local.exists() else url
        self.connect_timeout = connect_timeout
        self.list_timeout = list_timeout

    def installer_env(self, release: str) -> dict[str, str]:
        env = super().installer_env(release)
        if self.kind is SourceKind.GITHUB:
            env["ETHERPAD_GITHUB_URL"] = self.url
        return env

    @property
    def _unreachable_hint(self) -> str:
        if self.kind is SourceKind.GITHUB:
            return ("use --source with a mirror path or URL, or --source npm with "
                    "release 1.8.14")
        return "check the URL, or use --source with a reachable mirror"

    def tags(self) -> dict[str, str]:
        """Tag name -> commit (annotated tags peeled)."""
        _check_reachable(self.url, self.connect_timeout, self._unreachable_hint)
        result = _run(["git", "ls-remote", "--tags", "--", self.url], timeout=self.list_timeout,
                      what=f"listing the tags of {self.spec}", hint=self._unreachable_hint,
                      env=_GIT_ENV)
        tags: dict[str, str] = {}
        peeled: dict[str, str] = {}
        for line in result.stdout.splitlines():
            commit, _, ref = line.partition("\t")
            if not ref.startswith("refs/tags/"):
                continue
            name = ref[len("refs/tags/"):]
            if name.endswith("^{}"):
                peeled[name[:-3]] = commit
            else:
                tags[name] = commit
        tags.update(peeled)
        return tags

    def fetch(self, release: str, dest: Path) -> FetchedRelease:
        check_release_name(release)
        _require_empty(dest)
        tags = self.tags()
        commit = tags.get(release)
        if commit is None:
            listed = ", ".join(sorted(tags, key=_version_key)[-12:]) or "none"
            raise SourceError(f"{self.spec} has no tag {release} (its tags: {listed})",
                              hint="pick one of those, or another --source")
        self._check_commit(release, commit, f"tag {release} of {self.spec}")
        log.info("release.fetch", release=release, source=self.spec, commit=commit[:12])
        _run(["git", "-c", "advice.detachedHead=false", "clone", "--quiet", "--depth", "1",
              "--branch", release, "--", self.url, str(dest)], timeout=FETCH_TIMEOUT_S,
             what=f"fetching {release} from {self.spec}", hint=self._unreachable_hint,
             env=_GIT_ENV)
        head = _run(["git", "-C", str(dest), "rev-parse", "HEAD"], timeout=30,
                    what="reading the fetched commit").stdout.strip()
        if head != commit:
            raise SourceError(f"tag {release} of {self.spec} moved while fetching "
                              f"({commit[:12]} -> {head[:12]})", hint="fetch again")
        _check_tree(dest, release, f"tag {release} of {self.spec}")
        return FetchedRelease(release=release, tree=dest, commit=head, source=self.spec,
                              kind=self.kind)


# -- npm ------------------------------------------------------------------------------------
class NpmSource(ReleaseSource):
    """``ep_etherpad-lite`` from the npm registry; a tree without .git, so no commit."""

    kind = SourceKind.NPM

    def __init__(self, package: str = NPM_PACKAGE, *, npm: str = "npm",
                 known_commits: Mapping[str, str] | None = None) -> None:
        super().__init__("npm", known_commits=known_commits)
        self.package = package
        self.npm = npm

    def expected_commit(self, release: str) -> str | None:
        return None  # the npm tarball carries no commit to check

    def versions(self) -> list[str]:
        result = _run([self.npm, "view", self.package, "versions", "--json", "--prefer-offline"],
                      timeout=LIST_TIMEOUT_S, what=f"asking npm for {self.package}",
                      hint="check the network or npm's registry setting")
        try:
            versions = json.loads(result.stdout or "[]")
        except json.JSONDecodeError as exc:
            raise SourceError(f"npm answered nonsense for {self.package}: "
                              f"{result.stdout[:80]!r}") from exc
        return [versions] if isinstance(versions, str) else list(versions)

    def fetch(self, release: str, dest: Path) -> FetchedRelease:
        check_release_name(release)
        _require_empty(dest)
        versions = self.versions()
        if release not in versions:
            raise SourceError(f"npm has {self.package} {', '.join(versions) or 'in no version'} "
                              f"only, not {release}",
                              hint=f"use --source github or a mirror for {release}")
        if not _SEMVER.match(release):
            raise SourceError(f"{release!r} is not an exact npm version",
                              hint="give a version like 1.8.14")
        log.info("release.fetch", release=release, source="npm")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".npm-pack.") as work:
            result = _run([self.npm, "pack", f"{self.package}@{release}", "--json",
                           "--prefer-offline"], timeout=FETCH_TIMEOUT_S, cwd=Path(work),
                          what=f"fetching {self.package}@{release} from npm",
                          hint="check the network or npm's registry setting")
            try:
                filename = json.loads(result.stdout)[0]["filename"]
            except (json.JSONDecodeError, LookupError, TypeError) as exc:
                raise SourceError(f"npm pack gave no tarball for {self.package}@{release}") \
                    from exc
            package = _extract(Path(work) / filename, Path(work) / "x") / "package"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.move(str(package), dest / "src")
        _check_tree(dest, release, f"{self.package}@{release} from npm")
        return FetchedRelease(release=release, tree=dest, source=self.spec, kind=self.kind)


# -- one release on disk ----------------------------------------------------------------------
class _PathSource(ReleaseSource):
    """A release that sits on this machine's disk, named by its path."""

    def __init__(self, path: Path, *, known_commits: Mapping[str, str] | None = None) -> None:
        self.path = path.resolve()
        super().__init__(str(self.path), known_commits=known_commits)


class DirectorySource(_PathSource):
    """A directory holding one release (an installed tree is fine: installs are left out)."""

    kind = SourceKind.DIRECTORY

    def fetch(self, release: str, dest: Path) -> FetchedRelease:
        check_release_name(release)
        _require_empty(dest)
        ignore = shutil.ignore_patterns(*_NOT_RELEASE)
        if (self.path / "src" / "package.json").is_file():
            _copy_tree(self.path, dest, ignore)
        elif (self.path / "package.json").is_file():
            dest.mkdir(parents=True, exist_ok=True)
            _copy_tree(self.path, dest / "src", ignore)
        else:
            raise SourceError(f"{self.spec} holds no Etherpad (no src/package.json)",
                              hint="give a tree of ether/etherpad-lite or the ep_etherpad-lite "
                                   "package")
        commit = None
        if (dest / ".git").exists():
            commit = _run(["git", "-C", str(dest), "rev-parse", "HEAD"], timeout=30,
                          what=f"reading the commit of {self.spec}").stdout.strip() or None
        if commit:
            self._check_commit(release, commit, self.spec)
        _check_tree(dest, release, self.spec)
        return FetchedRelease(release=release, tree=dest, commit=commit, source=self.spec,
                              kind=self.kind)


class TarballSource(_PathSource):
    """A tarball of one release: ``git archive``/GitHub layout, or what ``npm pack`` makes."""

    kind = SourceKind.TARBALL

    def fetch(self, release: str, dest: Path) -> FetchedRelease:
        check_release_name(release)
        _require_empty(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(self.path) as tar:
                # git archive (and so GitHub's tarballs) records the commit in a pax header.
                comment = tar.pax_headers.get("comment", "")
        except (OSError, tarfile.TarError) as exc:
            raise SourceError(f"cannot read {self.spec} as a tarball: {exc}",
                              hint="give a .tar.gz of one release") from exc
        commit = comment if _FULL_SHA.match(comment) else None
        if commit:
            self._check_commit(release, commit, self.spec)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack.") as work:
            top = _extract(self.path, Path(work) / "x")
            entries = list(top.iterdir())
            npm_pack = top / "package"
            if (npm_pack / "package.json").is_file() and not (npm_pack / "src").exists():
                dest.mkdir(parents=True, exist_ok=True)
                shutil.move(str(top / "package"), dest / "src")
            elif (top / "src" / "package.json").is_file():
                shutil.move(str(top), dest)
            elif len(entries) == 1 and (entries[0] / "src" / "package.json").is_file():
                shutil.move(str(entries[0]), dest)
            else:
                raise SourceError(f"{self.spec} holds no Etherpad tree (no src/package.json)",
                                  hint="give a tarball of one release")
        _check_tree(dest, release, self.spec)
        return FetchedRelease(release=release, tree=dest, commit=commit, source=self.spec,
                              kind=self.kind)


# -- choosing a source ------------------------------------------------------------------------
def resolve_source(spec: str, *, github_url: str = GITHUB_URL,
                   known_commits: Mapping[str, str] | None = None) -> ReleaseSource:
    """The source a ``--source`` value names.

    ``known_commits`` (release -> commit prefix) defaults to the ether/etherpad-lite releases
    this tool knows; pass ``{}`` to fetch from a repository with a history of its own.
    """
    spec = spec.strip()
    if spec:
        check_source_spec(spec)
    if spec in ("", "github"):
        return GitSource(github_url, kind=SourceKind.GITHUB, spec="github",
                         known_commits=known_commits)
    if spec == "npm":
        return NpmSource(known_commits=known_commits)
    if "://" in spec or SCP_LIKE.match(spec):
        return GitSource(spec, known_commits=known_commits)
    path = Path(spec).expanduser()
    if path.is_dir():
        if _is_repository(path):
            return GitSource(str(path.resolve()), known_commits=known_commits)
        return DirectorySource(path, known_commits=known_commits)
    if path.is_file():
        return TarballSource(path, known_commits=known_commits)
    raise SourceError(f"--source {spec}: no such path, and not github, npm or a git URL",
                      hint="give github, npm, a git URL, or the path of a mirror, a release "
                           "directory or a tarball")


# -- helpers ----------------------------------------------------------------------------------
def _run(cmd: list[str], *, timeout: float, what: str, hint: str | None = None,
         cwd: Path | None = None, env: Mapping[str, str] | None = None
         ) -> subprocess.CompletedProcess:
    try:
        # Its own process group, so a timeout also ends git's transport helpers.
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, **env} if env else None)
    except FileNotFoundError as exc:
        program = Path(cmd[0]).name
        raise SourceError(f"{program} is not installed ({what} needs it)",
                          hint=f"install {program}") from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise SourceError(f"{what} took longer than {timeout:.0f} s", hint=hint) from exc
    if proc.returncode != 0:
        lines = [line.strip() for line in (stderr or stdout).splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise SourceError(f"{what} failed: {detail}", hint=hint)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _endpoint(url: str) -> tuple[str, int] | None:
    """Host and port a git URL connects to; None for local repositories and proxied HTTP."""
    scp = SCP_LIKE.match(url)
    if scp:
        return scp.group("host"), 22
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    if parts.scheme in ("http", "https"):
        proxies = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "ALL_PROXY")
        if any(os.environ.get(name) for name in proxies):
            return None  # only the proxy is reachable from here; git's own limits apply
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "ssh":
        return parts.hostname, parts.port or 22
    if parts.scheme == "git":
        return parts.hostname, parts.port or 9418
    return None


def _check_reachable(url: str, timeout: float, hint: str) -> None:
    """A few seconds' connect instead of git's minutes of retries on an unreachable host."""
    endpoint = _endpoint(url)
    if endpoint is None:
        return
    host, port = endpoint
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror as exc:
        raise SourceError(f"cannot reach {host}:{port} for {url}: the name does not resolve",
                          hint=hint) from exc
    except TimeoutError as exc:
        raise SourceError(f"cannot reach {host}:{port} for {url}: no answer within "
                          f"{timeout:.0f} s", hint=hint) from exc
    except OSError as exc:
        raise SourceError(f"cannot reach {host}:{port} for {url}: "
                          f"{exc.strerror or exc}", hint=hint) from exc


def _is_repository(path: Path) -> bool:
    """A repository itself: bare (``clone --mirror``, ``--bare``), a ``.git`` directory, or the
    top of a work tree. A folder inside one (``src/``, a bare repository's ``refs/``) is not.

    Two questions, because ``--show-toplevel`` fails in a bare repository ("must be run in
    a work tree") and takes every other answer of the same call down with it.
    """
    here = path.resolve()
    git_dir = _rev_parse(path, "--absolute-git-dir")
    if git_dir is None:
        return False
    if Path(git_dir).resolve() == here:
        return True
    top = _rev_parse(path, "--show-toplevel")
    return top is not None and Path(top).resolve() == here


def _rev_parse(path: Path, question: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(path), "rev-parse", question],
                                capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        if "dubious ownership" in result.stderr:
            raise SourceError(f"git refuses to read {path}: it belongs to another user",
                              hint=f"run: git config --global --add safe.directory {path}")
        return None
    return result.stdout.strip() or None


def _check_tree(tree: Path, release: str, what: str) -> None:
    manifest = tree / "src" / "package.json"
    try:
        package = json.loads(manifest.read_text())
    except FileNotFoundError as exc:
        raise SourceError(f"{what} holds no Etherpad (no src/package.json)",
                          hint="give a tree of ether/etherpad-lite") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"{what}: cannot read src/package.json: {exc}") from exc
    if package.get("name") != NPM_PACKAGE:
        raise SourceError(f"{what} holds package {package.get('name')!r}, not {NPM_PACKAGE}",
                          hint="give a tree of ether/etherpad-lite")
    if package.get("version") != release:
        raise SourceError(f"{what} holds Etherpad {package.get('version')}, not {release}",
                          hint="check the release or the source")


def _require_empty(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SourceError(f"{dest} already exists and is not empty",
                          hint="fetch into a new directory")
    if dest.is_dir():
        dest.rmdir()  # git clone and shutil.move want to create it themselves


def _copy_tree(src: Path, dest: Path, ignore) -> None:
    try:
        shutil.copytree(src, dest, symlinks=True, ignore=ignore)
    except (OSError, shutil.Error) as exc:
        raise SourceError(f"cannot copy {src}: {exc}") from exc


def _extract(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise SourceError(f"cannot unpack {archive}: {exc}",
                          hint="give a .tar.gz of one release") from exc
    return into


def _version_key(tag: str) -> tuple:
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", tag) if part)

"""Before a release run creates anything: does the source have the releases it will need?

A release whose source is unreachable or lacks the release used to be found out deep inside
a run — in a bake, on a booting instance, in a revision bundle — after a stack had been
created for it. These checks cost one tag listing (git), one registry query (npm) or one
file read (a release directory), and fail with the source's own words.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Iterable
from urllib.parse import urlsplit

from deployer.base import logs
from deployer.base.errors import SourceError
from deployer.etherpad.releases import check_source_spec
from deployer.etherpad.sources import (
    NPM_PACKAGE,
    SCP_LIKE,
    DirectorySource,
    GitSource,
    NpmSource,
    ReleaseSource,
    check_release_name,
    resolve_source,
)

log = logs.get_logger(component="etherpad.preflight")


def check_input(spec: str, releases: Iterable[str | None]) -> None:
    """The one rule on what a release name and a source may hold (releases.py), without
    asking anyone: the CLI runs it before it even picks a cloud."""
    for release in releases:
        if release:
            check_release_name(release)
    check_source_spec(spec)


def check_readable_by_cloud(spec: str) -> None:
    """Refuse a source that only this machine can read, for releases the cloud's own
    machines fetch (user data, a Packer build instance): a path, a ``file://`` URL, or a
    loopback host would fail on the instance ten or twenty minutes into the run."""
    spec = spec.strip()
    if spec in ("", "github", "npm"):
        return
    hint = ("give github, a git URL the instances can reach, or npm for 1.8.14; or use "
            "--strategy codedeploy, whose revision is built on this machine")
    if "://" in spec:
        parts = urlsplit(spec)
        if parts.scheme == "file":
            raise SourceError(f"--source {spec} is a file on this machine: an EC2 instance "
                              "cannot read it", hint=hint)
        host = parts.hostname
    else:
        scp = SCP_LIKE.match(spec)
        if scp is None:
            raise SourceError(f"--source {spec} is a path on this machine: an EC2 instance "
                              "cannot read it", hint=hint)
        host = scp.group("host")
    if host and _is_loopback(host):
        raise SourceError(f"--source {spec} names this machine ({host}): an EC2 instance "
                          "reaches itself there, not this machine", hint=hint)


def check_cloud_releases(spec: str, releases: Iterable[str]) -> None:
    """What can be checked from here of a source the cloud's machines read: npm's registry
    is the same for them as for us (a git host may be reachable from there only)."""
    if spec.strip() != "npm":
        return
    if shutil.which("npm") is None:
        log.warning("preflight.npm_not_checked", why="npm is not installed here")
        return
    check_releases(spec, releases)


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def check_releases(spec: str, releases: Iterable[str]) -> ReleaseSource:
    """Raise :class:`SourceError` unless ``spec`` names a source that has every release."""
    source = resolve_source(spec)
    wanted = list(dict.fromkeys(r for r in releases if r))
    for release in wanted:
        check_release_name(release)
    if isinstance(source, GitSource):
        tags = source.tags()
        missing = [r for r in wanted if r not in tags]
        if missing:
            newest = ", ".join(sorted(tags)[-12:]) or "none"
            raise SourceError(f"{source.spec} has no tag {missing[0]} (its tags: {newest})",
                              hint="pick a release the source has, or another --source")
    elif isinstance(source, NpmSource):
        versions = source.versions()
        missing = [r for r in wanted if r not in versions]
        if missing:
            raise SourceError(f"npm has {NPM_PACKAGE} {', '.join(versions) or 'in no version'} "
                              f"only, not {missing[0]}",
                              hint=f"use --source github or a mirror for {missing[0]}")
    elif isinstance(source, DirectorySource):
        manifest = source.path / "src" / "package.json"
        try:
            version = json.loads(manifest.read_text()).get("version")
        except (OSError, ValueError, AttributeError) as exc:
            raise SourceError(f"{source.spec} holds no Etherpad (no readable src/package.json)",
                              hint="give a tree of ether/etherpad-lite") from exc
        other = [r for r in wanted if r != version]
        if other:
            raise SourceError(f"{source.spec} holds Etherpad {version}, not {other[0]}",
                              hint="a release directory holds one release; use a mirror "
                                   "for two")
    # A tarball is only readable by unpacking it: its fetch checks it.
    return source

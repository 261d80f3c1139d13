"""Before a release run creates anything: does the source have the releases it will need?

A release whose source is unreachable or lacks the release used to be found out deep inside
a run — in a bake, on a booting instance, in a revision bundle — after a stack had been
created for it. These checks cost one tag listing (git), one registry query (npm) or one
file read (a release directory), and fail with the source's own words.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from deployer.base.errors import SourceError
from deployer.etherpad.sources import (
    NPM_PACKAGE,
    DirectorySource,
    GitSource,
    NpmSource,
    ReleaseSource,
    check_release_name,
    resolve_source,
)


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

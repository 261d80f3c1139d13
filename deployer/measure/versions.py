"""Which release answered a probe: pluggable version extractors.

Etherpad 1.8.x with ``exposeVersion`` sends ``Server: Etherpad <commit> (https://etherpad.org)``
where the commit comes from the install's ``.git``. An install from npm has no ``.git``;
the deployer then adds a tiny plugin that sends ``X-Etherpad-Release`` (see etherpad/).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping

from deployer.base.errors import UsageError
from deployer.etherpad.releases import KNOWN_RELEASE_COMMITS

RELEASE_HEADER = "x-etherpad-release"
_SERVER_RE = re.compile(r"^Etherpad\s+(?P<commit>[0-9a-f]{7,40})?\s*\(https://etherpad\.org\)")


class VersionExtractor(ABC):
    """Reads the version that answered from one HTTP response (lower-cased header names)."""

    @abstractmethod
    def extract(self, status: int, headers: Mapping[str, str]) -> str | None: ...


class NoVersion(VersionExtractor):
    def extract(self, status: int, headers: Mapping[str, str]) -> str | None:
        return None


class HeaderVersion(VersionExtractor):
    def __init__(self, header: str) -> None:
        self.header = header.lower()

    def extract(self, status: int, headers: Mapping[str, str]) -> str | None:
        return headers.get(self.header) or None


class EtherpadVersion(VersionExtractor):
    """Release from the deployer's release header, else from the Server header's commit."""

    def __init__(self, commits: Mapping[str, str] = KNOWN_RELEASE_COMMITS) -> None:
        self.commits = dict(commits)

    def extract(self, status: int, headers: Mapping[str, str]) -> str | None:
        release = headers.get(RELEASE_HEADER)
        if release:
            return release.strip()
        match = _SERVER_RE.match(headers.get("server", ""))
        if not match or not match.group("commit"):
            return None
        commit = match.group("commit")[:7]
        return self.commits.get(commit, commit)


def extractor_from_spec(spec: str) -> VersionExtractor:
    """``etherpad`` (default), ``header:NAME`` or ``none``."""
    if spec == "etherpad":
        return EtherpadVersion()
    if spec == "none":
        return NoVersion()
    if spec.startswith("header:") and len(spec) > len("header:"):
        return HeaderVersion(spec.split(":", 1)[1])
    raise UsageError(f"unknown version source {spec!r}",
                     hint="use etherpad, header:NAME or none")

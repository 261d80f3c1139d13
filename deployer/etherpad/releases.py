"""Etherpad release names and sources: what a release may be called and where it may come
from, its ordering, and "the release before this one".

A release name and a ``--source`` end up in shell code on machines deployer does not run:
user data (inside single quotes), the Packer provisioner's environment, the installer's
``git`` command lines. One rule says what they may hold, and every place that takes them
applies the same rule: the CLI (:func:`check_release_name`, :func:`check_source_spec`),
``AllowedPattern`` of the stacks' ``EtherpadVersion`` and ``EtherpadSource`` parameters, the
``validation`` of the Packer template's variables, and ``install-etherpad.sh``.

The patterns are written in the dialect all of those share (POSIX ERE, RE2, Java and
Python regular expressions alike): bracket expressions and anchors, no look-ahead. What
they keep out: quotes, backquotes, backslashes, whitespace, ``; | & $ ( ) < > * ? ! #``,
and a leading ``-`` (a value that ``git`` would read as an option, ``--upload-pack=...``).
"""

from __future__ import annotations

import re

from deployer.base.errors import SourceError, UsageError

# A release tag: 1.8.18, 1.8.14-r2, v2.0.0-beta.1.
RELEASE_NAME_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._+-]*$"
# github, npm, a git URL (https://, ssh://, git://, file://, git@host:path) or a path.
SOURCE_PATTERN = r"^[0-9A-Za-z._~/@:+%][0-9A-Za-z._~/@:+%-]*$"
_RELEASE_NAME = re.compile(RELEASE_NAME_PATTERN)
_SOURCE = re.compile(SOURCE_PATTERN)
_SOURCE_CHAR = re.compile(r"[0-9A-Za-z._~/@:+%-]")

_RELEASE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
# Releases this tool knows by heart (git tags of ether/etherpad-lite); the npm registry only
# carries 1.8.14. Used to pick the starting release when --from is not given.
KNOWN_RELEASES = ["1.8.13", "1.8.14", "1.8.15", "1.8.16", "1.8.17", "1.8.18"]

# Release tags of ether/etherpad-lite and the commits they point at (7-char, as Etherpad shows).
KNOWN_RELEASE_COMMITS: dict[str, str] = {
    "c85ab49": "1.8.17",
    "4b96ff6": "1.8.18",
}


def check_release_name(release: str) -> None:
    """Raise :class:`SourceError` unless ``release`` is a release name (the one rule)."""
    if not _RELEASE_NAME.fullmatch(release):
        raise SourceError(f"{release!r} is not a release name",
                          hint="give a release tag like 1.8.18")


def check_source_spec(spec: str) -> None:
    """Raise :class:`SourceError` unless ``spec`` may be a ``--source`` (the one rule)."""
    if not spec:
        raise SourceError("--source is empty", hint="give github, npm, a git URL or a path")
    if spec.startswith("-"):
        raise SourceError(f"--source {spec!r} starts with '-'",
                          hint="give github, npm, a git URL or a path; write a relative "
                               "path that starts with - as ./-name")
    if not _SOURCE.fullmatch(spec):
        bad = sorted({c for c in spec if not _SOURCE_CHAR.fullmatch(c)})
        shown = " ".join(repr(c) for c in bad[:5])
        raise SourceError(f"--source {spec!r} holds characters a source may not have "
                          f"({shown})",
                          hint="use letters, digits and . _ ~ / @ : + % - (rename or link "
                               "a path that has others)")


def parse_release(text: str) -> tuple[int, int, int]:
    match = _RELEASE.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a release number",
                         hint="give a release like 1.8.18")
    return int(match[1]), int(match[2]), int(match[3])


def previous_release(release: str) -> str | None:
    """The known release just before ``release`` (the default --from), if there is one."""
    try:
        wanted = parse_release(release)
    except UsageError:
        return None  # a mirror's own tag: only --from can say what came before
    older = [r for r in KNOWN_RELEASES if parse_release(r) < wanted]
    return max(older, key=parse_release) if older else None

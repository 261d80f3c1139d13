"""Etherpad release numbers: ordering and "the release before this one"."""

from __future__ import annotations

import re

from deployer.base.errors import UsageError

_RELEASE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
# Releases this tool knows by heart (git tags of ether/etherpad-lite); the npm registry only
# carries 1.8.14. Used to pick the starting release when --from is not given.
KNOWN_RELEASES = ["1.8.13", "1.8.14", "1.8.15", "1.8.16", "1.8.17", "1.8.18"]

# Release tags of ether/etherpad-lite and the commits they point at (7-char, as Etherpad shows).
KNOWN_RELEASE_COMMITS: dict[str, str] = {
    "c85ab49": "1.8.17",
    "4b96ff6": "1.8.18",
}


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

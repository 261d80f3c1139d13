"""The functions a Packer template may call here, as HCL's standard library defines them.

``timestamp``, ``formatdate`` and ``length`` are what the shipped template calls; ``regex``
is how a variable's validation condition checks a value's shape, with ``can()``. Any other
function is refused as unsupported (see :mod:`deployer.packer.expressions` for why the list
is short). Each takes the :class:`~deployer.packer.values.Scope` first: ``timestamp()`` is
the scope's one instant, as in a Packer run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from deployer.packer.values import ExpressionError, Scope, type_name


def _timestamp(scope: Scope) -> str:
    return scope.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _formatdate(scope: Scope, spec: str, timestamp: str) -> str:
    """HCL's formatdate: letter runs are verbs, 'quoted' text is literal, the rest passes."""
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError as err:
        raise ExpressionError(f"formatdate(): {timestamp!r} is not an RFC 3339 timestamp") from err
    if moment.tzinfo is None:
        raise ExpressionError(f"formatdate(): {timestamp!r} has no time zone")
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    hour12 = moment.hour % 12 or 12
    verbs = {
        "YYYY": f"{moment.year:04d}", "YY": f"{moment.year % 100:02d}",
        "MMMM": _MONTHS[moment.month - 1], "MMM": _MONTHS[moment.month - 1][:3],
        "MM": f"{moment.month:02d}", "M": str(moment.month),
        "DD": f"{moment.day:02d}", "D": str(moment.day),
        "EEEE": _DAYS[moment.weekday()], "EEE": _DAYS[moment.weekday()][:3],
        "hh": f"{moment.hour:02d}", "h": str(moment.hour),
        "HH": f"{hour12:02d}", "H": str(hour12),
        "AA": "AM" if moment.hour < 12 else "PM", "aa": "am" if moment.hour < 12 else "pm",
        "mm": f"{moment.minute:02d}", "m": str(moment.minute),
        "ss": f"{moment.second:02d}", "s": str(moment.second),
        "ZZZZZ": f"{sign}{hh:02d}:{mm:02d}", "ZZZZ": f"{sign}{hh:02d}{mm:02d}",
        "ZZZ": "UTC" if minutes == 0 else f"{sign}{hh:02d}{mm:02d}",
        "Z": "Z" if minutes == 0 else f"{sign}{hh:02d}:{mm:02d}",
    }
    out: list[str] = []
    i = 0
    while i < len(spec):
        ch = spec[i]
        if ch == "'":
            end = spec.find("'", i + 1)
            if end == -1:
                raise ExpressionError("formatdate(): unterminated literal in the format")
            out.append(spec[i + 1:end] if end > i + 1 else "'")
            i = end + 1
        elif ch.isalpha():
            j = i
            while j < len(spec) and spec[j] == ch:
                j += 1
            run = spec[i:j]
            if run not in verbs:
                raise ExpressionError(f"formatdate(): invalid date format verb {run!r}")
            out.append(verbs[run])
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _go_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ExpressionError(f"invalid regular expression {pattern!r}: {err}") from err


def _regex(scope: Scope, pattern: str, text: str) -> Any:
    compiled = _go_regex(pattern)
    match = compiled.search(text)
    if match is None:
        raise ExpressionError(f"pattern {pattern!r} did not match {text!r}")
    if compiled.groupindex:
        return match.groupdict()
    if compiled.groups:
        return list(match.groups())
    return match.group(0)


def _length(scope: Scope, value: Any) -> int:
    if isinstance(value, str | list | Mapping):
        return len(value)
    raise ExpressionError(f"length() of a {type_name(value)}")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "timestamp": _timestamp,
    "formatdate": _formatdate,
    "length": _length,
    "regex": _regex,
}

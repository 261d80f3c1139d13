"""HCL values as this reader holds them, and HCL's rules for them.

The errors an expression raises, the values only a running build knows (:class:`Deferred`),
the :class:`Scope` expressions are evaluated in, and HCL's conversions: into a string
template, to a number or a bool, and equality that never converts. Shared by the parser
(:mod:`deployer.packer.expressions`) and the functions (:mod:`deployer.packer.functions`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?")


class ExpressionError(Exception):
    """An expression is wrong (unknown variable, wrong type, bad syntax)."""


class UnsupportedExpression(ExpressionError):
    """Valid HCL that this evaluator does not implement (a function, a directive...)."""


@dataclass(frozen=True)
class Deferred:
    """A value Packer only knows while building, kept as its template text."""

    text: str


class Scope:
    """What expressions may refer to: roots like ``var`` and ``local``, and the clock."""

    def __init__(self, roots: Mapping[str, Any], now: datetime) -> None:
        self.roots = roots
        self.now = now

    def lookup(self, name: str) -> Any:
        if name not in self.roots:
            raise ExpressionError(f'unknown reference "{name}"')
        return self.roots[name]


class DeferredRoot:
    """``build``: every attribute is a :class:`Deferred`."""

    def __init__(self, name: str) -> None:
        self.name = name


def template_string(value: Any) -> str:
    """How HCL renders a value inside a string template."""
    if isinstance(value, Deferred):
        return value.text
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_text(value)
    if value is None:
        raise ExpressionError("cannot include a null value in a string template")
    raise ExpressionError(f"cannot include a {type_name(value)} in a string template")


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    return type(value).__name__


def number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ExpressionError("a bool is not a number")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        match = NUMBER.fullmatch(value.strip().lstrip("-"))
        if match:
            number = float(value) if match.group(1) or match.group(2) else int(value)
            return number
    raise ExpressionError(f"a number is required, got {type_name(value)} {value!r}")


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ExpressionError(f"a bool is required, got {type_name(value)} {value!r}")


def equal(a: Any, b: Any) -> bool:
    # HCL equality never converts: "1" == 1 and true == 1 are false.
    return type_name(a) == type_name(b) and a == b

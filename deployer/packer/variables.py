"""Input variables' type constraints, as Packer applies them to defaults, files and ``-var``.

The types a variable may declare here are ``string``, ``number``, ``bool``, ``any`` and
``list``/``set``/``map`` of one of those; values convert the way Packer's type constraints
convert them (``"5"`` to a number, ``true`` to ``"true"``), and a ``-var`` value of a list or
map type is read as an HCL expression.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from deployer.base.errors import ConfigError
from deployer.packer.expressions import evaluate_expression
from deployer.packer.values import ExpressionError, Scope

_TYPE = re.compile(r"^(string|number|bool|any|(list|set|map)\((string|number|bool|any)\))$")


def type_expression(raw: Any, where: str) -> str:
    text = str(raw).strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1].strip()
    text = re.sub(r"\s+", "", text)
    if not _TYPE.match(text):
        raise ConfigError(f"unsupported variable type {raw!r} (use string, number, bool, "
                          "list(string) or map(string))", location=where)
    return text


def convert(value: Any, type_: str, what: str) -> Any:
    """Convert a value to a declared type, as Packer's type constraints do."""
    if value is None or type_ == "any":
        return value
    outer = type_.split("(")[0]
    if outer in ("list", "set", "map"):
        inner = type_[len(outer) + 1:-1]
        if outer == "map":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{what}: a map is required")
            return {k: convert(v, inner, f"{what}[{k!r}]") for k, v in value.items()}
        if not isinstance(value, list):
            raise ConfigError(f"{what}: a list is required")
        items = [convert(v, inner, f"{what}[{i}]") for i, v in enumerate(value)]
        return list(dict.fromkeys(items)) if outer == "set" else items
    if type_ == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(int(value)) if float(value).is_integer() else str(value)
        if isinstance(value, str):
            return value
        raise ConfigError(f"{what}: a string is required")
    if type_ == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value) if re.fullmatch(r"-?\d+", value.strip()) else float(value)
            except ValueError:
                pass
        raise ConfigError(f"{what}: a number is required, got {value!r}")
    if type_ == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise ConfigError(f"{what}: a bool is required, got {value!r}")
    raise ConfigError(f"{what}: unsupported type {type_}")


def command_line_value(raw: str, type_: str, scope: Scope) -> Any:
    """``-var name=value``: strings are taken as written, other types parsed as HCL."""
    if type_ in ("string", "any"):
        return raw
    if type_ in ("number", "bool"):
        return raw.strip()
    try:
        return evaluate_expression(raw, scope)
    except ExpressionError as err:
        raise ConfigError(f"invalid value for a {type_} variable: {err}") from err

"""The HCL expressions a Packer template uses, evaluated the way Packer evaluates them.

python-hcl2 parses the file's structure but hands every expression back as text: a quoted
string as its (unescaped) content, anything else wrapped in ``${...}``. This module turns
that text into values: string templates with interpolations, references (``var.x``,
``local.x``, ``path.root``, ``source.name``), literals, operators, conditionals and a set
of functions that Packer templates actually call. Anything else is refused with
:class:`UnsupportedExpression` rather than guessed at.

``build.*`` values only exist while Packer builds; they stay in a string as their own
``${build.X}`` text (:class:`Deferred`) for the builder to fill in.

Parsing produces closures, evaluation is a separate step, so ``can()``, ``try()`` and the
conditional operator only evaluate what they need, as HCL does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


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


Node = Callable[[Scope], Any]


def evaluate_template(text: str, scope: Scope) -> Any:
    """Evaluate a string as python-hcl2 returns it: a template, possibly one ``${expr}``."""
    parser = _Parser(text)
    node = parser.template(quoted=False)
    if parser.i != len(text):
        raise ExpressionError(f"unexpected {text[parser.i:parser.i + 10]!r}")
    value = node(scope)
    return value.text if isinstance(value, Deferred) else value


def evaluate_expression(text: str, scope: Scope) -> Any:
    """Evaluate a bare expression (``-var`` values of list and map type, conditions)."""
    parser = _Parser(text)
    node = parser.expression()
    parser.skip_ws()
    if parser.i != len(text):
        raise ExpressionError(f"unexpected {text[parser.i:parser.i + 10]!r} in {text!r}")
    return node(scope)


def references(text: str) -> set[str]:
    """``root.attr`` names a template mentions (``var.x``): a cheap syntactic scan."""
    return {m.group(0) for m in re.finditer(r"\b[a-z_]+\.[A-Za-z_][\w-]*", text)}


def template_string(value: Any) -> str:
    """How HCL renders a value inside a string template."""
    if isinstance(value, Deferred):
        return value.text
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number_text(value)
    if value is None:
        raise ExpressionError("cannot include a null value in a string template")
    raise ExpressionError(f"cannot include a {_type_name(value)} in a string template")


# --- parsing ------------------------------------------------------------------------------

_BINARY = {
    "||": 1, "&&": 2, "==": 3, "!=": 3,
    "<": 4, ">": 4, "<=": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6,
}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
_NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][\w-]*")


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    # helpers
    def peek(self, token: str) -> bool:
        return self.s.startswith(token, self.i)

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def expect(self, token: str) -> None:
        self.skip_ws()
        if not self.peek(token):
            found = self.s[self.i:self.i + 10] or "end of expression"
            raise ExpressionError(f"expected {token!r}, found {found!r} in {self.s!r}")
        self.i += len(token)

    # templates
    def template(self, *, quoted: bool) -> Node:
        parts: list[str | Node] = []
        literal: list[str] = []
        while self.i < len(self.s):
            ch = self.s[self.i]
            if quoted and ch == '"':
                break
            if quoted and ch == "\\":
                literal.append(self.escape())
            elif self.peek("$${") or self.peek("%%{"):
                literal.append(self.s[self.i + 1:self.i + 3])
                self.i += 3
            elif self.peek("${"):
                if literal:
                    parts.append("".join(literal))
                    literal = []
                self.i += 2
                if self.peek("~"):
                    self.i += 1
                parts.append(self.expression())
                self.skip_ws()
                if self.peek("~"):
                    self.i += 1
                self.expect("}")
            elif self.peek("%{"):
                raise UnsupportedExpression("template directives (%{ if } / %{ for }) are not supported")
            else:
                literal.append(ch)
                self.i += 1
        if literal:
            parts.append("".join(literal))
        if len(parts) == 1 and callable(parts[0]):
            return parts[0]  # a lone interpolation keeps its value's type, as in HCL

        def concatenate(scope: Scope) -> str:
            return "".join(p if isinstance(p, str) else template_string(p(scope)) for p in parts)
        return concatenate

    def escape(self) -> str:
        self.i += 1
        ch = self.s[self.i:self.i + 1]
        if ch in _ESCAPES:
            self.i += 1
            return _ESCAPES[ch]
        if ch in ("u", "U"):
            width = 4 if ch == "u" else 8
            digits = self.s[self.i + 1:self.i + 1 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ExpressionError(f"bad unicode escape in {self.s!r}")
            self.i += 1 + width
            return chr(int(digits, 16))
        raise ExpressionError(f"unknown escape sequence \\{ch} in {self.s!r}")

    # expressions
    def expression(self) -> Node:
        condition = self.binary(1)
        self.skip_ws()
        if not self.peek("?"):
            return condition
        self.i += 1
        if_true = self.expression()
        self.expect(":")
        if_false = self.expression()

        def conditional(scope: Scope) -> Any:
            return if_true(scope) if _to_bool(condition(scope)) else if_false(scope)
        return conditional

    def binary(self, min_precedence: int) -> Node:
        left = self.unary()
        while True:
            self.skip_ws()
            op = next((o for o in sorted(_BINARY, key=len, reverse=True) if self.peek(o)), None)
            if op is None or _BINARY[op] < min_precedence:
                return left
            self.i += len(op)
            right = self.binary(_BINARY[op] + 1)
            left = _binary_node(op, left, right)

    def unary(self) -> Node:
        self.skip_ws()
        if self.peek("!") and not self.peek("!="):
            self.i += 1
            operand = self.unary()
            return lambda scope: not _to_bool(operand(scope))
        if self.peek("-"):
            self.i += 1
            operand = self.unary()
            return lambda scope: -_to_number(operand(scope))
        return self.postfix(self.primary())

    def primary(self) -> Node:
        self.skip_ws()
        if self.i >= len(self.s):
            raise ExpressionError(f"expression ends early: {self.s!r}")
        ch = self.s[self.i]
        if ch == '"':
            self.i += 1
            node = self.template(quoted=True)
            self.expect('"')
            return node
        if ch == "(":
            self.i += 1
            inner = self.expression()
            self.expect(")")
            return inner
        if ch == "[":
            return self.tuple()
        if ch == "{":
            return self.object()
        if self.peek("<<"):
            raise UnsupportedExpression("heredocs inside expressions are not supported")
        number = _NUMBER.match(self.s, self.i)
        if number:
            self.i = number.end()
            value = float(number.group(0)) if number.group(1) or number.group(2) else int(number.group(0))
            return lambda scope: value
        ident = _IDENT.match(self.s, self.i)
        if not ident:
            raise ExpressionError(f"unexpected {self.s[self.i:self.i + 10]!r} in {self.s!r}")
        self.i = ident.end()
        name = ident.group(0)
        constants = {"true": True, "false": False, "null": None}
        if name in constants:
            value = constants[name]
            return lambda scope: value
        self.skip_ws()
        if self.peek("("):
            return self.call(name)
        return lambda scope: scope.lookup(name)

    def tuple(self) -> Node:
        self.i += 1
        self.skip_ws()
        if _IDENT.match(self.s, self.i) and self.s.startswith("for ", self.i):
            raise UnsupportedExpression("for expressions are not supported")
        items: list[Node] = []
        while True:
            self.skip_ws()
            if self.peek("]"):
                self.i += 1
                break
            items.append(self.expression())
            self.skip_ws()
            if self.peek(","):
                self.i += 1
            elif not self.peek("]"):
                self.expect("]")
        return lambda scope: [item(scope) for item in items]

    def object(self) -> Node:
        self.i += 1
        entries: list[tuple[Node, Node]] = []
        while True:
            self.skip_ws()
            if self.peek("}"):
                self.i += 1
                break
            if self.s.startswith("for ", self.i):
                raise UnsupportedExpression("for expressions are not supported")
            ident = _IDENT.match(self.s, self.i)
            if ident and not self.s.startswith("(", ident.end()):
                # A bare identifier as a key is the key's name, not a reference.
                self.i = ident.end()
                key_name = ident.group(0)
                key: Node = lambda scope, k=key_name: k
            else:
                key = self.expression()
            self.skip_ws()
            if self.peek("="):
                self.i += 1
            else:
                self.expect(":")
            entries.append((key, self.expression()))
            self.skip_ws()
            if self.peek(","):
                self.i += 1
        return lambda scope: {template_string(k(scope)): v(scope) for k, v in entries}

    def postfix(self, node: Node) -> Node:
        while True:
            self.skip_ws()
            if self.peek(".*") or self.peek("[*]"):
                raise UnsupportedExpression("splat expressions are not supported")
            if self.peek("."):
                self.i += 1
                ident = _IDENT.match(self.s, self.i) or _NUMBER.match(self.s, self.i)
                if not ident:
                    raise ExpressionError(f"expected an attribute name after '.' in {self.s!r}")
                self.i = ident.end()
                node = _attribute_node(node, ident.group(0))
            elif self.peek("["):
                self.i += 1
                index = self.expression()
                self.expect("]")
                node = _index_node(node, index)
            else:
                return node

    def call(self, name: str) -> Node:
        self.i += 1  # "("
        args: list[Node] = []
        while True:
            self.skip_ws()
            if self.peek(")"):
                self.i += 1
                break
            args.append(self.expression())
            self.skip_ws()
            if self.peek("..."):
                raise UnsupportedExpression(f"argument expansion (...) in {name}() is not supported")
            if self.peek(","):
                self.i += 1
            elif not self.peek(")"):
                self.expect(")")
        if name in _LAZY_FUNCTIONS:
            lazy = _LAZY_FUNCTIONS[name]
            return lambda scope: lazy(scope, args)
        function = _FUNCTIONS.get(name)
        if function is None:
            raise UnsupportedExpression(f'unsupported function "{name}"')

        def call(scope: Scope) -> Any:
            values = [arg(scope) for arg in args]
            if any(isinstance(v, Deferred) for v in values):
                raise ExpressionError(f"{name}() cannot use a value only known while building")
            try:
                return function(scope, *values)
            except TypeError as err:
                raise ExpressionError(f"{name}(): wrong number or type of arguments") from err
            except (ValueError, LookupError, ArithmeticError, AttributeError) as err:
                # Python's own complaint about the arguments (min() of nothing, an index
                # past the end, a number too big): the template's mistake, said as such.
                raise ExpressionError(f"{name}(): {err}") from err
        return call


def _attribute_node(node: Node, name: str) -> Node:
    def attribute(scope: Scope) -> Any:
        value = node(scope)
        if isinstance(value, DeferredRoot):
            return Deferred(f"${{{value.name}.{name}}}")
        if isinstance(value, Mapping):
            if name not in value:
                raise ExpressionError(f'no attribute "{name}"')
            return value[name]
        if isinstance(value, list) and name.isdigit():
            return _index(value, int(name))
        raise ExpressionError(f'cannot read attribute "{name}" of a {_type_name(value)}')
    return attribute


def _index_node(node: Node, index: Node) -> Node:
    def indexed(scope: Scope) -> Any:
        value, key = node(scope), index(scope)
        if isinstance(value, Mapping):
            key = template_string(key)
            if key not in value:
                raise ExpressionError(f'no element "{key}"')
            return value[key]
        if isinstance(value, list):
            return _index(value, int(_to_number(key)))
        raise ExpressionError(f"cannot index a {_type_name(value)}")
    return indexed


def _index(items: list, position: int) -> Any:
    if not 0 <= position < len(items):
        raise ExpressionError(f"index {position} out of range for a list of {len(items)}")
    return items[position]


def _binary_node(op: str, left: Node, right: Node) -> Node:
    if op == "&&":
        return lambda scope: _to_bool(left(scope)) and _to_bool(right(scope))
    if op == "||":
        return lambda scope: _to_bool(left(scope)) or _to_bool(right(scope))
    if op == "==":
        return lambda scope: _equal(left(scope), right(scope))
    if op == "!=":
        return lambda scope: not _equal(left(scope), right(scope))

    def arithmetic(scope: Scope) -> Any:
        a, b = _to_number(left(scope)), _to_number(right(scope))
        if op in ("/", "%") and b == 0:
            raise ExpressionError("division by zero")
        result = {
            "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
            "/": lambda: a / b, "%": lambda: a % b,
            "<": lambda: a < b, ">": lambda: a > b, "<=": lambda: a <= b, ">=": lambda: a >= b,
        }[op]()
        if isinstance(result, float) and not isinstance(result, bool) and result.is_integer():
            return int(result)
        return result
    return arithmetic


# --- values -------------------------------------------------------------------------------

def _type_name(value: Any) -> str:
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


def _number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ExpressionError("a bool is not a number")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        match = _NUMBER.fullmatch(value.strip().lstrip("-"))
        if match:
            number = float(value) if match.group(1) or match.group(2) else int(value)
            return number
    raise ExpressionError(f"a number is required, got {_type_name(value)} {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ExpressionError(f"a bool is required, got {_type_name(value)} {value!r}")


def _equal(a: Any, b: Any) -> bool:
    # HCL equality never converts: "1" == 1 and true == 1 are false.
    return _type_name(a) == _type_name(b) and a == b


def _to_string(value: Any) -> str:
    return template_string(value)


# --- functions ----------------------------------------------------------------------------

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


def _go_replacement(replacement: str) -> str:
    # RE2 replacements say $1 or ${name}; Python says \1 or \g<name>.
    escaped = replacement.replace("\\", "\\\\")
    return re.sub(r"\$\{?(\w+)\}?", lambda m: f"\\g<{m.group(1)}>", escaped)


def _replace(scope: Scope, text: str, search: str, replacement: str) -> str:
    if len(search) > 1 and search.startswith("/") and search.endswith("/"):
        return _go_regex(search[1:-1]).sub(_go_replacement(replacement), text)
    return text.replace(search, replacement)


def _regex_replace(scope: Scope, text: str, pattern: str, replacement: str) -> str:
    return _go_regex(pattern).sub(_go_replacement(replacement), text)


def _format(scope: Scope, spec: str, *values: Any) -> str:
    queue = list(values)

    def verb(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        if not queue:
            raise ExpressionError(f"format(): too few arguments for {spec!r}")
        value = queue.pop(0)
        kind = match.group(1)
        if kind == "d":
            return str(int(_to_number(value)))
        if kind == "q":
            return json.dumps(_to_string(value))
        return _to_string(value)
    result = re.sub(r"%%|%([sdvq])", verb, spec)
    if queue:
        raise ExpressionError(f"format(): too many arguments for {spec!r}")
    return result


def _length(scope: Scope, value: Any) -> int:
    if isinstance(value, str | list | Mapping):
        return len(value)
    raise ExpressionError(f"length() of a {_type_name(value)}")


def _coalesce(scope: Scope, *values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    raise ExpressionError("coalesce(): no non-null, non-empty argument")


def _substr(scope: Scope, text: str, offset: Any, length: Any) -> str:
    start = int(_to_number(offset))
    if start < 0:
        start += len(text)
    size = int(_to_number(length))
    return text[start:] if size == -1 else text[start:start + size]


def _concat(scope: Scope, *lists: Any) -> list:
    out: list = []
    for item in lists:
        if not isinstance(item, list):
            raise ExpressionError(f"concat() of a {_type_name(item)}")
        out.extend(item)
    return out


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "timestamp": _timestamp,
    "formatdate": _formatdate,
    "length": _length,
    "lower": lambda scope, s: _to_string(s).lower(),
    "upper": lambda scope, s: _to_string(s).upper(),
    "trimspace": lambda scope, s: _to_string(s).strip(),
    "replace": _replace,
    "regex": _regex,
    "regex_replace": _regex_replace,
    "contains": lambda scope, items, value: any(_equal(i, value) for i in items),
    "join": lambda scope, sep, items: sep.join(_to_string(i) for i in items),
    "split": lambda scope, sep, text: text.split(sep),
    "concat": _concat,
    "coalesce": _coalesce,
    "substr": _substr,
    "format": _format,
    "tostring": lambda scope, v: _to_string(v),
    "tonumber": lambda scope, v: _to_number(v),
    "min": lambda scope, *v: min(_to_number(x) for x in v),
    "max": lambda scope, *v: max(_to_number(x) for x in v),
    "abs": lambda scope, v: abs(_to_number(v)),
}


def _can(scope: Scope, args: list[Node]) -> bool:
    if len(args) != 1:
        raise ExpressionError("can() takes one argument")
    try:
        args[0](scope)
    except UnsupportedExpression:
        raise  # not knowing a function is not the same as the expression failing
    except ExpressionError:
        return False
    return True


def _try(scope: Scope, args: list[Node]) -> Any:
    for arg in args:
        try:
            return arg(scope)
        except UnsupportedExpression:
            raise
        except ExpressionError:
            continue
    raise ExpressionError("try(): no argument could be evaluated")


_LAZY_FUNCTIONS: dict[str, Callable[[Scope, list[Node]], Any]] = {"can": _can, "try": _try}

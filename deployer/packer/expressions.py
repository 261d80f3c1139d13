"""The HCL expressions a Packer template uses, evaluated the way Packer evaluates them.

python-hcl2 parses the file's structure but hands every expression back as text: a quoted
string as its (unescaped) content, anything else wrapped in ``${...}``. This module turns
that text into values: string templates with interpolations, references (``var.x``,
``local.x``, ``path.root``, ``source.name``), literals, operators, conditionals, ``can()`` /
``try()`` and four functions: the three the shipped template calls (``timestamp``,
``formatdate``, ``length``) and ``regex``, which a validation condition uses with ``can()``
(:mod:`deployer.packer.functions`).
Anything else (another function, ``for``, splats, directives) is refused with
:class:`UnsupportedExpression` rather than guessed at.

``build.*`` values only exist while Packer builds; they stay in a string as their own
``${build.X}`` text (:class:`Deferred`) for the builder to fill in.

Parsing produces closures, evaluation is a separate step, so ``can()``, ``try()`` and the
conditional operator only evaluate what they need, as HCL does.

Why this is not left to the ``packer`` binary (weighed for issue 10 with Debian's packer
1.6.6, the version ``./run`` installs): ``packer console -var ... TEMPLATE`` does evaluate
variables and locals (``jsonencode({var = var, local = local})``, 0.12 s a call), but the
sources, provisioners and post-processors, which the local cloud's image builder executes,
are outside its scope (``source.*`` is "Unsupported attribute") and ``packer inspect`` takes
no ``-var`` and prints only block types, so those blocks need this evaluator whatever
evaluates the locals. The console also passes what the reader must refuse: an unset variable
reads ``<unknown>`` with exit 0, validation rules are not run, and locals that refer to each
other in a cycle silently drop out of ``local``. Its ``timestamp()`` is the wall clock,
where a Packer run (and every test) needs one injected instant. And the local cloud would
need the binary on every machine, which today only the AWS adapter does. So the evaluator
stays, cut down to what the template language needs: the other seventeen functions it once
had (``upper``, ``replace``, ``format``, ``min``, ...) are gone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from deployer.packer.functions import FUNCTIONS
from deployer.packer.values import (
    NUMBER,
    Deferred,
    DeferredRoot,
    ExpressionError,
    Scope,
    UnsupportedExpression,
    equal,
    template_string,
    to_bool,
    to_number,
    type_name,
)

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


# --- parsing ------------------------------------------------------------------------------

_BINARY = {
    "||": 1, "&&": 2, "==": 3, "!=": 3,
    "<": 4, ">": 4, "<=": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6,
}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
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
                raise UnsupportedExpression(
                    "template directives (%{ if } / %{ for }) are not supported")
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
            return if_true(scope) if to_bool(condition(scope)) else if_false(scope)
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
            return lambda scope: not to_bool(operand(scope))
        if self.peek("-"):
            self.i += 1
            operand = self.unary()
            return lambda scope: -to_number(operand(scope))
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
        number = NUMBER.match(self.s, self.i)
        if number:
            self.i = number.end()
            text = number.group(0)
            return _constant(float(text) if number.group(1) or number.group(2) else int(text))
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
                key = _constant(key_name)
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
                ident = _IDENT.match(self.s, self.i) or NUMBER.match(self.s, self.i)
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
                raise UnsupportedExpression(
                    f"argument expansion (...) in {name}() is not supported")
            if self.peek(","):
                self.i += 1
            elif not self.peek(")"):
                self.expect(")")
        if name in _LAZY_FUNCTIONS:
            lazy = _LAZY_FUNCTIONS[name]
            return lambda scope: lazy(scope, args)
        function = FUNCTIONS.get(name)
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


def _constant(value: Any) -> Node:
    return lambda scope: value


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
        raise ExpressionError(f'cannot read attribute "{name}" of a {type_name(value)}')
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
            return _index(value, int(to_number(key)))
        raise ExpressionError(f"cannot index a {type_name(value)}")
    return indexed


def _index(items: list, position: int) -> Any:
    if not 0 <= position < len(items):
        raise ExpressionError(f"index {position} out of range for a list of {len(items)}")
    return items[position]


def _binary_node(op: str, left: Node, right: Node) -> Node:
    if op == "&&":
        return lambda scope: to_bool(left(scope)) and to_bool(right(scope))
    if op == "||":
        return lambda scope: to_bool(left(scope)) or to_bool(right(scope))
    if op == "==":
        return lambda scope: equal(left(scope), right(scope))
    if op == "!=":
        return lambda scope: not equal(left(scope), right(scope))

    def arithmetic(scope: Scope) -> Any:
        a, b = to_number(left(scope)), to_number(right(scope))
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

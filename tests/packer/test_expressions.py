"""HCL expressions as Packer evaluates them: deployer.packer.expressions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deployer.packer.expressions import evaluate_expression, evaluate_template
from deployer.packer.values import DeferredRoot, ExpressionError, Scope, UnsupportedExpression

SCOPE = Scope({"var": {"name": "pad", "n": 3, "list": ["a", "b"], "map": {"k": "v"}, "flag": True},
               "build": DeferredRoot("build")},
              datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"),
    ("${var.n}", 3),  # a lone interpolation keeps its type
    ("${var.list}", ["a", "b"]),
    ("n=${var.n} ${var.flag}", "n=3 true"),
    ("$${var.name} %%{x}", "${var.name} %{x}"),
    ("${var.n * 2 + 1 > 6 && !false}", True),
    ('${var.n % 2 == 1 ? "odd" : "even"}', "odd"),
    ('${"quoted \\"${var.name}\\"\\n"}', 'quoted "pad"\n'),
    ('${var.list[1]}${var.map["k"]}${var.list.0}', "bva"),
    ('${length({ a = 1, "b" = 2 })} ${length("pad")}', "2 3"),
    ('${regex("^(\\\\d+)\\\\.(\\\\d+)", "1.8.18")}', ["1", "8"]),
    ('${can(regex("z", "abc"))} ${try(var.map.nope, "fallback")}', "false fallback"),
    ("${timestamp()}", "2024-01-02T03:04:05Z"),
    ("id-${build.ID}", "id-${build.ID}"),  # only known while building
    ("${build.ID}", "${build.ID}"),
    ('${1 == "1"} ${true == 1}', "false false"),  # HCL equality never converts
])
def test_templates(text, expected):
    assert evaluate_template(text, SCOPE) == expected


def test_conditionals_only_evaluate_the_chosen_side():
    assert evaluate_template('${var.flag ? "ok" : var.missing}', SCOPE) == "ok"


@pytest.mark.parametrize(("text", "error", "message"), [
    ("${var.missing}", ExpressionError, 'no attribute "missing"'),
    ("${nope.x}", ExpressionError, 'unknown reference "nope"'),
    ("${var.list}-x", ExpressionError, "cannot include a list in a string template"),
    ("${var.name + 1}", ExpressionError, "a number is required"),
    ("${uuidv4()}", UnsupportedExpression, 'unsupported function "uuidv4"'),
    # Only what the template language needs is implemented (deployer.packer.expressions).
    ("${upper(var.name)}", UnsupportedExpression, 'unsupported function "upper"'),
    ('${replace("1.8.18", ".", "-")}', UnsupportedExpression, 'unsupported function "replace"'),
    ("%{ if true }x%{ endif }", UnsupportedExpression, "template directives"),
    ("${[for x in var.list : x]}", UnsupportedExpression, "for expressions"),
    ("${var.list[*]}", UnsupportedExpression, "splat"),
    ("${length(build.ID)}", ExpressionError, "only known while building"),
    ("${var.n", ExpressionError, "expected '}'"),
])
def test_errors(text, error, message):
    with pytest.raises(error, match=message):
        evaluate_template(text, SCOPE)


def test_bare_expressions_for_command_line_values():
    assert evaluate_expression('["a", "b"]', SCOPE) == ["a", "b"]
    assert evaluate_expression('{ team = "ops", "tier-1" = 2 }', SCOPE) == {"team": "ops", "tier-1": 2}
    with pytest.raises(ExpressionError):
        evaluate_expression('["a" "b"]', SCOPE)

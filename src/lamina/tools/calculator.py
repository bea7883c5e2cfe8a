"""``calculator``: arithmetic by a parser that only knows numbers, operators and a few functions.

The expression is parsed into Python's syntax tree and walked node by node; nothing is ever
evaluated as code, and a node outside the list below is an error naming it. Powers and results
are bounded, so ``9**9**9`` is refused instead of eating the CPU.

>>> calculate("1234 * 5678")
'7006652'
>>> calculate("sqrt(2) ^ 2 / 4")
'0.5'

The result alone is the observation: after ``1234 * 5678 = 7006652`` the bundled 135M model
often answered with the expression it had just seen ("1234 * 5678"); after ``7006652`` it
answered with the number in 10 of 10 probes (docs/agents.md).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from lamina.tools.base import FunctionTool, ToolExample
from lamina.tools.errors import ToolError

__all__ = ["calculate", "make"]

_MAX_EXPONENT = 10_000
_MAX_DIGITS = 1_000
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": math.factorial,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
Expression = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        # Only what arithmetic needs; the local grammar then cannot run on past the string.
        pattern=r"^[0-9A-Za-z_+*/%^()., -]{1,200}$",
        examples=["12 * 7"],
    ),
]


def calculate(expression: Expression) -> str:
    """Evaluate an arithmetic expression: + - * / // % ** (or ^), parentheses, pi, e, and
    sqrt, log, exp, sin, cos, tan, abs, round, min, max, floor, ceil, factorial.

    Args:
        expression: the arithmetic to evaluate, e.g. "12 * 7" or "sqrt(2) / 3"
    """
    try:
        # People (and models) write 2^10 for a power; read it as ** so it binds like one.
        tree = ast.parse(expression.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ToolError(
            f"{expression!r} is not an arithmetic expression ({exc.msg}). "
            f"Write it like '(3 + 4) * 2'."
        ) from None
    try:
        value = _evaluate(tree.body)
    except (ArithmeticError, ValueError) as exc:
        raise ToolError(f"cannot evaluate {expression!r}: {exc}") from None
    return _format(value)


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and _too_big(left, right):
            raise ValueError(f"{left} ** {right} is too large to compute")
        return _bounded(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(a) for a in node.args]
        if node.func.id == "factorial" and (not args or args[0] > 500):
            raise ValueError("factorial is limited to numbers up to 500")
        return _bounded(_FUNCTIONS[node.func.id](*args))
    shown = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
    raise ValueError(
        f"{shown!r} is not allowed (numbers, + - * / // % ** or ^, parentheses, pi, e and "
        f"{', '.join(sorted(_FUNCTIONS))} only)"
    )


def _too_big(base: Any, exponent: Any) -> bool:
    if abs(exponent) > _MAX_EXPONENT:
        return True
    return bool(abs(base) > 1 and abs(exponent) * math.log10(abs(base)) > _MAX_DIGITS)


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > _MAX_DIGITS * 3.33:
        raise ValueError(f"the result has more than {_MAX_DIGITS} digits")
    return value


def _format(value: Any) -> str:
    """Integers exactly; floats to 12 significant digits, whole floats without '.0'.

    >>> _format(2.0), _format(1 / 3), _format(10**20)
    ('2', '0.333333333333', '100000000000000000000')
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.12g}"
    return str(value)


def make(context: object = None) -> FunctionTool:
    """The ``calculator`` tool."""
    return FunctionTool(
        calculate,
        name="calculator",
        examples=[
            ToolExample(
                request="What is 12 * 7? Use the calculator.",
                arguments={"expression": "12 * 7"},
                result="12 * 7 = 84",  # the worked example shows the sum; measured best
                answer="12 * 7 = 84",
            )
        ],
    )

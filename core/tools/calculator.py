"""`calculate_math`: arithmetic with a whitelisting AST evaluator (never `eval`).

Only numbers, + - * / // % ** (and ^ as power), unary signs, parentheses, a few math functions and the constants
pi/e/tau are allowed; names, attributes, calls of anything else, comprehensions, strings… are refused. Work is
bounded before it is done: an integer power or product whose result would exceed MAX_INT_BITS bits is refused
(`9**9**9` would otherwise run for minutes and fill memory), `round` takes at most MAX_ROUND_DIGITS digits either
way (`round(7, -10**7)` computes 10**(10**7)), factorial stops at 170, the expression at 500 characters and 200
syntax nodes. The tool itself runs in the tool worker process (core.tools.worker), killed at its timeout, in case
a bound here is ever missed.
"""
from __future__ import annotations

import ast
import math
import operator

from core.tools.registry import Tool, ToolError

MAX_EXPRESSION_CHARS = 500
MAX_NODES = 200
MAX_INT_BITS = 4096
MAX_FACTORIAL = 170
MAX_ROUND_DIGITS = 1000  # past any float's precision, and past the 1,234 digits of a MAX_INT_BITS integer

FUNCTIONS = {"sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin,
             "acos": math.acos, "atan": math.atan, "exp": math.exp, "log10": math.log10, "log2": math.log2,
             "abs": abs, "floor": math.floor, "ceil": math.ceil, "min": min, "max": max,
             "radians": math.radians, "degrees": math.degrees}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _bits(x) -> float:
    return x.bit_length() if isinstance(x, int) else 0


def _pow(a, b):
    if isinstance(a, int) and isinstance(b, int):
        if b < 0:
            return float(a) ** b
        if abs(a) > 1 and _bits(a) * b > MAX_INT_BITS:
            raise ToolError(f"the result of this power is too large (over {MAX_INT_BITS} bits)")
        return a ** b
    result = math.pow(a, b)  # OverflowError for huge floats, ValueError for a complex result
    return result


def _mul(a, b):
    if isinstance(a, int) and isinstance(b, int) and _bits(a) + _bits(b) > MAX_INT_BITS:
        raise ToolError(f"the result of this product is too large (over {MAX_INT_BITS} bits)")
    return a * b


def _log(x, base=None):
    return math.log(x) if base is None else math.log(x, base)


def _round(x, ndigits=None):
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or isinstance(ndigits, bool) or abs(ndigits) > MAX_ROUND_DIGITS:
        raise ToolError(f"round takes a whole number of digits from -{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS}")
    return round(x, ndigits)


def _factorial(n):
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_FACTORIAL:
        raise ToolError(f"factorial takes a whole number from 0 to {MAX_FACTORIAL}")
    return math.factorial(n)


BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow, ast.BitXor: _pow}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS.update(log=_log, ln=math.log, factorial=_factorial, round=_round)


def evaluate(expression: str):
    """The value of an arithmetic expression; ToolError for anything else or too big."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.replace("×", "*").replace("÷", "/").strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError(f"expression has more than {MAX_NODES} parts")
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large") from None
    except (ValueError, TypeError) as exc:
        raise ToolError(f"math error: {exc}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _eval(node):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        return BINARY[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
            and not node.keywords and 0 < len(node.args) <= 10):
        return FUNCTIONS[node.func.id](*[_eval(a) for a in node.args])
    raise ToolError(f"not allowed in an expression: {ast.unparse(node)[:60]!r} (numbers, + - * / // % ** "
                    f"and {', '.join(sorted(FUNCTIONS))} only)")


def calculate_math(expression: str):
    return evaluate(expression)


TOOL = Tool("calculate_math", "Evaluate an arithmetic expression, e.g. '(2 + 3) * sqrt(16) / 7'.",
            {"type": "object", "properties": {"expression": {"type": "string",
                                                             "description": "the expression to evaluate"}},
             "required": ["expression"]}, calculate_math, isolated=True)

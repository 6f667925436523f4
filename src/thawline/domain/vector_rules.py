"""Rule conditions as Polars expressions: the same language as :mod:`thawline.domain.expr`, column-wise.

Each condition is parsed and checked by :func:`thawline.domain.expr.compile_expression` (so only
the safe language gets here, never ``eval``), then its syntax tree is translated node by node into
a Polars expression over feature columns, keeping Python's meaning where it matters:

- ``x / 0`` is infinity (the engine's ``_div``); ``x % 0`` and comparing text with a number raise in
  the engine, so the rule does not fire there — here they give null, and a null condition is false;
- booleans take part in arithmetic and comparisons as 0 and 1; ``and``/``or`` between numbers return
  an operand, as in Python; ``not``/``and``/``or`` otherwise test truthiness (0, "" are false).

A backtest tests a condition the way the engine evaluates it lazily: the operands of an ``and``
cheapest first (:func:`cost`), each on the rows the earlier ones left; ``count >= k`` on a window
count is tested without computing the count (:func:`count_test`).

Threshold sweeps rewrite one numeric constant of a condition (:func:`with_threshold`).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Collection
from typing import Literal

import polars as pl

from thawline.domain.expr import ExpressionError, compile_expression, names
from thawline.domain.features import FEATURES
from thawline.domain.vector_features import BOUNDED, COST, COUNTS

Kind = Literal["bool", "num", "str"]
Typed = tuple[pl.Expr, Kind]

TEXT_FEATURES = frozenset({"event_type", "currency", "direction", "channel", "profile_field"})
BOOL_FEATURES = frozenset(
    {"success", "new_device", "new_ip", "ip_is_proxy", "ip_bad_reputation", "new_counterparty", "blacklisted"}
)
NULL = pl.lit(None, dtype=pl.Boolean)


def _kind(name: str) -> Kind:
    if name in TEXT_FEATURES:
        return "str"
    return "bool" if name in BOOL_FEATURES else "num"


def condition(source: str) -> pl.Expr:
    """The condition as a boolean expression; false where the engine's would be false or raise."""
    compile_expression(source, FEATURES)  # the engine's checks: only the language gets through
    tree = ast.parse(source.strip(), mode="eval").body
    return _truthy(_node(tree)).fill_null(False)


def _truthy(typed: Typed) -> pl.Expr:
    expr, kind = typed
    if kind == "bool":
        return expr
    if kind == "str":
        return expr.str.len_chars() > 0
    return expr != 0


def _num(typed: Typed) -> pl.Expr | None:
    expr, kind = typed
    if kind == "str":
        return None
    return expr.cast(pl.Int64) if kind == "bool" else expr


def _node(node: ast.expr) -> Typed:  # noqa: PLR0911, PLR0912 — one branch per construct
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            return pl.lit(value), "bool"
        if isinstance(value, str):
            return pl.lit(value, dtype=pl.String), "str"
        return pl.lit(value), "num"
    if isinstance(node, ast.Name):
        if node.id in ("true", "false"):
            return pl.lit(node.id == "true"), "bool"
        return pl.col(node.id), _kind(node.id)
    if isinstance(node, ast.BoolOp):
        return _boolop(node)
    if isinstance(node, ast.UnaryOp):
        inner = _node(node.operand)
        if isinstance(node.op, ast.Not):
            return ~_truthy(inner), "bool"
        num = _num(inner)
        return (-num if num is not None else NULL), "num"
    if isinstance(node, ast.BinOp):
        return _binop(node)
    if isinstance(node, ast.Compare):
        parts = [
            _compare(op, left, right)
            for op, left, right in zip(
                node.ops, [node.left, *node.comparators[:-1]], node.comparators, strict=True
            )
        ]
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out, "bool"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [_num(_node(a)) for a in node.args]
        if any(a is None for a in args):
            return NULL, "num"
        nums = [a for a in args if a is not None]
        if node.func.id == "abs":
            return (nums[0].abs(), "num") if len(nums) == 1 else (NULL, "num")
        if len(nums) < 2:  # max(x) of one number raises in Python
            return NULL, "num"
        fn = pl.max_horizontal if node.func.id == "max" else pl.min_horizontal
        return fn(*nums), "num"
    raise ExpressionError(f"'{ast.unparse(node)}' is not allowed in a rule condition")


def _boolop(node: ast.BoolOp) -> Typed:
    parts = [_node(v) for v in node.values]
    is_and = isinstance(node.op, ast.And)
    if all(k == "num" for _e, k in parts) or all(k == "str" for _e, k in parts):
        # Python returns an operand: ``a and b`` is b when a is truthy, else a.
        out, kind = parts[-1]
        for part in reversed(parts[:-1]):
            test = _truthy(part)
            out = (
                pl.when(test).then(out).otherwise(part[0])
                if is_and
                else pl.when(test).then(part[0]).otherwise(out)
            )
        return out, kind
    tests = [_truthy(p) for p in parts]
    combined = tests[0]
    for t in tests[1:]:
        combined = (combined & t) if is_and else (combined | t)
    return combined, "bool"


def _binop(node: ast.BinOp) -> Typed:  # noqa: PLR0911 — one return per operator
    left, right = _node(node.left), _node(node.right)
    if left[1] == "str" or right[1] == "str":
        if isinstance(node.op, ast.Add) and left[1] == right[1] == "str":
            return left[0] + right[0], "str"
        return NULL, "num"
    a, b = _num(left), _num(right)
    if a is None or b is None:  # pragma: no cover — text was handled above
        return NULL, "num"
    if isinstance(node.op, ast.Add):
        return a + b, "num"
    if isinstance(node.op, ast.Sub):
        return a - b, "num"
    if isinstance(node.op, ast.Mult):
        return a * b, "num"
    if isinstance(node.op, ast.Div):
        return pl.when(b != 0).then(a.cast(pl.Float64) / b).otherwise(math.inf), "num"
    if isinstance(node.op, ast.Mod):
        return pl.when(b != 0).then(a % b), "num"
    raise ExpressionError(f"'{ast.unparse(node)}' is not allowed in a rule condition")


_ORDER: dict[type[ast.cmpop], Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
}


def _compare(op: ast.cmpop, left_node: ast.expr, right_node: ast.expr) -> pl.Expr:  # noqa: PLR0911 — per kind
    left = _node(left_node)
    if isinstance(op, ast.In | ast.NotIn):
        if not isinstance(right_node, ast.List | ast.Tuple):
            return NULL  # ``x in 5`` raises
        values = [e.value for e in right_node.elts if isinstance(e, ast.Constant)]
        if left[1] == "str":
            found = left[0].is_in([v for v in values if isinstance(v, str)])
        else:
            nums = [float(v) for v in values if isinstance(v, int | float)]
            found = _num(left).cast(pl.Float64).is_in(nums)  # type: ignore[union-attr]
        return found if isinstance(op, ast.In) else ~found
    right = _node(right_node)
    if isinstance(op, ast.Eq | ast.NotEq):
        if (left[1] == "str") != (right[1] == "str"):
            return pl.lit(isinstance(op, ast.NotEq))  # text never equals a number
        a, b = (left[0], right[0]) if left[1] == "str" else (_num(left), _num(right))
        if a is None or b is None:  # pragma: no cover — only text has no number
            return NULL
        same: pl.Expr = a == b
        return same if isinstance(op, ast.Eq) else ~same
    if left[1] == "str" and right[1] == "str":
        return _ORDER[type(op)](left[0], right[0])
    a, b = _num(left), _num(right)
    if a is None or b is None:
        return NULL  # ordering text against a number raises
    return _ORDER[type(op)](a, b)


# -- what a ruleset needs, and in which order ------------------------------------------------------


def reads(sources: Collection[str]) -> set[str]:
    """Every feature the conditions read."""
    out: set[str] = set()
    for s in sources:
        out |= names(s) - {"true", "false"}
    return out


def tree(source: str) -> ast.expr:
    """The condition's syntax tree, checked by the engine's rules first."""
    compile_expression(source, FEATURES)
    return ast.parse(source.strip(), mode="eval").body


def truth(node: ast.expr) -> pl.Expr:
    """Whether ``node`` is truthy, as the engine would test it (false where it would raise)."""
    return _truthy(_node(node)).fill_null(False)


def read_by(node: ast.expr) -> set[str]:
    """The features ``node`` reads."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & FEATURES


def cost(node: ast.expr) -> int:
    """How costly testing ``node`` is (the costliest feature it reads; a count test is cheap)."""
    if count_test(node) is not None and count_test(node)[0] in COUNTS:  # type: ignore[index]
        return 1
    return max((COST.get(n, 0) for n in read_by(node)), default=0)


def type_test(node: ast.expr) -> tuple[str, bool] | None:
    """``event_type == "kind"`` (or ``!=``, or mirrored): (kind, whether equal is wanted)."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
        return None
    sides = (node.left, node.comparators[0])
    op = node.ops[0]
    for name, value in (sides, sides[::-1]):
        if (
            isinstance(name, ast.Name)
            and name.id == "event_type"
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
            and isinstance(op, ast.Eq | ast.NotEq)
        ):
            return value.value, isinstance(op, ast.Eq)
    return None


def count_test(node: ast.expr) -> tuple[str, int] | None:
    """``feature >= k`` (or ``> k``, or mirrored) for a window count or a bounded distinct count:
    (feature, the least whole k that passes)."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
        return None
    left, op, right = node.left, node.ops[0], node.comparators[0]
    if isinstance(right, ast.Name) and isinstance(left, ast.Constant):  # k <= x  is  x >= k
        flipped = {ast.LtE: ast.GtE, ast.Lt: ast.Gt}.get(type(op))
        if flipped is None:
            return None
        left, right, op = right, left, flipped()
    if not (
        isinstance(left, ast.Name)
        and (left.id in COUNTS or left.id in BOUNDED)
        and isinstance(right, ast.Constant)
        and isinstance(right.value, int | float)
        and not isinstance(right.value, bool)
        and math.isfinite(right.value)
        and isinstance(op, ast.GtE | ast.Gt)
    ):
        return None
    value = right.value
    return left.id, math.ceil(value) if isinstance(op, ast.GtE) else math.floor(value) + 1


# -- thresholds -----------------------------------------------------------------------------------


def thresholds(source: str) -> list[tuple[str, float]]:
    """The numeric constants of a condition in source order, as (``#n``, value)."""
    return [(f"#{i + 1}", float(c.value)) for i, c in enumerate(_constants(source))]  # type: ignore[arg-type]


def _constants(source: str) -> list[ast.Constant]:
    tree = ast.parse(source.strip(), mode="eval")
    found = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, int | float) and not isinstance(n.value, bool)
    ]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def with_threshold(source: str, param: str, value: float) -> str:
    """``source`` with one numeric constant replaced by ``value``.

    ``param`` is ``#n`` (the n-th number in the condition) or a feature name compared directly with
    one number (``txn_count_10m`` in ``txn_count_10m >= 15``); raises :class:`ExpressionError`.
    """
    constants = _constants(source)
    if param.startswith("#"):
        try:
            target = constants[int(param[1:]) - 1]
        except (ValueError, IndexError):
            raise ExpressionError(f"the condition has no number {param} (it has {len(constants)})") from None
    else:
        tree = ast.parse(source.strip(), mode="eval")
        hits = [
            side
            for n in ast.walk(tree)
            if isinstance(n, ast.Compare) and len(n.ops) == 1
            for name, side in ((n.left, n.comparators[0]), (n.comparators[0], n.left))
            if isinstance(name, ast.Name)
            and name.id == param
            and isinstance(side, ast.Constant)
            and isinstance(side.value, int | float)
            and not isinstance(side.value, bool)
        ]
        if len(hits) != 1:
            where = "is not compared with a number" if not hits else "is compared with several numbers"
            raise ExpressionError(f"'{param}' {where} in this condition; name the number as #n instead")
        target = hits[0]
    key = (target.lineno, target.col_offset)
    tree = ast.parse(source.strip(), mode="eval")
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and (n.lineno, n.col_offset) == key:
            n.value = int(value) if float(value).is_integer() else float(value)
    text = ast.unparse(tree)
    compile_expression(text, FEATURES)
    return text

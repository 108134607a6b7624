"""A small, safe expression form for conditions the structured form cannot say.

    expr: "args.amount > 1000 and (risk >= 0.5 or not in_scope)"

The text is parsed with Python's `ast` module and only a whitelisted set of node types is
accepted; the tree is then compiled to closures. Nothing is ever passed to eval/exec, there is
no attribute access except on `args`, and functions are a fixed list. Comparisons between
values of different types are false (never an error); a missing argument fails every
comparison. Arithmetic on non-numbers raises, which the engine treats as a deny.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from thoth.policy.errors import PolicyEvaluationError
from thoth.policy.values import MISSING, domains_of, glob_regex, same_value, to_number

if TYPE_CHECKING:
    from thoth.policy.conditions import Compiler, Eval

MAX_LENGTH = 2000
MAX_NODES = 300

Fn = Callable[["Eval"], Any]


class ExprError(ValueError):
    pass


VARIABLES: dict[str, Fn] = {
    "tool": lambda ev: ev.c.tool_name,
    "agent": lambda ev: ev.c.agent_id,
    "user": lambda ev: ev.c.user_id,
    "tenant": lambda ev: ev.c.tenant_id,
    "environment": lambda ev: ev.c.environment,
    "intent": lambda ev: ev.c.session_intent if ev.c.session_intent is not None else MISSING,
    "risk": lambda ev: ev.c.risk_score if ev.c.risk_score is not None else MISSING,
    "args": lambda ev: ev.args,
    "session_calls": lambda ev: ev.h.n,
    "in_scope": lambda ev: ev.in_scope,
    "in_intent": lambda ev: ev.in_intent,
    "hour": lambda ev: datetime.fromtimestamp(ev.c.now, UTC).hour,
    "weekday": lambda ev: datetime.fromtimestamp(ev.c.now, UTC).weekday(),
}
CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
FUNCTIONS = ("len", "lower", "upper", "startswith", "endswith", "contains", "matches", "glob", "domain",
             "number", "has", "called", "count", "calls_within")


def compile_expr(text: str, compiler: Compiler) -> Callable[[Eval], bool]:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"syntax error at column {exc.offset}: {exc.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExprError(f"more than {MAX_NODES} parts")
    fn = _Builder(compiler).build(tree.body)
    return lambda ev: fn(ev) is True


def _num(value: Any) -> float:
    n = to_number(value) if not isinstance(value, str) else None
    if n is None:
        raise PolicyEvaluationError(f"arithmetic on a non-number {value!r}")
    return n


def _order(op: type[ast.cmpop], a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return False
    na, nb = _maybe_number(a), _maybe_number(b)
    if na is not None and nb is not None:
        x, y = na, nb
    elif isinstance(a, str) and isinstance(b, str):
        x, y = a, b  # type: ignore[assignment]
    else:
        return False
    if op is ast.Lt:
        return x < y
    if op is ast.LtE:
        return x <= y
    if op is ast.Gt:
        return x > y
    return x >= y


def _maybe_number(value: Any) -> float | None:
    if isinstance(value, str):
        return None if not value.strip() or not _NUMERIC.fullmatch(value.strip()) else to_number(value)
    return to_number(value)


_NUMERIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _contains(container: Any, item: Any) -> bool:
    if container is MISSING or item is MISSING:
        return False
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | tuple):
        return any(same_value(item, x) for x in container)
    if isinstance(container, dict):
        return isinstance(item, str) and item in container
    return False


class _Builder:
    def __init__(self, compiler: Compiler) -> None:
        self.compiler = compiler

    def build(self, node: ast.AST) -> Fn:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise ExprError(f"{type(node).__name__} is not allowed here")
        return method(node)  # type: ignore[no-any-return]

    def _Constant(self, node: ast.Constant) -> Fn:
        value = node.value
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise ExprError(f"constant {value!r} is not allowed")
        return lambda ev: value

    def _Name(self, node: ast.Name) -> Fn:
        if node.id in CONSTANTS:
            value = CONSTANTS[node.id]
            return lambda ev: value
        if node.id not in VARIABLES:
            raise ExprError(f"unknown name {node.id!r}; known: {', '.join(VARIABLES)}")
        return VARIABLES[node.id]

    def _Attribute(self, node: ast.Attribute) -> Fn:
        base = self.build(node.value)
        if not _rooted_in_args(node.value):
            raise ExprError("only args.<name> may use '.'")
        name = node.attr
        if name.startswith("_"):
            raise ExprError(f"argument names starting with '_' need args[{name!r}]")
        return lambda ev: _item(base(ev), name)

    def _Subscript(self, node: ast.Subscript) -> Fn:
        if not _rooted_in_args(node.value):
            raise ExprError("only args[...] may be indexed")
        if not isinstance(node.slice, ast.Constant) or not isinstance(node.slice.value, str | int):
            raise ExprError("an index must be a constant string or integer")
        base = self.build(node.value)
        key = node.slice.value
        return lambda ev: _item(base(ev), key)

    def _List(self, node: ast.List | ast.Tuple) -> Fn:
        items = [self.build(e) for e in node.elts]
        return lambda ev: [f(ev) for f in items]

    _Tuple = _List

    def _BoolOp(self, node: ast.BoolOp) -> Fn:
        parts = [self.build(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda ev: all(p(ev) is True for p in parts)
        return lambda ev: any(p(ev) is True for p in parts)

    def _UnaryOp(self, node: ast.UnaryOp) -> Fn:
        inner = self.build(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda ev: inner(ev) is not True
        if isinstance(node.op, ast.USub):
            return lambda ev: -_num(inner(ev))
        raise ExprError(f"operator {type(node.op).__name__} is not allowed")

    def _BinOp(self, node: ast.BinOp) -> Fn:
        left, right = self.build(node.left), self.build(node.right)
        ops: dict[type[ast.operator], Callable[[float, float], float]] = {
            ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        }
        op = ops.get(type(node.op))
        if isinstance(node.op, ast.Div):
            def divide(ev: Eval) -> float:
                b = _num(right(ev))
                if b == 0:
                    raise PolicyEvaluationError("division by zero")
                return _num(left(ev)) / b
            return divide
        if op is None:
            raise ExprError(f"operator {type(node.op).__name__} is not allowed (use + - * /)")
        return lambda ev: op(_num(left(ev)), _num(right(ev)))

    def _Compare(self, node: ast.Compare) -> Fn:
        operands = [self.build(node.left)] + [self.build(c) for c in node.comparators]
        kinds = [type(o) for o in node.ops]
        for kind in kinds:
            if kind in (ast.Is, ast.IsNot):
                raise ExprError("'is' is not allowed; use == or has(...)")

        def compare(ev: Eval) -> bool:
            left = operands[0](ev)
            for kind, right_fn in zip(kinds, operands[1:], strict=True):
                right = right_fn(ev)
                if kind is ast.Eq:
                    ok = left is not MISSING and right is not MISSING and same_value(left, right)
                elif kind is ast.NotEq:
                    ok = left is not MISSING and right is not MISSING and not same_value(left, right)
                elif kind is ast.In:
                    ok = _contains(right, left)
                elif kind is ast.NotIn:
                    ok = left is not MISSING and right is not MISSING and not _contains(right, left)
                else:
                    ok = _order(kind, left, right)
                if not ok:
                    return False
                left = right
            return True

        return compare

    def _Call(self, node: ast.Call) -> Fn:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise ExprError(f"unknown function; allowed: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise ExprError("keyword arguments are not allowed")
        name = node.func.id
        raw = node.args
        if name in ("called", "count", "calls_within"):
            return self._history_call(name, raw)
        args = [self.build(a) for a in raw]
        want = {"len": 1, "lower": 1, "upper": 1, "startswith": 2, "endswith": 2, "contains": 2,
                "matches": 2, "glob": 2, "domain": 1, "number": 1, "has": 1}[name]
        if len(args) != want:
            raise ExprError(f"{name}() takes {want} argument(s)")
        if name in ("matches", "glob"):
            if not isinstance(raw[1], ast.Constant) or not isinstance(raw[1].value, str):
                raise ExprError(f"{name}() needs a constant pattern")
            try:
                pattern = re.compile(raw[1].value) if name == "matches" else glob_regex(raw[1].value)
            except re.error as exc:
                raise ExprError(f"bad pattern: {exc}") from None
            subject = args[0]
            if name == "matches":
                return lambda ev: isinstance(s := subject(ev), str) and pattern.search(s) is not None
            return lambda ev: isinstance(s := subject(ev), str) and pattern.match(s) is not None
        a = args[0]
        if name == "len":
            return lambda ev: len(v) if isinstance(v := a(ev), str | list | dict) else MISSING
        if name == "lower":
            return lambda ev: v.lower() if isinstance(v := a(ev), str) else MISSING
        if name == "upper":
            return lambda ev: v.upper() if isinstance(v := a(ev), str) else MISSING
        if name == "domain":
            return lambda ev: domains_of(v)[0] if isinstance(v := a(ev), str) else MISSING
        if name == "number":
            return lambda ev: n if (n := _maybe_number(a(ev))) is not None else MISSING
        if name == "has":
            return lambda ev: a(ev) is not MISSING
        b = args[1]
        if name == "startswith":
            return lambda ev: isinstance(s := a(ev), str) and isinstance(p := b(ev), str) and s.startswith(p)
        if name == "endswith":
            return lambda ev: isinstance(s := a(ev), str) and isinstance(p := b(ev), str) and s.endswith(p)
        return lambda ev: _contains(a(ev), b(ev))

    def _history_call(self, name: str, raw: list[ast.expr]) -> Fn:
        want = 2 if name == "calls_within" else 1
        if len(raw) != want or not isinstance(raw[0], ast.Constant) or not isinstance(raw[0].value, str):
            raise ExprError(f"{name}() takes a constant tool name" + (" and a number of seconds" if want == 2 else ""))
        before = len(self.compiler.issues)
        marker = self.compiler.marker(raw[0].value, None, ())
        if marker is None or len(self.compiler.issues) != before:
            raise ExprError(f"bad tool pattern {raw[0].value!r}")
        key = marker.key
        if name == "called":
            return lambda ev: key in ev.h.markers
        if name == "count":
            return lambda ev: e[0] if (e := ev.h.markers.get(key)) is not None else 0
        seconds = raw[1]
        if not isinstance(seconds, ast.Constant) or isinstance(seconds.value, bool) \
                or not isinstance(seconds.value, int | float):
            raise ExprError("calls_within() needs a constant number of seconds")
        window = float(seconds.value)
        return lambda ev: ev.h.count_since(e[2], ev.c.now - window) if (e := ev.h.markers.get(key)) else 0


def _rooted_in_args(node: ast.AST) -> bool:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return isinstance(node, ast.Name) and node.id == "args"


def _item(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        if key in container:
            return container[key]
        kwargs = container.get("kwargs")
        if isinstance(kwargs, dict) and key in kwargs:
            return kwargs[key]
        return MISSING
    if isinstance(container, list) and isinstance(key, int) and -len(container) <= key < len(container):
        return container[key]
    return MISSING

"""Compile the condition language into Python source and closures.

A condition is a mapping of one or more condition kinds (several keys = all must hold), or a
list (all must hold). Each compiles to `f(ev) -> bool` where `ev` is an `Eval`. Compilation
collects every problem with its path instead of stopping at the first one.

The kinds live in families, each a module with its compiler methods and its own `KINDS` table
(cond_call, cond_args, cond_session, cond_time, cond_provenance, cond_mcp); this module holds the
structure (all, any, not, expr) and joins the tables. Adding a kind to a family touches only that family's module.
"""

from __future__ import annotations

from typing import Any

from thoth.policy import cond_args, cond_call, cond_mcp, cond_provenance, cond_session, cond_time
from thoth.policy.cond_args import ELEMENT_OPS, NUMERIC_OPS, SYMBOLS, TYPES, WHOLE_OPS
from thoth.policy.cond_base import (
    CHECK,
    CODE,
    EVAL,
    ArgsPred,
    Check,
    Cond,
    Eval,
    Kind,
    ValuePred,
    arg_path,
    build_function,
    get_arg,
    normalize_args,
)
from thoth.policy.cond_call import CLASSIFICATIONS, TIERS
from thoth.policy.cond_mcp import McpConditions
from thoth.policy.cond_provenance import ProvenanceConditions
from thoth.policy.cond_session import SessionConditions
from thoth.policy.cond_time import DAYS, TimeConditions
from thoth.policy.loader import Path
from thoth.policy.values import is_glob


class Compiler(SessionConditions, TimeConditions, ProvenanceConditions, McpConditions):
    def code(self, node: Any, path: Path) -> str | None:
        if isinstance(node, list):
            return self.gen_all(node, path)
        if not isinstance(node, dict) or not node:
            self.err(path, "a condition must be a non-empty mapping (e.g. {tool: send_email}) or a list")
            return None
        parts: list[str] = []
        ok = True
        for key, value in node.items():
            sub = (*path, str(key))
            kind = KINDS.get(key)
            if kind is None:
                self.err(sub, f"unknown condition {key!r}; expected one of: {', '.join(CONDITION_KINDS)}")
                ok = False
                continue
            made = kind.build(self, value, sub)
            if kind.form == CODE or made is None:
                src = made
            else:  # a closure, called from the expression: EVAL kinds take the whole Eval, CHECK (c, a, h)
                src = f"{self.const(made)}{'(ev)' if kind.form == EVAL else '(c, a, h)'}"
            if src is None:
                ok = False
            else:
                parts.append(src)
        if not ok:
            return None
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def condition(self, node: Any, path: Path) -> Cond | None:
        """One condition as a standalone function of an Eval (rules are compiled per tool instead)."""
        src = self.code(node, path)
        if src is None:
            return None
        text = (f"def _cond(ev):\n    c = ev.c\n    a = ev.args\n    h = ev.h\n    in_scope = ev.in_scope\n"
                f"    in_intent = ev.in_intent\n    return bool({src})\n")
        fn: Cond = build_function(text, self.consts, "_cond")
        return fn

    def _list(self, items: Any, path: Path, joiner: str) -> str | None:
        if not isinstance(items, list) or not items:
            self.err(path, "expected a non-empty list of conditions")
            return None
        parts = [self.code(item, (*path, i)) for i, item in enumerate(items)]
        if any(p is None for p in parts):
            return None
        return "(" + joiner.join(p for p in parts if p is not None) + ")"

    def gen_all(self, items: Any, path: Path) -> str | None:
        return self._list(items, path, " and ")

    def gen_any(self, items: Any, path: Path) -> str | None:
        return self._list(items, path, " or ")

    def gen_not(self, node: Any, path: Path) -> str | None:
        inner = self.code(node, path)
        return None if inner is None else f"(not {inner})"

    def check_expr(self, value: Any, path: Path) -> Cond | None:
        from thoth.policy.expr import ExprError, compile_expr

        if not isinstance(value, str) or not value.strip():
            self.err(path, "expr takes an expression string, e.g. \"args.amount > 1000 and risk >= 0.5\"")
            return None
        try:
            return compile_expr(value, self)
        except ExprError as exc:
            self.err(path, f"bad expression: {exc}")
            return None


_STRUCTURE = {
    "all": Kind(CODE, Compiler.gen_all),
    "any": Kind(CODE, Compiler.gen_any),
    "not": Kind(CODE, Compiler.gen_not),
    "expr": Kind(EVAL, Compiler.check_expr),
}
# Every condition kind a policy may use, by name.
KINDS: dict[str, Kind] = {**_STRUCTURE, **cond_call.KINDS, **cond_args.KINDS, **cond_session.KINDS,
                          **cond_time.KINDS, **cond_provenance.KINDS, **cond_mcp.KINDS}
CONDITION_KINDS = tuple(KINDS)


def tool_constraint(node: Any) -> frozenset[str] | None:
    """Exact tool names a condition can only match (for the per-tool index), or None."""
    if isinstance(node, list):
        node = {"all": node}
    if not isinstance(node, dict):
        return None
    found: frozenset[str] | None = None
    for key, value in node.items():
        sub: frozenset[str] | None = None
        if key == "tool":
            items = value if isinstance(value, list) else [value]
            if items and all(isinstance(v, str) and not is_glob(v) for v in items):
                # `server/tool` matches calls of the tool `tool` (ADR 0401): index it there too (and
                # under the whole name, for a tool whose own name breaks the spec with a slash).
                sub = frozenset(items) | frozenset(v.rpartition("/")[2] or v for v in items)
        elif key == "all" and isinstance(value, list):
            for item in value:
                c = tool_constraint(item)
                if c is not None:
                    sub = c if sub is None else sub & c
        elif key == "any" and isinstance(value, list) and value:
            subs = [tool_constraint(item) for item in value]
            if all(s is not None for s in subs):
                sub = frozenset().union(*[s for s in subs if s is not None])
        if sub is not None:
            found = sub if found is None else found & sub
    return found


__all__ = [
    "CHECK", "CLASSIFICATIONS", "CODE", "CONDITION_KINDS", "DAYS", "ELEMENT_OPS", "EVAL", "KINDS", "NUMERIC_OPS",
    "SYMBOLS", "TIERS", "TYPES", "WHOLE_OPS", "ArgsPred", "Check", "Compiler", "Cond", "Eval", "Kind", "ValuePred",
    "arg_path", "build_function", "get_arg", "normalize_args", "tool_constraint",
]

"""Condition kinds about the call's arguments (args, any_arg) and the value tests they share
(equals, in, glob, regex, prefix, domain, numeric comparisons, ...)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from thoth.policy.cond_base import (
    CHECK,
    CODE,
    ArgsPred,
    Check,
    CompilerBase,
    Kind,
    ValuePred,
    arg_path,
    get_arg,
)
from thoth.policy.loader import Path
from thoth.policy.values import (
    MAX_TEXT,
    MISSING,
    as_text,
    domains_of,
    glob_regex,
    in_domains,
    same_value,
    to_number,
)

NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "le": lambda a, b: a <= b,
}
SYMBOLS = {"gt": ">", "gte": ">=", "ge": ">=", "lt": "<", "lte": "<=", "le": "<="}
ELEMENT_OPS = ("equals", "not_equals", "in", "not_in", "glob", "regex", "prefix", "suffix", "contains",
               "domain", "not_domain", *NUMERIC_OPS)
WHOLE_OPS = ("present", "type", "len_gt", "len_lt", "not", "ignore_case")
TYPES = {"string": (str,), "number": (int, float), "bool": (bool,), "list": (list,), "object": (dict,),
         "null": (type(None),)}


class ArgsConditions(CompilerBase):
    def gen_args(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, dict) or not value:
            self.err(path, "args takes a mapping of argument name -> test, e.g. {path: {prefix: /secrets/}}")
            return None
        parts: list[str] = []
        ok = True
        for name, spec in value.items():
            sub = (*path, str(name))
            if isinstance(spec, dict) and "source" in spec:  # provenance (cond_provenance)
                check = self.source_check(str(name), spec["source"], (*sub, "source"))
                rest = {k: v for k, v in spec.items() if k != "source"}
                if check is None:
                    ok = False
                    continue
                parts.append(f"{self.const(check)}(c, a, h)")
                if not rest:
                    continue
                spec = rest
            pred = self.value_pred(spec, sub)
            if pred is None:
                ok = False
                continue
            steps = arg_path(str(name))
            if len(steps) == 1:
                fetch = f"a.get({self.const(steps[0])}, MISS)"
            else:
                fetch = f"get_arg(a, {self.const(steps)})"
            parts.append(self._value_code(spec, fetch, pred))
        if not ok:
            return None
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def _value_code(self, spec: Any, fetch: str, pred: ValuePred) -> str:
        """An inline test for the common case (one operator, a value of the expected type); the
        general predicate handles everything else (lists, numbers as text, missing values)."""
        general = self.const(pred)
        if isinstance(spec, list):
            spec = {"in": spec}
        elif not isinstance(spec, dict):
            spec = {"equals": spec}
        var = f"_v{len(self.consts)}"
        inline: str | None = None
        guard = f"type({var} := {fetch}) is str"
        if len(spec) == 1:
            (op, arg), = spec.items()
            words = arg if isinstance(arg, list) else [arg]
            strings = all(isinstance(w, str) for w in words)
            if op == "equals" and isinstance(arg, str):
                inline = f"{var} == {self.const(arg)}"
            elif op in ("in", "not_in") and isinstance(arg, list) and strings:
                inline = f"{var} {'in' if op == 'in' else 'not in'} {self.const(frozenset(arg))}"
            elif op == "prefix" and strings:
                inline = f"{var}.startswith({self.const(tuple(words))})"
            elif op in ("suffix", "contains", "regex", "glob") and strings and len(words) == 1:
                guard += f" and len({var}) <= {MAX_TEXT}"
                word = words[0]
                if op == "suffix":
                    inline = f"{var}.endswith({self.const(word)})"
                elif op == "contains":
                    inline = f"{self.const(word)} in {var}"
                elif op == "regex":
                    inline = f"{self.const(re.compile(word))}.search({var}) is not None"
                else:
                    inline = f"{self.const(glob_regex(word))}.match({var}) is not None"
            elif op in NUMERIC_OPS and isinstance(arg, int | float) and not isinstance(arg, bool):
                guard = f"type({var} := {fetch}) is int"
                inline = f"{var} {SYMBOLS[op]} {self.const(arg)}"
        if inline is None:
            return f"{general}({fetch})"
        return f"(({inline}) if {guard} else {general}({var}))"

    def check_any_arg(self, value: Any, path: Path) -> Check | None:
        pred = self.value_pred(value, path)
        if pred is None:
            return None
        # Strings are the common leaves: test them directly when the spec is one string operator.
        spec = value if isinstance(value, dict) else {"in" if isinstance(value, list) else "equals": value}
        fast: Callable[[str], bool] | None = None
        if len(spec) == 1:
            (op, arg), = spec.items()
            words = arg if isinstance(arg, list) else [arg]
            if op == "regex" and all(isinstance(w, str) for w in words):
                searches = tuple(re.compile(w).search for w in words)
                if len(searches) == 1:
                    search = searches[0]
                    fast = lambda text: search(text) is not None  # noqa: E731
                else:
                    fast = lambda text: any(f(text) is not None for f in searches)  # noqa: E731
            elif op == "contains" and all(isinstance(w, str) for w in words):
                fast = lambda text: any(w in text for w in words)  # noqa: E731
        if fast is None:
            return lambda c, a, h: _any_leaf(a, pred, 0)
        str_test = fast
        return lambda c, a, h: _any_leaf_str(a, str_test, pred, 0)

    def args_block(self, value: Any, path: Path) -> ArgsPred | None:
        if not isinstance(value, dict) or not value:
            self.err(path, "args takes a mapping of argument name -> test, e.g. {path: {prefix: /secrets/}}")
            return None
        tests: list[tuple[tuple[str, ...], ValuePred]] = []
        ok = True
        for name, spec in value.items():
            if isinstance(spec, dict) and "source" in spec:
                self.err((*path, str(name), "source"), "source tests the call being decided; it cannot be "
                                                       "used on earlier calls (history, called, rate)")
                ok = False
                continue
            pred = self.value_pred(spec, (*path, str(name)))
            if pred is None:
                ok = False
                continue
            tests.append((arg_path(str(name)), pred))
        if not ok:
            return None
        if len(tests) == 1:
            (parts, only), = tests
            return lambda args: only(get_arg(args, parts))
        frozen = tuple(tests)
        return lambda args: all(p(get_arg(args, parts)) for parts, p in frozen)

    # -- value tests ---------------------------------------------------------------------------
    def value_pred(self, spec: Any, path: Path) -> ValuePred | None:
        """A test on one value. A scalar means equals; a list means in; a mapping names operators.
        A missing value fails every test except `present: false`. A list value passes an element
        test when any element passes (e.g. any recipient outside the allowed domains)."""
        if isinstance(spec, list):
            spec = {"in": spec}
        elif not isinstance(spec, dict):
            spec = {"equals": spec}
        if not spec:
            self.err(path, "empty test")
            return None
        unknown = [k for k in spec if k not in ELEMENT_OPS and k not in WHOLE_OPS]
        if unknown:
            self.err(path, f"unknown operator(s) {unknown}; expected: {', '.join(ELEMENT_OPS + WHOLE_OPS)}")
            return None
        ignore_case = spec.get("ignore_case", False)
        if not isinstance(ignore_case, bool):
            self.err((*path, "ignore_case"), "ignore_case takes true or false")
            return None
        whole: list[ValuePred] = []
        element: list[ValuePred] = []
        present: bool | None = None
        ok = True
        for op, arg in spec.items():
            sub = (*path, str(op))
            if op == "ignore_case":
                continue
            if op == "present":
                if not isinstance(arg, bool):
                    self.err(sub, "present takes true or false")
                    ok = False
                present = arg
                continue
            made = self._op(op, arg, sub, ignore_case)
            if made is None:
                ok = False
                continue
            (whole if op in WHOLE_OPS else element).append(made)
        if not ok:
            return None
        if present is False:
            if whole or element:
                self.err(path, "present: false cannot be combined with other tests")
                return None
            return lambda v: v is MISSING
        wholes = tuple(whole)
        elements = tuple(element)

        def check(value: Any) -> bool:
            if value is MISSING:
                return False
            for test in wholes:
                if not test(value):
                    return False
            if not elements:
                return True
            if isinstance(value, list):
                return any(all(t(x) for t in elements) for x in value[:1000])
            return all(t(value) for t in elements)

        if len(elements) == 1 and not wholes:
            single = elements[0]

            def check_one(value: Any) -> bool:
                if value is MISSING:
                    return False
                if isinstance(value, list):
                    return any(single(x) for x in value[:1000])
                return single(value)

            return check_one
        return check

    def _op(self, op: str, arg: Any, path: Path, ic: bool) -> ValuePred | None:
        fold = (lambda s: s.lower()) if ic else (lambda s: s)
        if op in NUMERIC_OPS:
            limit = to_number(arg) if not isinstance(arg, str) else None
            if limit is None:
                self.err(path, f"{op} takes a number")
                return None
            cmp = NUMERIC_OPS[op]
            return lambda v: (n := to_number(v)) is not None and cmp(n, limit)
        if op in ("len_gt", "len_lt"):
            if not isinstance(arg, int) or isinstance(arg, bool):
                self.err(path, f"{op} takes an integer")
                return None
            if op == "len_gt":
                return lambda v: isinstance(v, str | list | dict) and len(v) > arg
            return lambda v: isinstance(v, str | list | dict) and len(v) < arg
        if op == "type":
            if arg not in TYPES:
                self.err(path, f"type takes one of {', '.join(TYPES)}")
                return None
            kinds = TYPES[arg]
            if arg == "number":
                return lambda v: isinstance(v, kinds) and not isinstance(v, bool)
            return lambda v: isinstance(v, kinds)
        if op == "not":
            inner = self.value_pred(arg, path)
            if inner is None:
                return None
            return lambda v: not inner(v)
        if op in ("equals", "not_equals"):
            if isinstance(arg, dict | list):
                self.err(path, f"{op} takes a single value (use in / not_in for lists)")
                return None
            if ic and isinstance(arg, str):
                low = arg.lower()
                eq: ValuePred = lambda v: isinstance(v, str) and v.lower() == low  # noqa: E731
            else:
                eq = lambda v: same_value(v, arg)  # noqa: E731
            return eq if op == "equals" else (lambda v: not eq(v))
        if op in ("in", "not_in"):
            if not isinstance(arg, list) or any(isinstance(x, dict | list) for x in arg):
                self.err(path, f"{op} takes a list of values")
                return None
            strings = frozenset(fold(x) for x in arg if isinstance(x, str))
            others = [x for x in arg if not isinstance(x, str)]

            def member(v: Any) -> bool:
                if isinstance(v, str):
                    return fold(v) in strings
                return any(same_value(v, x) for x in others)

            return member if op == "in" else (lambda v: not member(v))
        if op in ("glob", "regex", "prefix", "suffix", "contains"):
            items = arg if isinstance(arg, list) else [arg]
            if not items or not all(isinstance(x, str) for x in items):
                self.err(path, f"{op} takes a string or a list of strings")
                return None
            if op == "glob" or op == "regex":
                try:
                    flags = re.IGNORECASE if ic else 0
                    pats = [glob_regex(x, ic) if op == "glob" else re.compile(x, flags) for x in items]
                except re.error as exc:
                    self.err(path, f"bad {op}: {exc}")
                    return None
                if op == "glob":
                    return lambda v: (t := as_text(v)) is not None and any(p.match(t) for p in pats)
                return lambda v: (t := as_text(v)) is not None and any(p.search(t) for p in pats)
            words = tuple(fold(x) for x in items)
            if op == "prefix":
                return lambda v: (t := as_text(v)) is not None and fold(t).startswith(words)
            if op == "suffix":
                return lambda v: (t := as_text(v)) is not None and fold(t).endswith(words)
            return lambda v: (t := as_text(v)) is not None and any(w in fold(t) for w in words)
        if op in ("domain", "not_domain"):
            items = arg if isinstance(arg, list) else [arg]
            if not items or not all(isinstance(x, str) and x for x in items):
                self.err(path, f"{op} takes a domain or a list of domains")
                return None
            allowed = tuple(x.lower().lstrip("@.") for x in items)
            if op == "domain":
                return lambda v: isinstance(v, str) and all(in_domains(h, allowed) for h in domains_of(v))
            # Any host outside the list (an unparsable value counts as outside: fail closed).
            return lambda v: isinstance(v, str) and any(not in_domains(h, allowed) for h in domains_of(v))
        self.err(path, f"unknown operator {op!r}")
        return None

    def numeric(self, value: Any, path: Path) -> ValuePred | None:
        if not isinstance(value, dict) or not value or any(k not in NUMERIC_OPS for k in value):
            self.err(path, f"expected numeric tests like {{gt: 50}} ({', '.join(NUMERIC_OPS)})")
            return None
        return self.value_pred(value, path)


def _any_leaf(value: Any, pred: ValuePred, depth: int) -> bool:
    """Does any scalar inside `value` (nested up to 6 levels, 1,000 items a level) pass `pred`?"""
    if isinstance(value, dict):
        return depth < 6 and any(_any_leaf(v, pred, depth + 1) for v in value.values())
    if isinstance(value, list):
        return depth < 6 and any(_any_leaf(v, pred, depth + 1) for v in value[:1000])
    return pred(value)

def _any_leaf_str(value: Any, str_test: Callable[[str], bool], pred: ValuePred, depth: int) -> bool:
    """_any_leaf with strings tested directly (the common leaves), one call per container."""
    kind = type(value)
    if kind is str:
        return str_test(value) if len(value) <= MAX_TEXT else pred(value)
    if kind is not dict and kind is not list:
        return pred(value)
    if depth >= 6:
        return False
    for item in (value.values() if kind is dict else value[:1000]):
        t = type(item)
        if t is str:
            if str_test(item) if len(item) <= MAX_TEXT else pred(item):
                return True
        elif t is dict or t is list:
            if _any_leaf_str(item, str_test, pred, depth + 1):
                return True
        elif pred(item):
            return True
    return False


KINDS = {
    "args": Kind(CODE, ArgsConditions.gen_args),
    "any_arg": Kind(CHECK, ArgsConditions.check_any_arg),
}

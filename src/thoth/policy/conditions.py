"""Compile the condition language into closures.

A condition is a mapping of one or more condition kinds (several keys = all must hold), or a
list (all must hold). Each compiles to `f(ev) -> bool` where `ev` is an `Eval`. Compilation
collects every problem with its path instead of stopping at the first one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.loader import Marks, Path
from thoth.policy.markers import Marker, MarkerTable
from thoth.policy.values import (
    MAX_TEXT,
    MISSING,
    as_text,
    domains_of,
    glob_regex,
    in_domains,
    is_glob,
    name_matcher,
    same_value,
    to_number,
)

TIERS = ("low", "medium", "high", "critical")
CLASSIFICATIONS = ("read", "write", "delete", "execute", "external")


class Eval:
    """Per-call state shared by every condition of one evaluation."""

    __slots__ = ("c", "h", "args", "in_scope", "in_intent")
    c: CallContext
    h: SessionHistory
    args: dict[str, Any]
    in_scope: bool
    in_intent: bool

    def __init__(self, c: CallContext, h: SessionHistory, in_scope: bool, in_intent: bool,
                 args: dict[str, Any] | None = None) -> None:
        self.c = c
        self.h = h
        self.args = normalize_args(c.tool_args) if args is None else args
        self.in_scope = in_scope
        self.in_intent = in_intent


def normalize_args(args: Any) -> dict[str, Any]:
    """The arguments as a dict; for the wire's {"args": [...], "kwargs": {...}}, kwargs' names too."""
    if type(args) is not dict:
        return args if isinstance(args, dict) else {}
    if "kwargs" in args:
        kwargs = args["kwargs"]
        if isinstance(kwargs, dict):
            return {**kwargs, **args}
    return args


Cond = Callable[[Eval], bool]
Check = Callable[[CallContext, dict[str, Any], SessionHistory], bool]  # closures called from generated code
ArgsPred = Callable[[dict[str, Any]], bool]
ValuePred = Callable[[Any], bool]


def get_arg(args: dict[str, Any], parts: tuple[str, ...]) -> Any:
    """args["a"]["b"] for "a.b"; also looks inside the wire's {"args":[...], "kwargs":{...}} form."""
    value: Any = args
    for i, part in enumerate(parts):
        if isinstance(value, dict):
            if part in value:
                value = value[part]
                continue
            if i == 0 and isinstance(value.get("kwargs"), dict) and part in value["kwargs"]:
                value = value["kwargs"][part]
                continue
            return MISSING
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
            continue
        return MISSING
    return value


def arg_path(name: str) -> tuple[str, ...]:
    return tuple(name.split(".")) if name else ()


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
CONDITION_KINDS = ("all", "any", "not", "tool", "agent", "user", "tenant", "environment", "intent", "tier",
                   "classification", "args", "any_arg", "called", "history", "rate", "session_calls", "risk",
                   "time", "expr", "in_scope", "in_intent", "always")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Compiler:
    def __init__(self, marks: Marks, catalogue: dict[str, dict[str, str]], markers: MarkerTable) -> None:
        self.marks = marks
        self.catalogue = catalogue
        self.markers = markers
        self.issues: list[Any] = []
        self.consts: dict[str, Any] = {}

    def err(self, path: Path, message: str) -> None:
        self.issues.append(self.marks.issue(path, message))

    # -- conditions, compiled to Python source --------------------------------------------------
    # A condition compiles to a Python *expression* over the locals `ev` (Eval), `c` (CallContext),
    # `a` (the arguments dict), `h` (SessionHistory), `in_scope` and `in_intent`. Every value taken from the policy
    # document is bound to a generated name (`_k12`) in the namespace, never written into the
    # source, so no document text can become code. Kinds without an inline form are closures
    # called from the expression.
    def const(self, value: Any) -> str:
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def code(self, node: Any, path: Path) -> str | None:
        if isinstance(node, list):
            return self._g_all(node, path)
        if not isinstance(node, dict) or not node:
            self.err(path, "a condition must be a non-empty mapping (e.g. {tool: send_email}) or a list")
            return None
        parts: list[str] = []
        ok = True
        for key, value in node.items():
            sub = (*path, str(key))
            if key not in CONDITION_KINDS:
                self.err(sub, f"unknown condition {key!r}; expected one of: {', '.join(CONDITION_KINDS)}")
                ok = False
                continue
            gen = getattr(self, f"_g_{key}", None)
            if gen is not None:
                src = gen(value, sub)
            else:  # a closure: expressions take the whole Eval, the others (c, a, h)
                fn = getattr(self, f"_k_{key}")(value, sub)
                params = "(ev)" if key == "expr" else "(c, a, h)"
                src = None if fn is None else f"{self.const(fn)}{params}"
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

    def _g_all(self, items: Any, path: Path) -> str | None:
        return self._list(items, path, " and ")

    def _g_any(self, items: Any, path: Path) -> str | None:
        return self._list(items, path, " or ")

    def _g_not(self, node: Any, path: Path) -> str | None:
        inner = self.code(node, path)
        return None if inner is None else f"(not {inner})"

    def _g_always(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, bool):
            self.err(path, "always takes true or false")
            return None
        return "True" if value else "False"

    def names(self, value: Any, path: Path) -> list[str] | None:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) and v for v in items):
            self.err(path, "expected a name or a list of names (globs like 'db_*' allowed)")
            return None
        for i, v in enumerate(items):
            if is_glob(v):
                try:
                    glob_regex(v)
                except re.error as exc:
                    self.err((*path, i) if isinstance(value, list) else path, f"bad glob {v!r}: {exc}")
                    return None
        return list(items)

    def _field(self, attr: str, value: Any, path: Path) -> str | None:
        names = self.names(value, path)
        if names is None:
            return None
        if not any(is_glob(n) for n in names):
            return f"(c.{attr} in {self.const(frozenset(names))})"
        return f"(c.{attr} is not None and {self.const(name_matcher(names))}(c.{attr}))"

    def _g_tool(self, value: Any, path: Path) -> str | None:
        return self._field("tool_name", value, path)

    def _g_agent(self, value: Any, path: Path) -> str | None:
        return self._field("agent_id", value, path)

    def _g_user(self, value: Any, path: Path) -> str | None:
        return self._field("user_id", value, path)

    def _g_tenant(self, value: Any, path: Path) -> str | None:
        return self._field("tenant_id", value, path)

    def _g_environment(self, value: Any, path: Path) -> str | None:
        return self._field("environment", value, path)

    def _g_intent(self, value: Any, path: Path) -> str | None:
        return self._field("session_intent", value, path)

    def _catalogue_field(self, field_name: str, allowed: tuple[str, ...], value: Any, path: Path) -> str | None:
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in allowed]
        if not items or bad:
            self.err(path, f"expected one or more of {', '.join(allowed)}; got {bad or value!r}")
            return None
        wanted = set(items)
        tools = frozenset(name for name, meta in self.catalogue.items() if meta.get(field_name) in wanted)
        return f"(c.tool_name in {self.const(tools)})"

    def _g_tier(self, value: Any, path: Path) -> str | None:
        return self._catalogue_field("tier", TIERS, value, path)

    def _g_classification(self, value: Any, path: Path) -> str | None:
        return self._catalogue_field("classification", CLASSIFICATIONS, value, path)

    def _g_in_scope(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, bool):
            self.err(path, "in_scope takes true or false")
            return None
        return "in_scope" if value else "(not in_scope)"

    def _g_in_intent(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, bool):
            self.err(path, "in_intent takes true or false")
            return None
        return "in_intent" if value else "(not in_intent)"

    def _g_args(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, dict) or not value:
            self.err(path, "args takes a mapping of argument name -> test, e.g. {path: {prefix: /secrets/}}")
            return None
        parts: list[str] = []
        ok = True
        for name, spec in value.items():
            sub = (*path, str(name))
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

    def _g_called(self, value: Any, path: Path) -> str | None:
        marker = self.marker(value, None, path)
        return None if marker is None else f"({self.const(marker.key)} in h.markers)"

    def _g_session_calls(self, value: Any, path: Path) -> str | None:
        pred = self.numeric(value, path)
        if pred is None:
            return None
        return " and ".join(f"h.n {SYMBOLS[op]} {self.const(limit)}" for op, limit in value.items())

    def _g_risk(self, value: Any, path: Path) -> str | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = {"gte": value}
        pred = self.numeric(value, path)
        if pred is None:
            return None
        # The risk score comes from the server's analytics, never from the client: a float.
        tests = " and ".join(f"c.risk_score {SYMBOLS[op]} {self.const(limit)}" for op, limit in value.items())
        return f"(c.risk_score is not None and {tests})"

    def _k_any_arg(self, value: Any, path: Path) -> Check | None:
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

    # -- session history -----------------------------------------------------------------------
    def marker(self, tool: Any, args: Any, path: Path) -> Marker | None:
        names = self.names(tool, (*path, "tool"))
        if names is None:
            return None
        pred = None
        if args is not None:
            pred = self.args_block(args, (*path, "args"))
            if pred is None:
                return None
        exact = None if any(is_glob(n) for n in names) else frozenset(names)
        key = repr((sorted(names), _canonical(args)))
        return self.markers.add(Marker(key, exact, name_matcher(names), pred))

    def _k_history(self, value: Any, path: Path) -> Check | None:
        if not isinstance(value, dict) or "tool" not in value:
            self.err(path, "history takes {tool: NAME, args: {...}?, within_last: N?, at_least: K?}")
            return None
        extra = set(value) - {"tool", "args", "within_last", "at_least"}
        if extra:
            self.err(path, f"unknown history field(s) {sorted(extra)}")
            return None
        within = value.get("within_last")
        at_least = value.get("at_least", 1)
        for name, num in (("within_last", within), ("at_least", at_least)):
            if num is not None and (not isinstance(num, int) or isinstance(num, bool) or num < 1):
                self.err((*path, name), f"{name} takes a positive integer")
                return None
        marker = self.marker(value["tool"], value.get("args"), path)
        if marker is None:
            return None
        key = marker.key

        def cond(c: CallContext, a: dict[str, Any], h: SessionHistory) -> bool:
            entry = h.markers.get(key)
            if entry is None or entry[0] < at_least:
                return False
            return within is None or entry[1] >= h.n - within

        return cond

    def _k_rate(self, value: Any, path: Path) -> Check | None:
        if not isinstance(value, dict):
            self.err(path, "rate takes {tool: NAME?, more_than: N, seconds: T, args: {...}?}")
            return None
        extra = set(value) - {"tool", "args", "more_than", "seconds"}
        if extra:
            self.err(path, f"unknown rate field(s) {sorted(extra)}")
            return None
        more_than, seconds = value.get("more_than"), value.get("seconds")
        if not isinstance(more_than, int) or isinstance(more_than, bool) or more_than < 0:
            self.err((*path, "more_than"), "more_than takes a non-negative integer")
            return None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            self.err((*path, "seconds"), "seconds takes a positive number")
            return None
        marker = self.marker(value.get("tool", "*"), value.get("args"), path)
        if marker is None:
            return None
        key = marker.key
        window = float(seconds)

        def cond(c: CallContext, a: dict[str, Any], h: SessionHistory) -> bool:
            entry = h.markers.get(key)
            earlier = h.count_since(entry[2], c.now - window) if entry is not None else 0
            this = 1 if marker.matches(c.tool_name, a) else 0
            return earlier + this > more_than

        return cond

    def numeric(self, value: Any, path: Path) -> ValuePred | None:
        if not isinstance(value, dict) or not value or any(k not in NUMERIC_OPS for k in value):
            self.err(path, f"expected numeric tests like {{gt: 50}} ({', '.join(NUMERIC_OPS)})")
            return None
        return self.value_pred(value, path)

    def _k_time(self, value: Any, path: Path) -> Check | None:
        if not isinstance(value, dict) or not ({"between", "days"} & set(value)):
            self.err(path, "time takes {between: ['22:00', '06:00']?, days: [sat, sun]?, tz: 'UTC'?}")
            return None
        extra = set(value) - {"between", "days", "tz"}
        if extra:
            self.err(path, f"unknown time field(s) {sorted(extra)}")
            return None
        try:
            zone = ZoneInfo(str(value.get("tz", "UTC")))
        except (ZoneInfoNotFoundError, ValueError):
            self.err((*path, "tz"), f"unknown time zone {value.get('tz')!r}")
            return None
        span: tuple[int, int] | None = None
        if "between" in value:
            between = value["between"]
            start = _minutes(between[0]) if isinstance(between, list) and len(between) == 2 else None
            end = _minutes(between[1]) if isinstance(between, list) and len(between) == 2 else None
            if start is None or end is None:
                self.err((*path, "between"), "between takes two times of day, e.g. ['22:00', '06:00'] (quote them)")
                return None
            span = (start, end)
        days = None
        if "days" in value:
            items = value["days"] if isinstance(value["days"], list) else [value["days"]]
            lowered = [str(d).lower()[:3] for d in items]
            if not items or any(d not in DAYS for d in lowered):
                self.err((*path, "days"), f"days takes names from {', '.join(DAYS)}")
                return None
            days = frozenset(DAYS.index(d) for d in lowered)

        def cond(c: CallContext, a: dict[str, Any], h: SessionHistory) -> bool:
            moment = datetime.fromtimestamp(c.now, zone)
            if days is not None and moment.weekday() not in days:
                return False
            if span is None:
                return True
            minute = moment.hour * 60 + moment.minute
            start, end = span
            return start <= minute < end if start <= end else (minute >= start or minute < end)

        return cond

    def _k_expr(self, value: Any, path: Path) -> Cond | None:
        from thoth.policy.expr import ExprError, compile_expr

        if not isinstance(value, str) or not value.strip():
            self.err(path, "expr takes an expression string, e.g. \"args.amount > 1000 and risk >= 0.5\"")
            return None
        try:
            return compile_expr(value, self)
        except ExprError as exc:
            self.err(path, f"bad expression: {exc}")
            return None


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


def build_function(source: str, namespace: dict[str, Any], name: str) -> Any:
    """Compile generated source (identifiers and generated names only) in `namespace`."""
    scope = {**namespace, "MISS": MISSING, "get_arg": get_arg, "Eval": Eval, "__builtins__": {"bool": bool, "type": type,
             "str": str, "int": int, "len": len, "Exception": Exception}}
    exec(compile(source, "<thoth-policy>", "exec"), scope)  # noqa: S102 - no document text in `source`
    return scope[name]

def _minutes(value: Any) -> int | None:
    """'22:30' -> 1350. YAML 1.1 reads an unquoted 22:30 as the base-60 integer 1350 (= minutes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= 24 * 60 else None
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if m and int(m[1]) <= 24 and int(m[2]) < 60:
            return min(int(m[1]) * 60 + int(m[2]), 24 * 60)
    return None


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((str(k), _canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return repr(value)


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
                sub = frozenset(items)
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

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

    def __init__(self, c: CallContext, h: SessionHistory, in_scope: bool, in_intent: bool) -> None:
        self.c = c
        self.h = h
        self.args = c.tool_args if isinstance(c.tool_args, dict) else {}
        self.in_scope = in_scope
        self.in_intent = in_intent


Cond = Callable[[Eval], bool]
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

    def err(self, path: Path, message: str) -> None:
        self.issues.append(self.marks.issue(path, message))

    # -- conditions ----------------------------------------------------------------------------
    def condition(self, node: Any, path: Path) -> Cond | None:
        if isinstance(node, list):
            return self._all(node, path)
        if not isinstance(node, dict) or not node:
            self.err(path, "a condition must be a non-empty mapping (e.g. {tool: send_email}) or a list")
            return None
        parts: list[Cond] = []
        for key, value in node.items():
            sub = (*path, str(key))
            handler = getattr(self, f"_k_{key}", None) if key in CONDITION_KINDS else None
            if handler is None:
                self.err(sub, f"unknown condition {key!r}; expected one of: {', '.join(CONDITION_KINDS)}")
                continue
            compiled = handler(value, sub)
            if compiled is not None:
                parts.append(compiled)
        if len(parts) != len(node):
            return None
        return parts[0] if len(parts) == 1 else _and(parts)

    def _all(self, items: Any, path: Path) -> Cond | None:
        if not isinstance(items, list) or not items:
            self.err(path, "expected a non-empty list of conditions")
            return None
        parts = [self.condition(item, (*path, i)) for i, item in enumerate(items)]
        if any(p is None for p in parts):
            return None
        return _and([p for p in parts if p is not None])

    _k_all = _all

    def _k_any(self, items: Any, path: Path) -> Cond | None:
        if not isinstance(items, list) or not items:
            self.err(path, "expected a non-empty list of conditions")
            return None
        parts = [self.condition(item, (*path, i)) for i, item in enumerate(items)]
        if any(p is None for p in parts):
            return None
        conds = tuple(p for p in parts if p is not None)
        return lambda ev: any(f(ev) for f in conds)

    def _k_not(self, node: Any, path: Path) -> Cond | None:
        inner = self.condition(node, path)
        if inner is None:
            return None
        return lambda ev: not inner(ev)

    def _k_always(self, value: Any, path: Path) -> Cond | None:
        if not isinstance(value, bool):
            self.err(path, "always takes true or false")
            return None
        return (lambda ev: True) if value else (lambda ev: False)

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

    def _field(self, getter: Callable[[CallContext], Any], value: Any, path: Path) -> Cond | None:
        names = self.names(value, path)
        if names is None:
            return None
        match = name_matcher(names)
        return lambda ev: (v := getter(ev.c)) is not None and match(v)

    def _k_tool(self, value: Any, path: Path) -> Cond | None:
        names = self.names(value, path)
        if names is None:
            return None
        match = name_matcher(names)
        return lambda ev: match(ev.c.tool_name)

    def _k_agent(self, value: Any, path: Path) -> Cond | None:
        return self._field(lambda c: c.agent_id, value, path)

    def _k_user(self, value: Any, path: Path) -> Cond | None:
        return self._field(lambda c: c.user_id, value, path)

    def _k_tenant(self, value: Any, path: Path) -> Cond | None:
        return self._field(lambda c: c.tenant_id, value, path)

    def _k_environment(self, value: Any, path: Path) -> Cond | None:
        return self._field(lambda c: c.environment, value, path)

    def _k_intent(self, value: Any, path: Path) -> Cond | None:
        return self._field(lambda c: c.session_intent, value, path)

    def _catalogue_field(self, field_name: str, allowed: tuple[str, ...], value: Any, path: Path) -> Cond | None:
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in allowed]
        if not items or bad:
            self.err(path, f"expected one or more of {', '.join(allowed)}; got {bad or value!r}")
            return None
        wanted = set(items)
        tools = frozenset(name for name, meta in self.catalogue.items() if meta.get(field_name) in wanted)
        return lambda ev: ev.c.tool_name in tools

    def _k_tier(self, value: Any, path: Path) -> Cond | None:
        return self._catalogue_field("tier", TIERS, value, path)

    def _k_classification(self, value: Any, path: Path) -> Cond | None:
        return self._catalogue_field("classification", CLASSIFICATIONS, value, path)

    def _k_in_scope(self, value: Any, path: Path) -> Cond | None:
        if not isinstance(value, bool):
            self.err(path, "in_scope takes true or false")
            return None
        return (lambda ev: ev.in_scope) if value else (lambda ev: not ev.in_scope)

    def _k_in_intent(self, value: Any, path: Path) -> Cond | None:
        if not isinstance(value, bool):
            self.err(path, "in_intent takes true or false")
            return None
        return (lambda ev: ev.in_intent) if value else (lambda ev: not ev.in_intent)

    def _k_args(self, value: Any, path: Path) -> Cond | None:
        pred = self.args_block(value, path)
        if pred is None:
            return None
        return lambda ev: pred(ev.args)

    def _k_any_arg(self, value: Any, path: Path) -> Cond | None:
        pred = self.value_pred(value, path)
        if pred is None:
            return None
        return lambda ev: any(pred(leaf) for leaf in _leaves(ev.args, 0))

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

    def _k_called(self, value: Any, path: Path) -> Cond | None:
        marker = self.marker(value, None, path)
        if marker is None:
            return None
        key = marker.key
        return lambda ev: key in ev.h.markers

    def _k_history(self, value: Any, path: Path) -> Cond | None:
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

        def cond(ev: Eval) -> bool:
            entry = ev.h.markers.get(key)
            if entry is None or entry[0] < at_least:
                return False
            return within is None or entry[1] >= ev.h.n - within

        return cond

    def _k_rate(self, value: Any, path: Path) -> Cond | None:
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

        def cond(ev: Eval) -> bool:
            entry = ev.h.markers.get(key)
            earlier = ev.h.count_since(entry[2], ev.c.now - window) if entry is not None else 0
            this = 1 if marker.matches(ev.c.tool_name, ev.args) else 0
            return earlier + this > more_than

        return cond

    def _k_session_calls(self, value: Any, path: Path) -> Cond | None:
        pred = self.numeric(value, path)
        if pred is None:
            return None
        return lambda ev: pred(ev.h.n)

    def _k_risk(self, value: Any, path: Path) -> Cond | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = {"gte": value}
        pred = self.numeric(value, path)
        if pred is None:
            return None
        return lambda ev: ev.c.risk_score is not None and pred(ev.c.risk_score)

    def numeric(self, value: Any, path: Path) -> ValuePred | None:
        if not isinstance(value, dict) or not value or any(k not in NUMERIC_OPS for k in value):
            self.err(path, f"expected numeric tests like {{gt: 50}} ({', '.join(NUMERIC_OPS)})")
            return None
        return self.value_pred(value, path)

    def _k_time(self, value: Any, path: Path) -> Cond | None:
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

        def cond(ev: Eval) -> bool:
            moment = datetime.fromtimestamp(ev.c.now, zone)
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


def _and(parts: list[Cond]) -> Cond:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda ev: a(ev) and b(ev)
    conds = tuple(parts)
    return lambda ev: all(f(ev) for f in conds)


def _leaves(value: Any, depth: int) -> Any:
    if isinstance(value, dict):
        if depth < 6:
            for v in value.values():
                yield from _leaves(v, depth + 1)
    elif isinstance(value, list):
        if depth < 6:
            for v in value[:1000]:
                yield from _leaves(v, depth + 1)
    else:
        yield value


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


def tool_constraint(node: Any, kind: str = "tool") -> frozenset[str] | None:
    """Exact tool names (or agent ids, kind="agent") a condition can only match, for the
    per-tool and per-agent rule indexes; None when it is not restricted that way."""
    if isinstance(node, list):
        node = {"all": node}
    if not isinstance(node, dict):
        return None
    found: frozenset[str] | None = None
    for key, value in node.items():
        sub: frozenset[str] | None = None
        if key == kind:
            items = value if isinstance(value, list) else [value]
            if items and all(isinstance(v, str) and not is_glob(v) for v in items):
                sub = frozenset(items)
        elif key == "all" and isinstance(value, list):
            for item in value:
                c = tool_constraint(item, kind)
                if c is not None:
                    sub = c if sub is None else sub & c
        elif key == "any" and isinstance(value, list) and value:
            subs = [tool_constraint(item, kind) for item in value]
            if all(s is not None for s in subs):
                sub = frozenset().union(*[s for s in subs if s is not None])
        if sub is not None:
            found = sub if found is None else found & sub
    return found

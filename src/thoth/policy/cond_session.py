"""Condition kinds about the session: what was called before (called, history), how often
(rate), how many calls (session_calls), and the analytics' risk score."""

from __future__ import annotations

from typing import Any

from thoth.policy.cond_args import SYMBOLS, ArgsConditions
from thoth.policy.cond_base import CHECK, CODE, Check, Kind
from thoth.policy.cond_call import CallConditions
from thoth.policy.context import CallContext, SessionHistory
from thoth.policy.loader import Path
from thoth.policy.markers import Marker
from thoth.policy.values import is_glob, name_matcher


class SessionConditions(CallConditions, ArgsConditions):
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

    def gen_called(self, value: Any, path: Path) -> str | None:
        marker = self.marker(value, None, path)
        return None if marker is None else f"({self.const(marker.key)} in h.markers)"

    def check_history(self, value: Any, path: Path) -> Check | None:
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

    def check_rate(self, value: Any, path: Path) -> Check | None:
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

    def gen_session_calls(self, value: Any, path: Path) -> str | None:
        pred = self.numeric(value, path)
        if pred is None:
            return None
        return " and ".join(f"h.n {SYMBOLS[op]} {self.const(limit)}" for op, limit in value.items())

    def gen_risk(self, value: Any, path: Path) -> str | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = {"gte": value}
        pred = self.numeric(value, path)
        if pred is None:
            return None
        # The risk score comes from the server's analytics, never from the client: a float.
        tests = " and ".join(f"c.risk_score {SYMBOLS[op]} {self.const(limit)}" for op, limit in value.items())
        return f"(c.risk_score is not None and {tests})"


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((str(k), _canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return repr(value)


KINDS = {
    "called": Kind(CODE, SessionConditions.gen_called),
    "history": Kind(CHECK, SessionConditions.check_history),
    "rate": Kind(CHECK, SessionConditions.check_rate),
    "session_calls": Kind(CODE, SessionConditions.gen_session_calls),
    "risk": Kind(CODE, SessionConditions.gen_risk),
}

"""History predicates of a policy ("markers"), tracked incrementally by SessionHistory.

A marker is "a call of a tool matching T (and whose arguments satisfy P)". When a call is
recorded, only the markers that can match its tool are tested, so recording stays O(1) in the
length of the session and conditions read counters instead of scanning history.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable
from typing import Any

ArgsPredicate = Callable[[dict[str, Any]], bool]
NameMatcher = Callable[[str], bool]


class Marker:
    __slots__ = ("key", "exact", "matcher", "args_pred")

    def __init__(self, key: str, exact: frozenset[str] | None, matcher: NameMatcher,
                 args_pred: ArgsPredicate | None) -> None:
        self.key = key
        self.exact = exact  # the tool names, when the pattern has no wildcards
        self.matcher = matcher
        self.args_pred = args_pred

    def matches(self, tool_name: str, args: dict[str, Any]) -> bool:
        if not self.matcher(tool_name):
            return False
        try:
            return self.args_pred is None or bool(self.args_pred(args))
        except Exception:
            # A value the predicate cannot judge (NaN, inf): count the call as matching, since
            # history predicates mostly guard restrictive rules ("after reading a secret").
            return True


class MarkerTable:
    CACHE_LIMIT = 4096

    def __init__(self) -> None:
        self.by_key: dict[str, Marker] = {}
        self._by_exact: dict[str, list[Marker]] = {}
        self._wild: list[Marker] = []
        self._cache: dict[str, tuple[Marker, ...]] = {}

    def add(self, marker: Marker) -> Marker:
        existing = self.by_key.get(marker.key)
        if existing is not None:
            return existing
        self.by_key[marker.key] = marker
        if marker.exact is not None:
            for name in marker.exact:
                self._by_exact.setdefault(name, []).append(marker)
        else:
            self._wild.append(marker)
        self._cache.clear()
        return marker

    def for_tool(self, tool_name: str) -> tuple[Marker, ...]:
        found = self._cache.get(tool_name)
        if found is None:
            found = tuple(self._by_exact.get(tool_name, ())) + tuple(m for m in self._wild if m.matcher(tool_name))
            if len(self._cache) >= self.CACHE_LIMIT:  # tool names come from clients: stay bounded
                self._cache.clear()
            self._cache[tool_name] = found
        return found

    def update(self, state: dict[str, list[Any]], tool_name: str, args: dict[str, Any], index: int,
               ts: float | None) -> None:
        for marker in self.for_tool(tool_name):
            if marker.args_pred is not None and not marker.matches(tool_name, args):
                continue
            entry = state.get(marker.key)
            if entry is None:
                entry = state[marker.key] = [0, -1, []]
            entry[0] += 1
            entry[1] = index
            if ts is not None:
                times = entry[2]
                if not times or ts >= times[-1]:
                    times.append(ts)
                else:
                    insort(times, ts)

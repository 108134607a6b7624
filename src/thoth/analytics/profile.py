"""Per-agent baseline: bounded counters updated in O(1) per observed call.

Everything here is additive (counts, sums), so two copies of an agent's profile learnt by
two server processes can be merged exactly (see `merge_from`), and the whole profile is a
small JSON-able dict.
"""

from __future__ import annotations

import math
from typing import Any

OTHER = "\u2026other"  # the bucket for values past a tally's cap
HALVE_AT = 20_000  # counts are halved past this many calls: old behaviour fades slowly
MAX_SESSION_GAP = 1800.0  # seconds; a longer pause is a new burst, not a rate sample


class Tally:
    """Counts of distinct values, capped; tracks singletons for Good-Turing novelty."""

    __slots__ = ("cap", "counts", "singletons", "total")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}
        self.total = 0
        self.singletons = 0

    def key(self, value: str) -> str:
        """The key a value is counted under (the overflow bucket once the cap is reached)."""
        if value in self.counts or len(self.counts) < self.cap:
            return value
        return OTHER

    def add(self, value: str, n: int = 1) -> str:
        counts = self.counts
        c = counts.get(value)  # the common case, a known value: one lookup, no call of key()
        if c is None:
            k = self.key(value)
            c = counts.get(k, 0)
        else:
            k = value
        counts[k] = c + n
        self.total += n
        if c == 0 and n == 1:
            self.singletons += 1
        elif c == 1:
            self.singletons -= 1
        return k

    def count(self, value: str) -> int:
        return self.counts.get(value, 0)

    def p_new(self) -> float:
        """Good-Turing estimate of the chance that the next value was never seen before."""
        return (self.singletons + 1.0) / (self.total + 2.0)

    def halve(self) -> None:
        self.counts = {k: c // 2 for k, c in self.counts.items() if c >= 2}
        self._recount()

    def _recount(self) -> None:
        self.total = sum(self.counts.values())
        self.singletons = sum(1 for c in self.counts.values() if c == 1)

    def merge_from(self, other: Tally) -> None:
        for k, c in other.counts.items():
            kk = self.key(k)
            self.counts[kk] = self.counts.get(kk, 0) + c
        self._recount()

    def to_dict(self) -> dict[str, Any]:
        return {"cap": self.cap, "counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, Any], cap: int) -> Tally:
        t = cls(int(d.get("cap", cap)))
        t.counts = {str(k): int(v) for k, v in d.get("counts", {}).items()}
        t._recount()
        return t


class Moments:
    """Count, sum and sum of squares: mean and spread of a quantity, mergeable."""

    __slots__ = ("n", "s", "ss")

    def __init__(self, n: float = 0.0, s: float = 0.0, ss: float = 0.0) -> None:
        self.n, self.s, self.ss = n, s, ss

    def add(self, x: float) -> None:
        self.n += 1
        self.s += x
        self.ss += x * x

    @property
    def mean(self) -> float:
        return self.s / self.n if self.n else 0.0

    @property
    def std(self) -> float:
        if self.n < 2:
            return 0.0
        var = (self.ss - self.s * self.s / self.n) / (self.n - 1)
        return math.sqrt(var) if var > 0 else 0.0

    def halve(self) -> None:
        self.n, self.s, self.ss = self.n / 2, self.s / 2, self.ss / 2

    def merge_from(self, o: Moments) -> None:
        self.n += o.n
        self.s += o.s
        self.ss += o.ss

    def to_list(self) -> list[float]:
        return [self.n, self.s, self.ss]


# Caps on distinct values per agent: memory stays bounded whatever the agent does.
CAPS = {"tools": 128, "transitions": 512, "destinations": 512, "recipients": 512, "paths": 256,
        "decisions": 8}
TALLIES = tuple(CAPS)


class AgentProfile:
    """What an agent usually does, learnt from its own observed calls."""

    __slots__ = ("calls", "decisions", "destinations", "egress", "egress_after_secret", "first_ts",
                 "gaps", "hours", "last_ts", "off_plan", "paths", "prov_calls", "recipients", "secret", "sizes",
                 "tools", "transitions", "untrusted")

    def __init__(self) -> None:
        self.calls = 0
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.tools = Tally(CAPS["tools"])
        self.transitions = Tally(CAPS["transitions"])  # "prev>tool"; "^>tool" opens a session
        self.destinations = Tally(CAPS["destinations"])
        self.recipients = Tally(CAPS["recipients"])
        self.paths = Tally(CAPS["paths"])
        self.decisions = Tally(CAPS["decisions"])
        self.hours = [0] * 24  # UTC hour of day
        self.sizes: dict[str, Moments] = {}  # per tool: log2 of argument size
        self.gaps = Moments()  # log of seconds between calls of one session
        self.secret = 0  # calls that touched a secret marker
        self.egress = 0  # calls that send data out
        self.egress_after_secret = 0  # ... in a session that touched a secret before
        # Calls that reported provenance (our SDK), and of them: with a value seen only in
        # untrusted output, and outside the task's plan (analytics/provenance.py).
        self.prov_calls = 0
        self.untrusted = 0
        self.off_plan = 0

    def halve(self) -> None:
        for name in TALLIES:
            getattr(self, name).halve()
        self.hours = [h // 2 for h in self.hours]
        for m in self.sizes.values():
            m.halve()
        self.gaps.halve()
        self.calls //= 2
        self.secret //= 2
        self.egress //= 2
        self.egress_after_secret //= 2
        self.prov_calls //= 2
        self.untrusted //= 2
        self.off_plan //= 2

    def merge_from(self, o: AgentProfile) -> None:
        """Add another copy's counts (learnt elsewhere from different calls) to this one."""
        for name in TALLIES:
            getattr(self, name).merge_from(getattr(o, name))
        self.hours = [a + b for a, b in zip(self.hours, o.hours, strict=True)]
        for tool, m in o.sizes.items():
            if tool in self.sizes:
                self.sizes[tool].merge_from(m)
            elif len(self.sizes) < CAPS["tools"]:
                self.sizes[tool] = Moments(*m.to_list())
        self.gaps.merge_from(o.gaps)
        if o.calls:
            self.first_ts = min(self.first_ts, o.first_ts) if self.calls else o.first_ts
            self.last_ts = max(self.last_ts, o.last_ts)
        self.calls += o.calls
        self.secret += o.secret
        self.egress += o.egress
        self.egress_after_secret += o.egress_after_secret
        self.prov_calls += o.prov_calls
        self.untrusted += o.untrusted
        self.off_plan += o.off_plan

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {name: getattr(self, name).to_dict() for name in TALLIES}
        d.update(calls=self.calls, first_ts=self.first_ts, last_ts=self.last_ts, hours=self.hours,
                 sizes={k: m.to_list() for k, m in self.sizes.items()}, gaps=self.gaps.to_list(),
                 secret=self.secret, egress=self.egress, egress_after_secret=self.egress_after_secret,
                 prov_calls=self.prov_calls, untrusted=self.untrusted, off_plan=self.off_plan)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentProfile:
        p = cls()
        for name in TALLIES:
            setattr(p, name, Tally.from_dict(d.get(name, {}), CAPS[name]))
        p.calls = int(d.get("calls", 0))
        p.first_ts = float(d.get("first_ts", 0.0))
        p.last_ts = float(d.get("last_ts", 0.0))
        hours = [int(h) for h in d.get("hours", [])]
        p.hours = hours if len(hours) == 24 else [0] * 24
        p.sizes = {str(k): Moments(*map(float, v)) for k, v in d.get("sizes", {}).items()}
        p.gaps = Moments(*map(float, d.get("gaps", [0, 0, 0])))
        p.secret = int(d.get("secret", 0))
        p.egress = int(d.get("egress", 0))
        p.egress_after_secret = int(d.get("egress_after_secret", 0))
        p.prov_calls = int(d.get("prov_calls", 0))
        p.untrusted = int(d.get("untrusted", 0))
        p.off_plan = int(d.get("off_plan", 0))
        return p

"""Per-call anomaly score: independent, explainable factors combined by noisy-OR.

Each factor is a contribution in [0, 1] with the sentence that explains it. Rarity is judged
against the agent's own history: "never seen" is surprising only if the agent rarely meets
new values (Good-Turing: the share of values seen once), so a support bot that writes to a
new customer's domain every day is not flagged for it, and a back-office agent that has sent
to the same two domains a thousand times is.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from thoth.analytics.features import CallFeatures
from thoth.analytics.profile import MAX_SESSION_GAP, AgentProfile, Tally
from thoth.analytics.provenance import ProvenanceSignals, untrusted_recipients
from thoth.analytics.session import SessionState

COLD_CALLS = 20  # below this many observed calls an agent is in cold start
RATE_MIN_GAPS = 20  # baseline gaps needed before "Nx the usual rate" is judged
HOUR_MIN_CALLS = 100


# Factor and AnomalyScore are not frozen: a frozen dataclass's __init__ costs ~0.7 us more, and
# a call builds one score and a factor or two. Treat them as read-only all the same.
@dataclass(slots=True)
class Factor:
    code: str  # stable identifier, e.g. "new_tool"
    contribution: float  # in [0, 1]
    text: str  # the human-readable reason

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "contribution": round(self.contribution, 4), "text": self.text}


@dataclass(slots=True)
class AnomalyScore:
    """The anomaly of one call: `score` in [0, 1] and the reasons, strongest first."""

    score: float
    reasons: tuple[str, ...] = ()
    factors: tuple[Factor, ...] = ()
    cold_start: bool = False
    features: CallFeatures | None = field(default=None, compare=False, repr=False)
    # The call's provenance signals, kept for observe() to learn what the agent's calls carry.
    provenance: ProvenanceSignals | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        return {"score": round(self.score, 4), "reasons": list(self.reasons),
                "factors": [f.to_dict() for f in self.factors], "cold_start": self.cold_start}


def surprise(p: float) -> float:
    """0 for an event at least 1-in-10 likely, rising to 1 at about 1-in-300."""
    if p <= 0.0:
        return 1.0
    return min(1.0, max(0.0, (-math.log10(p) - 1.0) / 1.5))


def _new_value(tally: Tally) -> float:
    return surprise(tally.p_new())


def _log_gap(gap: float) -> float:
    return math.log(max(gap, 0.01))


def factors(
    prof: AgentProfile,
    sess: SessionState | None,
    f: CallFeatures,
    ts: float,
    population: Tally,
    provenance: ProvenanceSignals | None = None,
) -> tuple[list[Factor], bool]:
    """The factors raised by this call; also whether the agent is in cold start.

    On the decision path: the common case (a usual call raises nothing) skips the logarithms,
    as surprise() is 0 for anything at least 1-in-10 likely."""
    out: list[Factor] = []
    add = out.append
    n = prof.calls
    cold = n < COLD_CALLS
    # In cold start the agent's own novelty signals fade in with its history; the tenant's
    # other agents stand in for it on tool novelty.
    conf = 1.0 if not cold else n / COLD_CALLS

    tool = f.tool
    tools = prof.tools
    tc = tools.counts.get(tool, 0)
    if tc == 0:
        c = 0.85 * _new_value(tools) * conf
        if c > 0.0:
            add(Factor("new_tool", c, f"first call of {tool} by this agent"))
        if cold and population.total >= COLD_CALLS and population.count(tool) == 0:
            add(Factor("new_tool_tenant", 0.5 * _new_value(population),
                       f"{tool} was never called by any agent of this tenant"))
    else:
        p = tc / (tools.total + 1.0)
        if p <= 0.1:
            c = 0.35 * surprise(p)
            if c > 0.0:
                add(Factor("rare_tool", c, f"{tool} is rare for this agent ({tc} of {tools.total} calls)"))
        if sess is not None:
            prev = sess.last_tool or "^"
            transitions = prof.transitions.counts
            if not transitions.get(prev + ">" + tool):
                prev_n = tools.counts.get(prev, 0) if prev != "^" else transitions.get("^>" + tool, 0) + 5
                if prev_n >= 5:
                    c = 0.35 * surprise(0.5 / (prev_n + 1.0))
                    if c > 0.0:
                        add(Factor("new_sequence", c, f"{tool} never followed {prev} before"))

    if f.destinations:
        seen = prof.destinations.counts
        new = [d for d in f.destinations if not seen.get(d)]
        if new:
            w = 0.8 if f.egress else 0.55
            c = w * _new_value(prof.destinations) * conf
            if c > 0.0:
                add(Factor("new_destination", c, f"destination {new[0]} never seen for this agent"))
    if f.recipients:
        seen = prof.recipients.counts
        new = [r for r in f.recipients if not seen.get(r)]
        if new:
            c = 0.5 * _new_value(prof.recipients) * conf
            if c > 0.0:
                add(Factor("new_recipient", c, f"recipient {new[0]} never seen for this agent"))
    if f.paths:
        seen = prof.paths.counts
        new = [p for p in f.paths if not seen.get(p)]
        if new:
            c = 0.5 * _new_value(prof.paths) * conf
            if c > 0.0:
                add(Factor("new_path", c, f"path prefix {new[0]} never used by this agent"))

    m = prof.sizes.get(tool)
    if m is not None and m.n >= 8:
        x = math.log2(f.size + 1.0)
        # z > 3 needs x above the mean by more than 3 * 0.5 (the floor of the spread).
        if x - m.s / m.n > 1.5:
            z = (x - m.mean) / max(m.std, 0.5)
            if z > 3.0:
                ratio = 2.0 ** (x - m.mean)
                add(Factor("large_arguments", min(0.6, 0.15 * (z - 2.0)),
                           f"arguments {ratio:.0f}x the usual size for {tool}"))

    if f.sensitive is not None:
        c = 0.75 * surprise((prof.secret + 0.5) / (n + 1.0)) * conf
        if cold:
            c = max(c, 0.3)
        if c > 0.0:
            add(Factor("secret_access", c, f"touches a secret ({f.sensitive})"))

    if sess is not None:
        if f.egress and sess.secret is not None:
            share = prof.egress_after_secret / (prof.egress + 3.0)
            c = 0.8 * (1.0 - min(1.0, share))
            add(Factor("egress_after_secret", c, f"{tool} sends data out after this session read a secret ({sess.secret})"))
        if sess.flagged:
            add(Factor("flagged_session", min(0.5, 0.2 * sess.flagged),
                       f"{sess.flagged} earlier call(s) of this session were blocked or held"))
        if len(sess.recent) >= 5:
            rate = _rate_factor(prof, sess, ts)
            if rate is not None:
                add(rate)

    if n >= HOUR_MIN_CALLS:
        h = int(ts // 3600) % 24
        hc = prof.hours[h]
        # Scaled so that an hour as busy as the average hour (1 in 24) is no surprise.
        p = 2.4 * (hc + 0.5) / (n + 1.0)
        if p <= 0.1:
            c = 0.3 * surprise(p)
            if c > 0.0:
                what = "first call" if hc == 0 else f"{hc} of {n} calls"
                add(Factor("unusual_hour", c, f"unusual hour for this agent: {h:02d}h UTC ({what})"))
    if provenance is not None:
        _provenance_factors(prof, f, provenance, add)
    return out, cold


def _provenance_factors(prof: AgentProfile, f: CallFeatures, signals: ProvenanceSignals, add: Any) -> None:
    """Where the call's data came from (our SDK's calls only). The first two fade for an agent
    whose usual, allowed calls carry such data (its job may be to act on what it reads); the
    third does not: a recipient this agent never wrote to, named only by content it read, is the
    shape of an injected exfiltration."""
    # Faded by the share of the agent's calls with the signal, gone at one half (reads and writes
    # are counted together, so an agent whose every write carries page data has about that).
    usual = (prof.prov_calls + 3.0) / 2.0
    if signals.untrusted and signals.first_untrusted:
        c = (0.55 if f.egress else 0.35) * (1.0 - min(1.0, prof.untrusted / usual))
        if c > 0.0:
            add(Factor("untrusted_value", c, signals.first_untrusted))
    if signals.off_plan:
        c = (0.6 if f.egress else 0.4) * (1.0 - min(1.0, prof.off_plan / usual))
        if c > 0.0:
            add(Factor("off_plan", c, signals.off_plan))
    for r in untrusted_recipients(signals, f.recipients):
        if not prof.recipients.count(r):
            add(Factor("untrusted_new_recipient", 0.75,
                       f"first use of recipient {r[:80]}, named only by untrusted tool output"))
            break


def _rate_factor(prof: AgentProfile, sess: SessionState, ts: float) -> Factor | None:
    recent = sess.recent
    if len(recent) < 5:
        return None
    span = ts - recent[0]
    gaps = len(recent)  # the gaps from recent[0] up to this call
    if span < 0:
        return None
    if prof.gaps.n >= RATE_MIN_GAPS:
        # The burst must still be going on: a call after a usual pause is not part of it
        # (checked first: it is the cheap test and ends most calls).
        if _log_gap(ts - recent[-1]) > prof.gaps.mean - 0.7:
            return None
        ratio = math.exp(prof.gaps.mean - _mean_log_gap(recent, ts))
        if ratio >= 3.0:
            c = min(0.8, 0.3 * math.log2(ratio / 2.0))
            return Factor("rate_burst", c, f"{ratio:.0f}x the usual call rate ({gaps + 1} calls in {span:.0f}s)")
        return None
    if span < 0.5 * gaps:
        return Factor("rate_burst", 0.3, f"{gaps + 1} calls in {span:.1f}s")
    return None


def _mean_log_gap(recent: deque[float], ts: float) -> float:
    """Mean of the log gaps between the session's recent calls and this one."""
    total = 0.0
    prev = recent[0]
    for t in itertools.islice(recent, 1, None):
        total += _log_gap(t - prev)
        prev = t
    return (total + _log_gap(ts - prev)) / len(recent)


def combine(found: list[Factor], cold: bool, features: CallFeatures | None) -> AnomalyScore:
    if not found:  # the usual call
        return AnomalyScore(0.0, (), (), cold, features)
    found.sort(key=lambda x: x.contribution, reverse=True)
    keep = 1.0
    for x in found:
        keep *= 1.0 - min(1.0, max(0.0, x.contribution))
    return AnomalyScore(
        score=1.0 - keep,
        reasons=tuple(x.text for x in found if x.contribution >= 0.05),
        factors=tuple(found),
        cold_start=cold,
        features=features,
    )


__all__ = ["MAX_SESSION_GAP", "AnomalyScore", "Factor", "combine", "factors", "surprise"]

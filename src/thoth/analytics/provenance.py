"""Provenance and plan signals of one call for the risk score (issue 16): a value seen only in
untrusted tool output, a tool outside the task's plan, and the first use of a recipient that only
untrusted output named.

The signals come from the same computation as the policy's provenance conditions
(thoth.policy.provenance, with the tenant policy's trust labels), made once per call: the server
builds them before scoring and the policy then reuses the call's cached provenance. A call
without `task`/`arg_sources` (published clients) has no signals and scores exactly as before.

    signals = provenance_signals(call, policy.trusted)      # None for a published client
    anomaly = engine.score(agent, tool, args, ts, session_id=sid, provenance=signals)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thoth.policy.cond_base import normalize_args
from thoth.policy.provenance import UNTRUSTED, provenance_of
from thoth.policy.task_plan import plan_verdict

MAX_VALUES = 8  # untrusted values kept per call (the first, for the reason; the rest for recipients)


@dataclass(slots=True)
class ProvenanceSignals:
    untrusted: list[tuple[str, str]]  # (argument path, value lower-cased) seen only in untrusted output
    first_untrusted: str | None  # the sentence for the first of them
    off_plan: str | None  # why the task's plan does not allow the call; None when it does / no plan


def provenance_signals(call: Any, trusted: frozenset[str]) -> ProvenanceSignals | None:
    if call.arg_sources is None and call.task is None:
        return None
    prov = provenance_of(call, trusted, normalize_args(call.tool_args))
    untrusted: list[tuple[str, str]] = []
    first = None
    if prov is not None:
        for part in prov.all_parts():
            if part.state == UNTRUSTED:
                if first is None:
                    first = part.sentence(trusted)
                untrusted.append((part.path, str(part.value)[:2048].lower()))
                if len(untrusted) >= MAX_VALUES:
                    break
    off_plan = None
    if call.task is not None:
        verdict, why = plan_verdict(call.task, call.tool_name, prov.args if prov else normalize_args(call.tool_args),
                                    prov)
        if verdict is False:
            off_plan = why
    return ProvenanceSignals(untrusted, first, off_plan)


def untrusted_recipients(signals: ProvenanceSignals, recipients: tuple[str, ...]) -> list[str]:
    """The call's recipients (features.recipients, lower case) that appear in a value seen only in
    untrusted output: named by a page, a mail, a file, not by the user."""
    if not signals.untrusted or not recipients:
        return []
    return [r for r in recipients if any(r in value for _, value in signals.untrusted)]

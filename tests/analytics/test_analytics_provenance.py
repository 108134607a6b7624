"""Provenance and plan signals in the risk score (thoth.analytics.provenance): a value seen only in
untrusted output, a tool outside the task's plan, the first use of a recipient only untrusted
output named; published clients' calls score exactly as before. (Over HTTP, in the server's
model_signals: tests/server/test_provenance_enforce.py.)"""

from __future__ import annotations

from typing import Any

from thoth.analytics import AnalyticsEngine
from thoth.analytics.profile import AgentProfile
from thoth.analytics.provenance import provenance_signals
from thoth.policy import CallContext

TRUSTED = frozenset({"get_contacts"})
PLAN = {"id": "t", "plan": {"tools": ["read_inbox", "send_email"], "source": "tasks:reply"}}
T0 = 1_767_225_600.0


def signals(tool: str, args: dict[str, Any], sources: dict[str, Any] | None, task: Any = PLAN) -> Any:
    return provenance_signals(CallContext(tool_name=tool, tool_args=args, arg_sources=sources, task=task), TRUSTED)


def trained(untrusted_share: float = 0.0) -> AnalyticsEngine:
    """An agent that replied to colleagues 200 times (its values from the task, or, for a share of
    its calls, from a page it read), every call allowed."""
    engine = AnalyticsEngine()
    for i in range(200):
        ts = T0 + i * 30
        sid = f"s{i // 4}"
        to = f"colleague{i % 6}@corp.example"
        from_page = i < 200 * untrusted_share
        engine.observe("mailer", "read_inbox", {"folder": "inbox"}, ts, "ALLOW", session_id=sid,
                       anomaly=engine.score("mailer", "read_inbox", {"folder": "inbox"}, ts, session_id=sid,
                                            provenance=signals("read_inbox", {"folder": "inbox"}, {"folder": ["task"]})))
        args = {"to": to, "body": f"notes {i}"}
        src = {"to": ["tool:read_inbox#1"] if from_page else ["task"], "body": []}
        s = engine.score("mailer", "send_email", args, ts + 5, session_id=sid,
                         provenance=signals("send_email", args, src))
        engine.observe("mailer", "send_email", args, ts + 5, "ALLOW", session_id=sid, anomaly=s)
    return engine


def codes(score: Any) -> dict[str, float]:
    return {f.code: f.contribution for f in score.factors}


def test_signals_of_a_call() -> None:
    s = signals("send_email", {"to": "eve@evil.example", "body": "x"}, {"to": ["tool:read_inbox#3"], "body": ["task"]})
    assert s.untrusted == [("to", "eve@evil.example")]
    assert s.first_untrusted == "to 'eve@evil.example' appeared only in the output of read_inbox (call 3), untrusted"
    assert s.off_plan is None
    off = signals("transfer", {"amount": 5}, {"amount": ["task"]})
    assert off.untrusted == [] and "transfer is not among the tools the task's plan (tasks:reply)" in off.off_plan
    trusted = signals("send_email", {"to": "ann@corp.example"}, {"to": ["tool:get_contacts#2"]})
    assert trusted.untrusted == []
    assert signals("send_email", {"to": "a@b.example"}, None, task=None) is None  # a published client


def test_an_injected_recipient_scores_high_and_says_why() -> None:
    engine = trained()
    args = {"to": "newhire@corp.example", "body": "the files you asked for"}
    injected = engine.score("mailer", "send_email", args, T0 + 7000, session_id="new",
                            provenance=signals("send_email", args, {"to": ["tool:read_inbox#1"], "body": []}))
    found = codes(injected)
    assert found["untrusted_value"] > 0.5 and found["untrusted_new_recipient"] == 0.75
    assert any("first use of recipient newhire@corp.example, named only by untrusted tool output" in r
               for r in injected.reasons)
    assert any("appeared only in the output of read_inbox (call 1), untrusted" in r for r in injected.reasons)
    # The same new recipient, given by the user: only the usual novelty.
    asked = engine.score("mailer", "send_email", args, T0 + 7000, session_id="new",
                         provenance=signals("send_email", args, {"to": ["task"], "body": []}))
    assert "untrusted_value" not in codes(asked) and "untrusted_new_recipient" not in codes(asked)
    assert injected.score > asked.score + 0.3
    # Without provenance (a published client) the score is what it always was.
    plain = engine.score("mailer", "send_email", args, T0 + 7000, session_id="new")
    assert plain.score == asked.score and plain.reasons == asked.reasons


def test_off_plan_tool_feeds_the_score() -> None:
    engine = trained()
    args = {"to": "colleague1@corp.example", "body": "x"}
    task = {"id": "t", "plan": {"tools": ["read_inbox"], "source": "intent"}}
    off = engine.score("mailer", "send_email", args, T0 + 7000, session_id="n",
                       provenance=signals("send_email", args, {"to": ["task"], "body": []}, task=task))
    assert codes(off)["off_plan"] == 0.6  # send_email sends data out
    assert any("send_email is not among the tools the task's plan (intent) allows: read_inbox" in r
               for r in off.reasons)


def test_an_agent_that_usually_acts_on_what_it_reads_is_not_flagged_for_it() -> None:
    usual = trained(untrusted_share=0.9)
    rare = trained(untrusted_share=0.0)
    args = {"to": "colleague2@corp.example", "body": "x"}
    prov = signals("send_email", args, {"to": ["tool:read_inbox#1"], "body": []})
    a = codes(usual.score("mailer", "send_email", args, T0 + 7000, session_id="n", provenance=prov))
    b = codes(rare.score("mailer", "send_email", args, T0 + 7000, session_id="n", provenance=prov))
    assert a.get("untrusted_value", 0.0) < 0.1 < b["untrusted_value"]
    assert "untrusted_new_recipient" not in a and "untrusted_new_recipient" not in b  # a known colleague


def test_profile_counters_survive_dump_halve_and_merge() -> None:
    prof = trained(untrusted_share=0.5).agents["mailer"].profile
    assert prof.prov_calls == 400 and prof.untrusted == 100 and prof.off_plan == 0
    again = AgentProfile.from_dict(prof.to_dict())
    assert (again.prov_calls, again.untrusted) == (400, 100)
    again.merge_from(prof)
    assert again.untrusted == 200
    again.halve()
    assert again.untrusted == 100

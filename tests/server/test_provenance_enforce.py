"""The task and argument provenance over the real server (HTTP, SQLite and PostgreSQL) and in
the in-process mode: the same decisions, reasons and `provenance` summary; a published client's
request (no fields) is decided exactly as before under a policy that uses the new conditions;
the summary of a held or blocked call is kept in the decision row's stored answer."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.support.server import Server, tenant

from thoth.policy import compile_policy
from thoth.policy.local import LocalEnforcer

POLICY = """
version: 1
tools:
  read_inbox: {tier: low, classification: read}
  get_contacts: {tier: low, classification: read, output: trusted}
  send_email: {tier: low, classification: external}
rules:
  - id: recipient-from-untrusted
    when: {tool: send_email, args: {to: {source: untrusted}}}
    action: block
    reason: a recipient named only by content the agent read
  - id: off-plan
    when: {in_plan: false, classification: external}
    action: step_up
    reason: the task's plan does not send mail
"""
PLAIN = POLICY.split("rules:")[0]


def body(t: str, sid: str, to: str, **extra: Any) -> dict[str, Any]:
    return {"tenant_id": t, "agent_id": "mailer", "session_id": sid, "tool_name": "send_email",
            "tool_args": {"to": to, "body": "hello"}, "approved_scope": ["send_email", "read_inbox"],
            "enforcement_mode": "progressive", **extra}


INJECTED = {"arg_sources": {"to": ["tool:read_inbox#3"], "body": ["task"]},
            "task": {"id": "task-1", "plan": {"tools": ["read_inbox", "send_email"], "source": "tasks:mail"},
                     "text": "answer Bob's mail"}}
REQUESTED = {"arg_sources": {"to": ["task", "tool:read_inbox#3"], "body": ["task"]},
             "task": {"id": "task-1", "plan": {"tools": ["read_inbox", "send_email"], "source": "tasks:mail"}}}
OFF_PLAN = {"arg_sources": {"to": ["tool:get_contacts#1"], "body": ["task"]},
            "task": {"id": "task-2", "plan": {"tools": ["read_inbox"], "source": "intent"}}}
WANT_REASON = "to 'x@evil.example' appeared only in the output of read_inbox (call 3), untrusted"


def check_answers(injected: dict[str, Any], requested: dict[str, Any], off_plan: dict[str, Any]) -> None:
    assert injected["decision"] == "BLOCK"
    assert injected["matched_rule_ids"][0] == "recipient-from-untrusted"
    assert WANT_REASON in injected["reason"]
    prov = injected["provenance"]
    assert prov["task_text"] == "answer Bob's mail" and prov["in_plan"] is True
    assert prov["args"][0] == {"arg": "to", "value": "x@evil.example", "state": "untrusted", "sources": [
        "tool:read_inbox#3"]}
    assert requested["decision"] == "ALLOW" and "provenance" not in requested
    assert off_plan["decision"] == "STEP_UP"
    assert "send_email is not among the tools the task's plan (intent) allows: read_inbox" in off_plan["reason"]
    assert off_plan["provenance"]["args"][0]["state"] == "trusted"


def test_server_decides_and_explains_by_provenance(server: Server) -> None:
    t = tenant()
    sid = f"s-{uuid.uuid4().hex[:6]}"
    with server.client(server.key(t)) as c, server.client(server.key(t, "admin")) as admin:
        assert admin.put("/v1/policies", json={"document": POLICY}).status_code == 200
        injected = c.post("/v1/enforce", json=body(t, sid, "x@evil.example", **INJECTED)).json()
        requested = c.post("/v1/enforce", json=body(t, sid + "b", "bob@corp.example", **REQUESTED)).json()
        off_plan = c.post("/v1/enforce", json=body(t, sid + "c", "ann@corp.example", **OFF_PLAN)).json()
        check_answers(injected, requested, off_plan)
        bad = c.post("/v1/enforce", json=body(t, sid, "a@b.example", arg_sources=["to"]))
        assert bad.status_code == 422 and bad.json()["message"] == "'arg_sources' must be an object"
        odd = c.post("/v1/enforce", json=body(t, sid + "d", "a@b.example", arg_sources={"to": {"x": 1}},
                                             task={"plan": {"tools": 5}})).json()
        assert odd["decision"] == "ALLOW"  # malformed parts are unknown / no plan: nothing named them

        # The stored row keeps the held/blocked call's answer with its summary (no new column).
        stored = stored_response(server, t, sid, injected["decision_id"])
        assert stored["provenance"] == injected["provenance"]


def stored_response(server: Server, t: str, sid: str, decision_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10  # write-behind: the row joins the next group commit
    while True:
        conn = server.store.db.connect()
        try:
            row = conn.one("SELECT response FROM decisions WHERE tenant_id = ? AND decision_id = ?", (t, decision_id))
        finally:
            conn.close()
        if row is not None or time.monotonic() > deadline:
            assert row is not None and row[0], row
            return json.loads(row[0])  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_a_published_clients_request_is_decided_as_before(server: Server) -> None:
    """No task, no arg_sources: the same answer under the policy with and without the new rules."""
    answers = []
    for document in (POLICY, PLAIN):
        t = tenant()
        with server.client(server.key(t)) as c, server.client(server.key(t, "admin")) as admin:
            assert admin.put("/v1/policies", json={"document": document}).status_code == 200
            got = c.post("/v1/enforce", json=body(t, "s-1", "x@evil.example")).json()
            answers.append({k: got[k] for k in ("decision", "reason", "matched_rule_ids", "decision_reason_code")})
            assert "provenance" not in got
    assert answers[0] == answers[1] and answers[0]["decision"] == "ALLOW"


def test_in_process_mode_gives_the_same_answers() -> None:
    enforcer = LocalEnforcer(policy=compile_policy(POLICY))

    def ask(to: str, extra: dict[str, Any], sid: str) -> dict[str, Any]:
        d = enforcer.enforce(body("t", sid, to, **extra))
        out = d.model_dump()
        out["decision"] = str(d.decision).upper().replace("DECISIONTYPE.", "")
        out["provenance"] = (d.model_extra or {}).get("provenance")
        if out["provenance"] is None:
            del out["provenance"]
        return out

    check_answers(ask("x@evil.example", INJECTED, "l1"), ask("bob@corp.example", REQUESTED, "l2"),
                  ask("ann@corp.example", OFF_PLAN, "l3"))


def test_server_answer_carries_the_provenance_reasons(server: Server) -> None:
    t = tenant()
    sid = f"s-{uuid.uuid4().hex[:6]}"
    with server.client(server.key(t)) as c:
        body = {"tenant_id": t, "agent_id": "mailer", "session_id": sid, "tool_name": "send_email",
                "tool_args": {"to": "eve@evil.example", "body": "hi"}, "enforcement_mode": "observe",
                "arg_sources": {"to": ["tool:read_inbox#1"], "body": []},
                "task": {"id": "t", "plan": {"tools": ["read_inbox"], "source": "intent"}}}
        got = c.post("/v1/enforce", json=body).json()
        signals_text = " | ".join(got["model_signals"])
        assert "appeared only in the output of read_inbox (call 1), untrusted" in signals_text
        assert "send_email is not among the tools the task's plan (intent)" in signals_text
        plain = c.post("/v1/enforce", json={k: v for k, v in body.items() if k not in ("arg_sources", "task")}
                       | {"session_id": sid + "p", "agent_id": "other"}).json()
        assert not any("untrusted" in s or "plan" in s for s in plain["model_signals"])


def test_hostile_provenance_fields_never_cause_a_500(server: Server) -> None:
    t = tenant()
    deep: Any = ["task"]
    for _ in range(50):
        deep = [deep]
    odd_tasks: list[Any] = [
        {"plan": {"tools": ["send_email"], "args": {"send_email": {"to": {"source": [{"x": 1}, ["y"]]}}}}},
        {"plan": {"tools": ["send_email"], "args": {"send_email": {"to": [{"a": 1}, None, 3]}}}},
        {"plan": {"tools": [{"a": 1}, None, "send_*"], "args": {"send_email": "all"}}},
        {"plan": {"tools": ["send_email"] * 20_000}, "text": "x" * 200_000, "id": 7},
        {"plan": [], "text": None},
    ]
    odd_sources: list[Any] = [{"to": deep}, {"to": [None, 1.5, {"k": "v"}]}, {"to[0]": "task", "": []},
                              {"to": ["tool:read_inbox#" + "9" * 400]}, {"\x00": ["task"]}]
    with server.client(server.key(t)) as c, server.client(server.key(t, "admin")) as admin:
        assert admin.put("/v1/policies", json={"document": POLICY}).status_code == 200
        for i, (task, sources) in enumerate(zip(odd_tasks, odd_sources, strict=True)):
            r = c.post("/v1/enforce", json=body(t, f"h{i}", "x@evil.example", task=task, arg_sources=sources))
            assert r.status_code in (200, 413, 422), (r.status_code, r.text)
            if r.status_code == 200:
                assert r.json()["decision"] in ("ALLOW", "BLOCK", "STEP_UP"), r.text

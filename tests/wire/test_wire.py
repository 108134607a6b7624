"""The wire module on its own: one parser/builder per message, camelCase, the strict types, and
that the SDK can import it without the server's packages."""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from thoth import wire
from thoth.models import DecisionType
from thoth.policy.decision import PolicyDecision
from thoth.wire import WireError, parse_enforce

CALL = {"agent_id": "bot", "tool_name": "search", "tenant_id": "t1", "session_id": "s1"}


def test_wire_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(wire.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported, "no imports found: the check would pass on anything"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_parse_applies_the_protocol_defaults() -> None:
    req = parse_enforce({"agent_id": "bot", "tool_name": "search"})
    assert (req.tenant_id, req.user_id, req.session_id) == (None, "system", None)
    assert (req.enforcement_mode, req.environment, req.tool_args) == ("progressive", "prod", {})
    assert req.approved_scope is None and req.session_tool_calls is None and req.dedup_key is None
    assert parse_enforce({**CALL, "enforcement_mode": " BLOCK ", "environment": "Staging"}).enforcement_mode == "block"
    assert parse_enforce({**CALL, "enforcement_mode": "nonsense"}).enforcement_mode == "progressive"
    assert parse_enforce({**CALL, "tool_args": [1, 2]}).tool_args == {"args": [1, 2]}
    assert parse_enforce({**CALL, "call_id": "c", "action_attestation_id": "a"}).dedup_key == "call_id:c"
    assert parse_enforce({**CALL, "hold_token": 5}).hold_token is None  # carried fields are not checked


def test_camel_case_is_the_same_request() -> None:
    snake = {**CALL, "tool_args": {"q": 1}, "approved_scope": ["search"], "session_tool_calls": ["search"],
             "session_intent": "research", "enforcement_mode": "block", "user_id": "u", "tool_call_id": "x"}
    camel = {wire.camel(k): v for k, v in snake.items()}
    assert camel["toolName"] == "search" and "tool_name" not in camel
    a, b = parse_enforce(snake), parse_enforce(camel)
    assert [getattr(a, f) for f in a.__slots__ if f != "body"] == [getattr(b, f) for f in b.__slots__ if f != "body"]
    # Snake case wins when both spellings are sent.
    assert parse_enforce({**CALL, "toolName": "other"}).tool_name == "search"
    assert all(wire.snake(wire.camel(f)) == f for f in (*wire.ENFORCE_FIELDS, *wire.EVENT_FIELDS))


@pytest.mark.parametrize(("body", "message"), [
    ([], "the request body must be a JSON object"),
    ({"agent_id": "bot"}, "'tool_name' is required"),
    ({"tool_name": "x"}, "'agent_id' is required"),
    ({**CALL, "tool_name": ""}, "'tool_name' must not be empty"),
    ({**CALL, "tool_name": 3}, "'tool_name' must be a string"),
    ({**CALL, "userId": ["u"]}, "'user_id' must be a string"),
    ({**CALL, "approved_scope": "search"}, "'approved_scope' must be a list of strings"),
    ({**CALL, "session_tool_calls": ["a", 1]}, "'session_tool_calls' must be a list of strings"),
    ({**CALL, "arg_sources": ["task"]}, "'arg_sources' must be an object"),
    ({**CALL, "task": "send the report"}, "'task' must be an object"),
    ({**CALL, "mcp_server": 3}, "'mcp_server' must be a string"),
    ({**CALL, "session_intent": {"x": 1}}, "'session_intent' must be a string"),
    ({**CALL, "tool_args": "rm -rf"}, "'tool_args' must be an object"),
])
def test_wrong_types_raise_a_422_wire_error(body: Any, message: str) -> None:
    with pytest.raises(WireError) as info:
        parse_enforce(body)
    assert (info.value.status, info.value.message) == (422, message)


def test_purpose_is_not_the_intent() -> None:
    req = parse_enforce({**CALL, "purpose": "billing"})
    assert req.session_intent is None and req.body["purpose"] == "billing"


def decision(verdict: DecisionType, would: DecisionType | None = None, **kw: Any) -> PolicyDecision:
    return PolicyDecision(decision=verdict, would_decision=would or verdict, reason="why", reason_code="code",
                          matched_rule_ids=["r1"], risk_score=0.25, **kw)


def test_envelope_per_verdict() -> None:
    allow = wire.decision_envelope(decision(DecisionType.ALLOW, DecisionType.BLOCK, flags=["f"]))
    assert allow == {"decision": "ALLOW", "authorization_decision": "ALLOW", "reason": "why",
                     "decision_reason_code": "code", "matched_rule_ids": ["r1"], "policy_references": [],
                     "risk_score": 0.25, "would_decision": "BLOCK", "flags": ["f"]}
    mod = wire.decision_envelope(decision(DecisionType.MODIFY, modified_args={"q": 2}))
    assert mod["modified_tool_args"] == {"q": 2} and mod["modification_reason"] == "why"
    defer = wire.decision_envelope(decision(DecisionType.DEFER, defer_timeout_seconds=30))
    assert (defer["defer_reason"], defer["defer_timeout_seconds"]) == ("why", 30)
    step = wire.decision_envelope(decision(DecisionType.STEP_UP, step_up_timeout_seconds=60))
    assert step["step_up_timeout_seconds"] == 60
    assert wire.verdict_of({"authorization_decision": "BLOCK"}) == "BLOCK"


def test_server_fields_keep_the_shape_published_clients_validate() -> None:
    env = wire.server_fields(wire.decision_envelope(decision(DecisionType.DEFER, flags=["f"]), 0.5),
                             decision_id="dec_1", session_id="s", mode="block", violation_id="vio_1",
                             risk_reasons=["odd hour"], policy_version="file:x")
    for name in ("matched_rule_ids", "policy_references", "regulatory_regimes", "matched_control_ids",
                 "model_signals"):
        assert isinstance(env[name], list), name
    assert "flags" not in env and env["rule_version"] is None and env["defer_timeout_seconds"] == 300
    assert env["would_decision"] == "DEFER" and env["risk_score"] == 0.5 and env["hold_token"] is None
    assert wire.server_fields(dict(env), decision_id="d", session_id="s", mode="block", violation_id=None,
                              risk_reasons=[], policy_version=7)["rule_version"] == 7


def approval(status: str, **kw: Any) -> dict[str, Any]:
    return {"hold_token": "hold_1", "approval_id": "apr_1", "status": status, "violation_id": "vio_1",
            "tool_name": "pay", "expires_at": "2026-01-01T00:00:00Z", "request_reason": "big", "reason": None,
            "resolved_by": "ann", "resolved_at": "2026-01-01T00:00:00Z", "allowed_uses": 1, **kw}


def test_hold_answer_decision_equals_the_resolution() -> None:
    pending = wire.hold_answer(approval("pending"))
    assert (pending["resolved"], pending["decision"], pending["resolution"]) == (False, "STEP_UP", None)
    for status, verdict in (("approved", "ALLOW"), ("denied", "BLOCK"), ("expired", "BLOCK")):
        answer = wire.hold_answer(approval(status))
        assert answer["resolved"] is True
        assert answer["decision"] == answer["authorization_decision"] == answer["resolution"] == verdict
    spent = wire.hold_answer(approval("approved", _valid_until_ts=time.time() - 1, valid_until="then"), False)
    assert spent["decision"] == "BLOCK" and "valid until then" in spent["reason"]


def test_event_validation() -> None:
    ev = wire.parse_event(0, {"eventId": "e1", "toolName": "x", "hash": "forged", "tenant_id": "t"}, 60, "t")
    assert ev == {"event_id": "e1", "tool_name": "x", "tenant_id": "t"}
    bad = [({"event_id": "e", "ttl": True}, 422, "'ttl' must be a number"),
           ({"event_id": "e", "metadata": []}, 422, "'metadata' must be an object"),
           ({"event_id": "e", "event_type": "approval_granted"}, 422, "reserved"),
           ({"event_id": "e", "source_type": "Thoth_x"}, 422, "reserved"),
           ({"event_id": "e" * 301}, 422, "too long"),
           ({"event_id": "e", "content": [[[1]]]}, 422, wire.DEPTH_MESSAGE),
           ({"event_id": "e", "tenant_id": "other"}, 403, "tenant_id does not match")]
    for raw, status, text in bad:
        with pytest.raises(WireError) as info:
            wire.parse_event(3, raw, 2, "t")
        assert info.value.status == status and text in info.value.message and "event 3" in info.value.message


def test_openapi_is_generated_from_the_tables() -> None:
    pytest.importorskip("orjson")
    from thoth.server.openapi_dataplane import SCHEMAS

    assert set(wire.ENFORCE_FIELDS) <= set(SCHEMAS["EnforceRequest"]["properties"])
    assert set(wire.EVENT_FIELDS) <= set(SCHEMAS["Event"]["properties"])
    assert SCHEMAS["EnforceRequest"]["required"] == list(wire.ENFORCE_REQUIRED)
    assert SCHEMAS["EnforceRequest"]["properties"]["approved_scope"]["type"] == "array"

"""The in-process mode: LocalEnforcer, LocalStepUp, LocalEventSink with real files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from thoth.models import DecisionType, EnforcementDecision, ThothConfig
from thoth.policy import local
from thoth.policy.local import LocalEnforcer, LocalEventSink, LocalStepUp, set_local_approver

POLICY = """\
version: 1
agents:
  bot: {tools: [read_file, send_email, pay]}
rules:
  - id: exfil
    when: {tool: send_email, called: read_file}
    action: block
  - id: pay-big
    when: {tool: pay, args: {amount: {gt: 100}}}
    action: step_up
  - id: mask
    when: {tool: read_file, args: {path: {prefix: /secrets/}}}
    action: modify
    modify: {set: {path: /redacted}}
"""


def request(tool: str, session: str = "s1", **kw: object) -> dict:
    return {"agent_id": "bot", "tenant_id": "t", "user_id": "u", "tool_name": tool, "session_id": session,
            "session_tool_calls": [tool], "approved_scope": [], "enforcement_mode": "progressive",
            "environment": "prod", "tool_args": {}, **kw}


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_enforce_keeps_session_history_per_session(policy_file: Path) -> None:
    enforcer = LocalEnforcer(policy_path=policy_file)
    assert enforcer.enforce(request("send_email")).decision is DecisionType.ALLOW
    assert enforcer.enforce(request("read_file", tool_args={"path": "/ws/a"})).decision is DecisionType.ALLOW
    blocked = enforcer.enforce(request("send_email"))
    assert blocked.decision is DecisionType.BLOCK
    assert blocked.matched_rule_ids == ["exfil"] and blocked.violation_id
    assert enforcer.enforce(request("send_email", session="s2")).decision is DecisionType.ALLOW


def test_enforce_returns_the_sdk_envelope(policy_file: Path) -> None:
    enforcer = LocalEnforcer(policy_path=policy_file)
    step = enforcer.enforce(request("pay", tool_args={"amount": 500}))
    assert isinstance(step, EnforcementDecision)
    assert step.decision is DecisionType.STEP_UP and step.hold_token and step.latency_ms is not None
    mod = enforcer.enforce(request("read_file", tool_args={"path": "/secrets/k"}))
    assert mod.decision is DecisionType.MODIFY and mod.modified_tool_args == {"path": "/redacted"}
    out = enforcer.enforce(request("delete_all"))
    assert out.decision is DecisionType.STEP_UP and out.decision_reason_code == "policy_scope_violation"
    observed = enforcer.enforce(request("delete_all", session="o", enforcement_mode="observe"))
    assert observed.decision is DecisionType.ALLOW and observed.model_extra["would_decision"] == "STEP_UP"


async def test_aenforce(policy_file: Path) -> None:
    enforcer = LocalEnforcer(policy_path=policy_file)
    assert (await enforcer.aenforce(request("read_file"))).decision is DecisionType.ALLOW


def test_thoth_policy_env_and_default_policy(policy_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ThothConfig(agent_id="bot", tenant_id="t", api_url="local")
    monkeypatch.setenv("THOTH_POLICY", str(policy_file))
    assert LocalEnforcer(config).policy.rule_ids == ["exfil", "pay-big", "mask"]
    monkeypatch.delenv("THOTH_POLICY")
    enforcer = LocalEnforcer(config)
    assert enforcer.policy.version == "default"
    assert enforcer.enforce(request("x", approved_scope=["y"])).decision is DecisionType.STEP_UP


def test_an_invalid_policy_file_is_refused_with_its_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: a\n    when: {tool: x}\n    action: nope\n")
    with pytest.raises(ValueError, match="line 4"):
        LocalEnforcer(policy_path=bad)
    with pytest.raises(ValueError, match="cannot read"):
        LocalEnforcer(policy_path=tmp_path / "missing.yaml")


def test_hot_reload_keeps_the_old_policy_when_the_new_one_is_invalid(policy_file: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "RELOAD_CHECK_SECONDS", 0.0)
    enforcer = LocalEnforcer(policy_path=policy_file)
    policy_file.write_text(POLICY.replace("gt: 100", "gt: 1000"))
    os.utime(policy_file, (time.time() + 5, time.time() + 5))
    assert enforcer.enforce(request("pay", tool_args={"amount": 500})).decision is DecisionType.ALLOW
    policy_file.write_text("rules: [oops")
    os.utime(policy_file, (time.time() + 10, time.time() + 10))
    assert enforcer.enforce(request("pay", tool_args={"amount": 5000})).decision is DecisionType.STEP_UP


def _step_up() -> EnforcementDecision:
    return EnforcementDecision(decision=DecisionType.STEP_UP, reason="big", hold_token="h")


def test_local_step_up_denies_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THOTH_LOCAL_APPROVER", raising=False)
    out = LocalStepUp().wait(_step_up(), "pay")
    assert out.decision is DecisionType.BLOCK and out.decision_reason_code == "step_up_denied"
    monkeypatch.setenv("THOTH_LOCAL_APPROVER", "allow")
    assert LocalStepUp().wait(_step_up(), "pay").decision is DecisionType.ALLOW
    monkeypatch.setenv("THOTH_LOCAL_APPROVER", "maybe")
    assert LocalStepUp().wait(_step_up(), "pay").decision is DecisionType.BLOCK


async def test_local_step_up_with_a_callable() -> None:
    seen: list[str] = []

    def approve_small(decision: EnforcementDecision, tool: str) -> bool:
        seen.append(tool)
        return tool == "read"

    async def async_approver(decision: EnforcementDecision, tool: str) -> bool:
        return True

    def broken(decision: EnforcementDecision, tool: str) -> bool:
        raise RuntimeError("approver down")

    try:
        set_local_approver(approve_small)
        assert LocalStepUp().wait(_step_up(), "read").decision is DecisionType.ALLOW
        assert (await LocalStepUp().await_(_step_up(), "pay")).decision is DecisionType.BLOCK
        assert seen == ["read", "pay"]
        assert (await LocalStepUp(approver=async_approver).await_(_step_up(), "x")).decision is DecisionType.ALLOW
        assert LocalStepUp(approver=broken).wait(_step_up(), "x").decision is DecisionType.BLOCK
    finally:
        set_local_approver(None)


def test_event_sink_writes_jsonl_under_thoth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THOTH_HOME", str(tmp_path))
    monkeypatch.delenv("THOTH_LOCAL_EVENTS", raising=False)
    sink = LocalEventSink()
    assert sink.path == tmp_path / "events.jsonl"
    for i in range(3):
        sink.emit({"event_type": "TOOL_CALL_PRE", "i": i})
    assert sink.flush()
    assert [e["i"] for e in sink.read()] == [0, 1, 2]
    assert sink.sent >= 3 and sink.dropped == 0
    for i in range(LocalEventSink.BATCH):  # a full batch is written without an explicit flush
        sink.emit({"i": i})
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 3 + LocalEventSink.BATCH


@pytest.mark.parametrize("tool_args", [{}, {"amount": 500}, {"path": "/secrets/k"}])
def test_fast_envelope_equals_a_validated_model(policy_file: Path, tool_args: dict) -> None:
    enforcer = LocalEnforcer(policy_path=policy_file)
    for tool in ("read_file", "pay", "delete_all"):
        fast = enforcer.enforce(request(tool, tool_args=tool_args, enforcement_mode="observe"))
        again = EnforcementDecision.model_validate(fast.model_dump())
        assert fast == again and fast.model_dump() == again.model_dump()
        assert fast.model_copy(update={"reason": "x"}).reason == "x"
        fast = enforcer.enforce(request(tool, tool_args=tool_args))
        assert fast == EnforcementDecision.model_validate(fast.model_dump())

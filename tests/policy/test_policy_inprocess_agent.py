"""End to end: a real governed agent with THOTH_API_URL=local and THOTH_POLICY=file.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import thoth
from thoth import ThothPolicyViolation
from thoth.policy.local import flush_local_sinks, set_local_approver

POLICY = """\
version: 1
agents:
  mail-agent: {tools: [read_file, send_email, pay]}
rules:
  - id: no-send-after-secrets
    when:
      tool: send_email
      history: {tool: read_file, args: {path: {prefix: /secrets/}}}
    action: block
    reason: No e-mail after reading secrets
  - id: big-payment
    when: {tool: pay, args: {amount: {gt: 100}}}
    action: step_up
  - id: mask-card
    when: {tool: send_email, args: {body: {regex: '\\d{16}'}}}
    action: modify
    modify: {replace: [{arg: body, pattern: '\\d{16}', with: '[CARD]'}]}
"""


class Agent:
    def __init__(self, sent: list[dict[str, Any]]) -> None:
        def read_file(path: str) -> str:
            return f"contents of {path}"

        def send_email(to: str, body: str) -> str:
            sent.append({"to": to, "body": body})
            return "sent"

        def pay(amount: int) -> str:
            return f"paid {amount}"

        def delete_repo(name: str) -> str:
            return "deleted"

        self.tools = [read_file, send_email, pay, delete_repo]


@pytest.fixture
def local_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("THOTH_API_URL", "local")
    monkeypatch.setenv("THOTH_POLICY", str(policy))
    monkeypatch.setenv("THOTH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("THOTH_LOCAL_APPROVER", raising=False)
    monkeypatch.delenv("THOTH_LOCAL_EVENTS", raising=False)
    return tmp_path


def governed(sent: list[dict[str, Any]], **kw: Any) -> Any:
    return thoth.instrument(Agent(sent), agent_id="mail-agent", tenant_id="acme", approved_scope=[],
                            enforcement=kw.pop("enforcement", "progressive"), **kw)


def test_decisions_in_process(local_mode: Path) -> None:
    sent: list[dict[str, Any]] = []
    agent = governed(sent)
    read_file, send_email, pay, delete_repo = agent.tools
    assert send_email(to="a@x.com", body="card 4111111111111111") == "sent"
    assert sent[-1]["body"] == "card [CARD]"                      # MODIFY rewrote the arguments
    with pytest.raises(ThothPolicyViolation) as step_up:         # STEP_UP, local approver denies
        pay(amount=500)
    assert step_up.value.decision in ("BLOCK", "STEP_UP")
    assert pay(amount=5) == "paid 5"
    with pytest.raises(ThothPolicyViolation):                     # out of the server-side scope
        delete_repo(name="core")
    assert read_file(path="/secrets/key") == "contents of /secrets/key"
    with pytest.raises(ThothPolicyViolation) as blocked:
        send_email(to="a@x.com", body="hi")
    assert "secrets" in blocked.value.reason
    assert len(sent) == 1
    thoth.flush()
    flush_local_sinks()  # until thoth.flush() covers the in-process sink
    events = [json.loads(line) for line in (local_mode / "home" / "events.jsonl").read_text().splitlines()]
    kinds = {e["event_type"] for e in events}
    assert {"TOOL_CALL_PRE", "TOOL_CALL_POST", "TOOL_CALL_BLOCK"} <= kinds
    assert all(e["tenant_id"] == "acme" for e in events)


def test_local_approver_setting_and_callable(local_mode: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THOTH_LOCAL_APPROVER", "allow")
    pay = governed([]).tools[2]
    assert pay(amount=500) == "paid 500"
    monkeypatch.delenv("THOTH_LOCAL_APPROVER")
    asked: list[str] = []
    set_local_approver(lambda decision, tool: asked.append(tool) or True)
    try:
        assert governed([]).tools[2](amount=700) == "paid 700"
        assert asked == ["pay"]
    finally:
        set_local_approver(None)


def test_observe_mode_runs_everything(local_mode: Path) -> None:
    agent = governed([], enforcement="observe")
    assert agent.tools[3](name="core") == "deleted"

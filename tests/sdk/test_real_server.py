"""The SDK end to end against the real `thoth serve` (SQLite): what a user of both sees.

Decisions come from policy pushed with PUT /v1/policies, approvals are resolved through
POST /v1/approvals/{id}/resolve, and what the server recorded is read back from the control plane.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import thoth
from thoth import ThothPolicyViolation
from thoth.http import get_endpoint

from .real_server import POLICY, Server, Tenant, restart

ROOT = Path(__file__).resolve().parents[2]


def flushed(tenant: Tenant) -> None:
    assert get_endpoint(tenant.url, tenant.sdk_key).transport.flush(10), "events not delivered in time"


def stored_events(tenant: Tenant, session_id: str) -> list[dict[str, Any]]:
    flushed(tenant)
    return tenant.session(session_id)["events"]  # type: ignore[no-any-return]


def test_seed_generic_agent_example(real: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's generic agent, unchanged: the server's policy refuses /etc/passwd."""
    real.put_policy(POLICY)
    monkeypatch.setenv("THOTH_API_KEY", real.sdk_key)
    monkeypatch.setenv("THOTH_API_URL", real.url)

    class FileTool:
        name = "read_file"

        def run(self, path: str) -> str:
            with open(path) as f:
                return f.read()

    class MyAgent:
        tools = [FileTool()]

        def run(self, prompt: str) -> str:
            ...
            return ""

    agent = MyAgent()
    agent = thoth.instrument(
        agent,
        agent_id="file-agent",
        approved_scope=["read_file"],
        tenant_id=real.tenant_id,  # the seed says "acme-corp"; each test has a tenant of its own
        enforcement="block",
    )
    with pytest.raises(ThothPolicyViolation) as info:
        agent.tools[0].run("/etc/passwd")
    e = info.value
    assert (e.tool_name, e.reason, e.matched_rule_ids) == ("read_file", "sensitive path", ["no-passwd"])
    (violation,) = real.violations()
    assert violation["violation_id"] == e.violation_id and violation["decision"] == "BLOCK"
    assert "test_seed_generic_agent_example" in agent.tools[0].run(__file__)  # an ordinary read runs
    session = thoth.get_current_session()
    assert session is not None
    kinds = [ev["event_type"] for ev in stored_events(real, session.session_id)]
    assert sorted(kinds) == ["TOOL_CALL_BLOCK", "TOOL_CALL_POST", "TOOL_CALL_PRE", "TOOL_CALL_PRE"]


def test_example_script_against_the_real_server(real: Tenant) -> None:
    env = {**os.environ, "THOTH_TENANT_ID": real.tenant_id, "THOTH_API_URL": real.url,
           "THOTH_API_KEY": real.sdk_key, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "generic_agent.py")], capture_output=True,
                         text=True, timeout=60, env=env, check=True).stdout
    assert "read_file -> quarterly numbers" in out and "Blocked: delete_file" in out
    violation_id = out.split("Violation record: ", 1)[1].split()[0]
    assert [v["violation_id"] for v in real.violations()] == [violation_id]  # the server's own record


def _approve_later(real: Tenant, approve: bool, resolved_at: list[float], reason: str | None = None) -> None:
    def run() -> None:
        approval = real.wait_for_approval()
        time.sleep(0.3)  # the SDK is inside its long poll by now
        resolved_at.append(time.monotonic())
        real.resolve(approval["approval_id"], approve, reason)

    threading.Thread(target=run, daemon=True).start()


def _used_once(real: Tenant) -> dict[str, Any]:
    """The one approved approval of the tenant: its single use taken by the SDK's wait."""
    (approved,) = real._call("GET", "/v1/approvals?status=approved", key=real.approver_key)["items"]
    assert (approved["uses"], approved["allowed_uses"]) == (1, 1) and approved["valid_until"]
    return approved  # type: ignore[no-any-return]


@pytest.mark.parametrize("approve", [True, False])
def test_step_up_approve_and_deny(real: Tenant, approve: bool) -> None:
    real.put_policy(POLICY)
    ran_at: list[float] = []
    resolved_at: list[float] = []

    def send_email(to: str) -> str:
        ran_at.append(time.monotonic())
        return f"sent to {to}"

    tracer = real.tracer(enforcement="step_up")  # default 5 s poll interval: only the long poll is fast
    tool = tracer.wrap_tool("send_email", send_email)
    _approve_later(real, approve, resolved_at, reason=None if approve else "not this one")
    if approve:
        assert tool("bob@acme") == "sent to bob@acme"
        # The approval's latency (issue 6: <= 1 s) is measured by bench/bench_approval_latency.py.
        assert ran_at[0] - resolved_at[0] < 4  # i.e. not the 5 s poll interval
        first = _used_once(real)
        # The same call again is a new call: held anew (denied here), the approval does not cover it.
        _approve_later(real, False, resolved_at, reason="once was enough")
        with pytest.raises(ThothPolicyViolation) as replay:
            tool("bob@acme")
        assert replay.value.reason == "once was enough" and len(ran_at) == 1
        assert _used_once(real)["approval_id"] == first["approval_id"]
    else:
        with pytest.raises(ThothPolicyViolation) as info:
            tool("bob@acme")
        assert info.value.reason == "not this one" and info.value.violation_id
        assert not ran_at
    kinds = [e["event_type"] for e in stored_events(real, tracer.session.session_id)]
    if approve:  # the approved call ran, its replay was held and denied
        assert [k for k in kinds if k.startswith("TOOL_CALL")] == ["TOOL_CALL_PRE", "TOOL_CALL_POST",
                                                                  "TOOL_CALL_PRE", "TOOL_CALL_BLOCK"]
    else:
        assert kinds[-1] == "TOOL_CALL_BLOCK"


async def test_async_step_up_approve(real: Tenant) -> None:
    real.put_policy(POLICY)
    resolved_at: list[float] = []

    async def send_email(to: str) -> str:
        return f"sent to {to}"

    tool = real.tracer(enforcement="step_up").wrap_tool("send_email", send_email)
    _approve_later(real, True, resolved_at)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    assert await tool("bob@acme") == "sent to bob@acme"
    task.cancel()
    assert ticks >= 20  # the event loop ran on while the call was held
    _used_once(real)
    _approve_later(real, False, resolved_at, reason="no replays")  # the same call again: held anew
    with pytest.raises(ThothPolicyViolation) as replay:
        await tool("bob@acme")
    assert replay.value.reason == "no replays"
    _used_once(real)


def test_modify_runs_the_tool_with_the_servers_arguments(real: Tenant) -> None:
    real.put_policy(POLICY)
    seen: list[str] = []
    tool = real.tracer().wrap_tool("post_note", lambda body: seen.append(body) or "ok")
    assert tool(body="card 4111111111111111 please") == "ok"
    assert seen == ["card [CARD] please"]


async def test_async_allow_block_and_modify(real: Tenant) -> None:
    real.put_policy(POLICY)
    seen: list[Any] = []

    async def read_file(path: str) -> str:
        seen.append(path)
        return "content"

    async def post_note(body: str) -> str:
        seen.append(body)
        return "ok"

    tracer = real.tracer()
    read, note = tracer.wrap_tool("read_file", read_file), tracer.wrap_tool("post_note", post_note)
    assert await read("/tmp/x") == "content"
    with pytest.raises(ThothPolicyViolation, match="sensitive path"):
        await read("/etc/passwd")
    assert await note(body="1234123412341234") == "ok"
    assert seen == ["/tmp/x", "[CARD]"]
    decisions = [d["decision"] for d in real.session(tracer.session.session_id)["decisions"]]
    assert decisions == ["ALLOW", "BLOCK", "MODIFY"]


def test_observe_mode_is_recorded_server_side_as_the_would_be_decision(real: Tenant) -> None:
    real.put_policy(POLICY)
    tracer = real.tracer(enforcement="observe")
    tool = tracer.wrap_tool("read_file", lambda path: "secret stuff")
    assert tool("/etc/passwd") == "secret stuff"  # observe never blocks
    events = stored_events(real, tracer.session.session_id)  # the off-path enforce call ran before the POST
    (decision,) = real.session(tracer.session.session_id)["decisions"]
    assert decision["decision"] == "ALLOW" and decision["would_decision"] == "BLOCK"
    assert decision["matched_rule_ids"] == ["no-passwd"]
    assert decision["violation_id"] in {v["violation_id"] for v in real.violations()}  # listed as a violation
    (post,) = [e for e in events if e["event_type"] == "TOOL_CALL_POST"]
    assert post["metadata"]["observed_decision"]["would_decision"] == "BLOCK"
    assert not [e for e in events if e["event_type"] == "TOOL_CALL_BLOCK"]


def test_a_wrong_key_blocks_with_an_actionable_message(real: Tenant) -> None:
    with pytest.raises(ThothPolicyViolation) as info:
        real.tracer(api_key="thk_not_a_key").wrap_tool("search", lambda q: q)("x")
    assert "THOTH_API_KEY" in info.value.reason and "401" in info.value.reason


def test_server_restart_loses_nothing_and_duplicates_nothing(fresh_server: list[Server]) -> None:
    """The server stops while the agent keeps working, and comes back on the same port and database."""
    real = Tenant(fresh_server[0])
    tracer = real.tracer()
    tool = tracer.wrap_tool("search", lambda q: f"result {q}")
    results = [tool(f"before-{i}") for i in range(5)]
    server = fresh_server[0]
    # Killed, not asked to stop: a batch it stored but never acknowledged is sent again and must
    # still be stored once. The agent goes on, failing open, while its events queue and retry.
    server.proc.kill()
    server.proc.wait(10)
    results += [tool(f"down-{i}") for i in range(15)]
    fresh_server[0] = restart(server, pause=1.0)
    results += [tool(f"after-{i}") for i in range(5)]
    assert results[-1] == "result after-4" and len(results) == 25

    events = stored_events(real, tracer.session.session_id)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)) == 50  # 25 PRE + 25 POST, each stored exactly once
    pre_args = sorted(e["metadata"]["tool_call"]["arguments"]["args"][0]
                      for e in events if e["event_type"] == "TOOL_CALL_PRE")
    expected = [f"before-{i}" for i in range(5)] + [f"down-{i}" for i in range(15)] + [f"after-{i}" for i in range(5)]
    assert pre_args == sorted(expected)
    assert tracer.emitter.dropped == 0
    assert sum(e["metadata"].get("sdk_fail_open_count", 0) for e in events) == 15
    assert len(real.session(tracer.session.session_id)["decisions"]) == 10  # the 15 fail-opens never reached it


async def test_concurrent_agents_keep_their_sessions_apart(real: Tenant) -> None:
    """Eight agents in concurrent tasks; the server's record of each session holds only its own calls."""

    async def one_agent(i: int) -> str:
        async def lookup(step: int) -> int:
            await asyncio.sleep(0.005)  # let the other agents interleave
            return step

        agent = type("Agent", (), {})()
        agent.tools = [lookup]
        thoth.instrument(agent, agent_id=f"agent-{i}", approved_scope=["lookup"], tenant_id=real.tenant_id,
                         api_key=real.sdk_key, api_url=real.url, enforcement="block")
        session = thoth.get_current_session()
        assert session is not None
        for step in range(3):
            assert await agent.tools[0](step) == step
        return session.session_id

    session_ids = await asyncio.gather(*(one_agent(i) for i in range(8)))
    assert len(set(session_ids)) == 8
    flushed(real)
    for i, session_id in enumerate(session_ids):
        record = real.session(session_id)
        assert record["session"]["agent_id"] == f"agent-{i}"
        assert [d["decision"] for d in record["decisions"]] == ["ALLOW"] * 3
        assert {e["agent_id"] for e in record["events"]} == {f"agent-{i}"}
        posts = [e for e in record["events"] if e["event_type"] == "TOOL_CALL_POST"]
        assert [e["session_tool_calls"] for e in posts] == [["lookup"], ["lookup"] * 2, ["lookup"] * 3]


def test_manual_tool_loops_and_every_event_kind(real: Tenant) -> None:
    """instrument_openai / instrument_anthropic dicts, a failing tool and LLM usage, as the server stores them."""
    def search_docs(query: str) -> str:
        return f"docs about {query}"

    def send_email(to: str, body: str) -> str:
        raise AssertionError("out of scope: must not run")

    def flaky(q: str) -> str:
        raise KeyError(q)

    session_id = str(uuid.uuid4())  # both dicts continue one session
    for instrument in (thoth.instrument_openai, thoth.instrument_anthropic):
        governed = instrument({"search_docs": search_docs, "send_email": send_email, "flaky": flaky},
                              agent_id="llm-agent", approved_scope=["search_docs", "flaky"],
                              tenant_id=real.tenant_id, api_key=real.sdk_key, api_url=real.url,
                              enforcement="block", session_id=session_id)
        assert governed["search_docs"]({"query": "access"}) == "docs about access"
        with pytest.raises(ThothPolicyViolation) as info:
            governed["send_email"]({"to": "x@evil", "body": "secrets"})
        assert info.value.violation_id and info.value.decision_reason_code == "policy_scope_violation"
        with pytest.raises(KeyError):
            governed["flaky"]({"q": "x"})
    real.tracer(session_id=session_id).record_llm_usage(model="gpt-x", input_tokens=10, output_tokens=5,
                                                        provider="openai")
    events = stored_events(real, session_id)
    kinds = [e["event_type"] for e in events]
    assert kinds.count("LLM_INVOCATION") == 1 and kinds.count("TOOL_CALL_BLOCK") == 2
    assert [d["decision"] for d in real.session(session_id)["decisions"]] == ["ALLOW", "BLOCK", "ALLOW"] * 2
    failed = [e for e in events if e["event_type"] == "TOOL_CALL_POST" and e["tool_name"] == "flaky"]
    assert [e["metadata"]["error_type"] for e in failed] == ["KeyError", "KeyError"]
    blocked = {v["violation_id"] for v in real.violations()}
    assert info.value.violation_id in blocked and len(blocked) == 2

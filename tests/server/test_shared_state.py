"""State that must not depend on which process served a call, nor die with a process:
session history and analytics baselines, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tests.support.server import held as metrics_held
from tests.support.server import scrape, start_server, start_servers, stop_server

from thoth.server.migrate import upgrade

POLICY = """
version: 1
tools:
  get_secret: {tier: low, classification: read}
  search: {tier: low, classification: read}
  export: {tier: low, classification: external}
rules:
  - id: no-search-after-secret
    description: once a secret was read, searching the web is blocked
    when: {all: [{tool: search}, {called: get_secret}]}
    action: block
    reason: the session read a secret
  - id: export-needs-human
    when: {tool: export}
    action: step_up
    reason: exports need a human
"""


def enforce(url: str, key: str, t: str, sid: str, tool: str, calls: list[str]) -> dict[str, Any]:
    calls.append(tool)
    body = {"tenant_id": t, "agent_id": "analyst", "session_id": sid, "tool_name": tool,
            "tool_args": {"q": tool}, "enforcement_mode": "progressive", "session_tool_calls": list(calls)}
    answer: dict[str, Any] = httpx.post(url + "/v1/enforce", json=body, headers={"x-api-key": key}).json()
    return answer


def report(url: str, key: str) -> dict[str, Any]:
    body = httpx.get(url + "/v1/analytics/agents/analyst", headers={"x-api-key": key}).json()
    analytics: dict[str, Any] = body["analytics"]
    assert body["drift"] == analytics["drift"]
    return analytics


def test_history_and_baselines_across_processes_and_restarts(backend: str, tmp_path: Path) -> None:
    upgrade(backend)
    home = tmp_path / "home"
    # per-tenant hold counts are on /metrics only when the operator asks for tenant labels
    a, b = start_servers(backend, home, 2, {"THOTH_METRICS_TENANT_LABELS": "1"})
    t = f"shared-{uuid.uuid4().hex[:6]}"
    try:
        sdk, admin = a.key(t), a.key(t, "admin")
        assert httpx.put(a.url + "/v1/policies", json={"document": POLICY},
                         headers={"x-api-key": admin}).status_code == 200
        sid, calls = f"s-{uuid.uuid4().hex[:6]}", []
        # b sees the session first, then a call goes through a: b must still know about it.
        assert enforce(b.url, sdk, t, sid, "search", calls)["decision"] == "ALLOW"
        assert enforce(a.url, sdk, t, sid, "get_secret", calls)["decision"] == "ALLOW"
        blocked = enforce(b.url, sdk, t, sid, "search", calls)
        assert blocked["decision"] == "BLOCK" and blocked["matched_rule_ids"] == ["no-search-after-secret"]

        held = enforce(a.url, sdk, t, f"s-{uuid.uuid4().hex[:6]}", "export", [])
        assert held["decision"] == "STEP_UP"
        assert metrics_held(scrape(b.url), t) == 1  # a hold made by a, counted by b
        (approval,) = httpx.get(b.url + "/v1/approvals", params={"status": "pending"},
                                headers={"x-api-key": admin}).json()["items"]
        assert httpx.post(f"{b.url}/v1/approvals/{approval['approval_id']}/resolve", json={"decision": "approve"},
                          headers={"x-api-key": admin}).status_code == 200

        assert metrics_held(scrape(a.url), t) == 0  # resolved by b, no longer counted by a
        # Both processes' calls reach one baseline (each flushes every 2 s); the approved export is learnt.
        deadline = time.monotonic() + 15
        while True:
            seen = report(a.url, admin)
            if seen["calls"] >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert seen["decisions"]["ALLOW"] == 3 and seen["decisions"]["BLOCK"] == 1
        assert "export" in {x["tool"] for x in seen["top_tools"]}
    finally:
        stop_server(a)
        stop_server(b)
    c = start_server(backend, home)  # a restart: the baseline comes back from the database
    try:
        after = report(c.url, admin)
        assert after["calls"] == seen["calls"] and after["decisions"] == seen["decisions"]
        assert after["series"] and "export" in {x["tool"] for x in after["top_tools"]}
    finally:
        stop_server(c)

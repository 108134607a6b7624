"""Click-to-run latency with the real SDK (Tracer + StepUpClient long-polling `?wait=`) against `thoth serve`.

The SDK's fallback poll interval is set to 30 s, so the tool can only run within the join
timeout if the long-poll wakes on the resolution. The measured figure is printed (run with -s);
bench/bench_approval_latency.py repeats it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from tests.notify.conftest import Rig
from tests.notify.stubs import wait_for

from thoth.instrumentor import build_tracer


def _held_call_latency(rig: Rig, resolve: Any) -> float:
    agent = f"agent-lat-{uuid.uuid4().hex[:6]}"
    tracer = build_tracer(agent_id=agent, approved_scope=["search"], tenant_id=rig.tenant, user_id="dana",
                          enforcement="step_up", api_key=rig.sdk_key, api_url=rig.server.url,
                          step_up_poll_interval_seconds=30, step_up_timeout_minutes=1)
    ran: dict[str, Any] = {}

    def tool(repo: str) -> str:
        ran["at"] = time.perf_counter()
        return f"deleted {repo}"

    def agent_thread() -> None:
        try:
            ran["result"] = tracer.run("delete_repo", tool, (), {"repo": "acme/prod"})
        except Exception as exc:  # surfaced by the assertions below
            ran["error"] = exc

    worker = threading.Thread(target=agent_thread)
    worker.start()
    post = wait_for(lambda: next((c for c in rig.slack.posted("chat.postMessage")
                                  if agent in json.dumps(c["body"]["blocks"])), None))
    approval_id = next(b for b in post["body"]["blocks"] if b["type"] == "actions")["elements"][0]["value"]
    time.sleep(0.3)  # the SDK is now inside its long-poll
    clicked = time.perf_counter()
    resolve(approval_id)
    worker.join(timeout=10)
    assert not worker.is_alive(), "the tool did not run: the long-poll did not wake on the approval"
    assert "error" not in ran, ran.get("error")
    assert ran["result"] == "deleted acme/prod"
    return float(ran["at"] - clicked)


@pytest.mark.parametrize("how", ["slack", "api"])
def test_click_to_tool_run_latency(rig: Rig, how: str) -> None:
    def resolve(approval_id: str) -> None:
        if how == "slack":
            r = rig.click(approval_id, user="U_BOB")
        else:
            r = httpx.post(f"{rig.server.url}/v1/approvals/{approval_id}/resolve", json={"decision": "approve"},
                           headers={"x-api-key": rig.approver_key})
        assert r.status_code == 200, r.text

    latency = _held_call_latency(rig, resolve)
    print(f"\nclick ({how}) -> tool running: {latency * 1000:.1f} ms")

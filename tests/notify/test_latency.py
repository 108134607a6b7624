"""Click-to-run latency with the real SDK (Tracer + StepUpClient long-polling `?wait=`) against `thoth serve`.

The SDK's fallback poll interval is set to 30 s, so the tool can only run within the join
timeout if the long-poll wakes on the resolution. The measured figure is printed (run with -s);
bench/bench_approval_latency.py repeats it.
"""

from __future__ import annotations

import httpx
import pytest
from tests.support.notify import Rig
from tests.support.notify import held_call_latency as _held_call_latency


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

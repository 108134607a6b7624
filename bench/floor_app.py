"""The least an enforce answer can cost in Python: the floor `bench_enforce.py --floor` measures.

An ASGI app on the same uvicorn settings as the bare app that parses the request (orjson),
evaluates the bench's 50-rule policy with an in-memory session history, and answers the decision
envelope. It records nothing, scores nothing, checks no key: everything `thoth serve` must do
beyond this (the key, the audit record and its journal, the anomaly score, learning from the
call) only adds to it. If this floor is below a goal, the goal needs native code, not tuning.

usage: python bench/floor_app.py PORT POLICY_FILE
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from thoth.policy import CallContext, SessionHistory, compile_policy
from thoth.server import dataplane
from thoth.server.store import new_id

POLICY = compile_policy(Path(sys.argv[2]).read_text())
HISTORIES: dict[str, SessionHistory] = {}


def decide(body: dict[str, Any]) -> bytes:
    session_id = body["session_id"]
    history = HISTORIES.get(session_id)
    if history is None:
        if len(HISTORIES) > 20_000:
            HISTORIES.clear()
        history = HISTORIES[session_id] = SessionHistory()
    call = CallContext(
        tenant_id=body["tenant_id"], agent_id=body["agent_id"], user_id=body.get("user_id", "system"),
        tool_name=body["tool_name"], tool_args=body.get("tool_args") or {}, approved_scope=body.get("approved_scope"),
        enforcement_mode=body.get("enforcement_mode", "progressive"), environment=body.get("environment", "prod"),
        session_intent=body.get("session_intent"), session_tool_calls=body.get("session_tool_calls"),
    )
    result = POLICY.evaluate(call, history)
    history.record(call.tool_name, call.tool_args, call.now, result.decision.value)
    envelope = result.to_wire()
    envelope.update(decision_id=new_id("dec"), session_id=session_id, enforcement_mode=call.enforcement_mode,
                    violation_id=None, hold_token=None, latency_ms=0.0)
    return orjson.dumps(envelope)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    # The server's own body reading and answer writing (thoth.server.dataplane).
    body = await dataplane.read_body(receive, 1 << 20)
    await dataplane.send_json(send, 200, decide(orjson.loads(body)) if scope["method"] == "POST" else b"{}")


if __name__ == "__main__":
    gc.freeze()  # the server's garbage-collector settings (thoth.server.app)
    gc.set_threshold(10_000, 50, 100)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                log_level="warning", access_log=False)

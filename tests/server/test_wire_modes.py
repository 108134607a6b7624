"""The wire contract's one parser in both modes: a request the server answers 422 raises the same
WireError, with the same message, in-process; and the SDK turns either into the same BLOCK."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.server import Server, tenant

from thoth.components import make_components
from thoth.enforcer_client import EnforcerClient
from thoth.models import DecisionType, ThothConfig
from thoth.policy.local import LocalEnforcer
from thoth.wire import WireError

CALL = {"agent_id": "bot", "tool_name": "search", "session_id": "wire", "approved_scope": ["search"]}
WRONG: list[dict[str, Any]] = [
    {"tool_name": 7}, {"agent_id": None}, {"approved_scope": "search"}, {"sessionToolCalls": [1]},
    {"user_id": ["u"]}, {"session_intent": {"x": 1}}, {"tool_args": "text"}, {"enforcementMode": 1},
]


@pytest.mark.parametrize("change", WRONG)
def test_a_wrong_type_is_the_same_error_in_server_and_local_mode(server: Server, change: dict[str, Any]) -> None:
    body = {**CALL, **change}
    with server.client(server.key(tenant())) as c:
        r = c.post("/v1/enforce", json=body)
    assert r.status_code == 422, r.text
    with pytest.raises(WireError) as info:
        LocalEnforcer().enforce(body)
    assert info.value.status == 422 and info.value.message == r.json()["message"]


def test_camel_case_and_purpose_decide_alike(server: Server) -> None:
    t = tenant()
    camel = {"agentId": "bot", "toolName": "search", "sessionId": "wire-camel", "approvedScope": ["search"],
             "enforcementMode": "block", "purpose": "not an intent"}
    with server.client(server.key(t)) as c:
        remote = c.post("/v1/enforce", json=camel).json()
        outside = c.post("/v1/enforce", json={**camel, "toolName": "delete"}).json()
    local = LocalEnforcer()
    assert remote["decision"] == local.enforce(camel).decision.value == "ALLOW"
    assert outside["decision"] == local.enforce({**camel, "toolName": "delete"}).decision.value == "BLOCK"


def test_the_sdk_blocks_a_refused_request_in_both_modes(server: Server) -> None:
    body = {**CALL, "approved_scope": "search"}
    t = tenant()
    remote = EnforcerClient(ThothConfig(agent_id="bot", tenant_id=t, api_url=server.url, api_key=server.key(t)))
    local = make_components(ThothConfig(agent_id="bot", tenant_id=t, api_url="local")).enforcer  # what the SDK uses
    for client in (remote, local):
        d = client.enforce(body)
        assert d.decision is DecisionType.BLOCK and d.decision_reason_code == "sdk_configuration_error"
        assert "'approved_scope' must be a list of strings" in (d.reason or "")

"""MCP through the real server: tool identity in /v1/enforce (`delete` on two servers told
apart) and POST /v1/mcp/tools (the tools/list filter), with its bad-input answers."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.server import Server, tenant

POLICY = """
version: 1
agents:
  bot: {tools: [delete, search, "files/*"]}
rules:
  - id: no-mail-delete
    when: {tool: mail/delete}
    action: block
    reason: mail is never deleted by agents
  - id: etc-delete
    when: {tool: delete, args: {path: {prefix: /etc}}}
    action: block
"""


def enforce(c: Any, t: str, tool: str, server: str | None, **args: Any) -> dict[str, Any]:
    body = {"tenant_id": t, "agent_id": "bot", "tool_name": tool, "session_id": f"s-{uuid.uuid4().hex[:6]}",
            "enforcement_mode": "block", "tool_args": args}
    if server is not None:
        body["mcp_server"] = server
    r = c.post("/v1/enforce", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_identity_and_tools_endpoint(server: Server) -> None:
    t = tenant()
    with server.client(server.key(t)) as c, server.client(server.key(t, "admin")) as admin:
        assert admin.put("/v1/policies", json={"document": POLICY}).status_code == 200
        mail = enforce(c, t, "delete", "mail", id=3)
        assert mail["decision"] == "BLOCK" and mail["matched_rule_ids"] == ["no-mail-delete"]
        assert enforce(c, t, "delete", "files", id=3)["decision"] == "ALLOW"
        assert enforce(c, t, "delete", None, id=3)["decision"] == "ALLOW"
        for srv in ("files", "mail", None):  # the bare rule reaches every server and the local tool
            assert "etc-delete" in enforce(c, t, "delete", srv, path="/etc/x")["matched_rule_ids"]
        assert enforce(c, t, "read", "files")["decision"] == "ALLOW"  # files/* in the agent's scope
        assert enforce(c, t, "read", "other")["decision"] == "BLOCK"  # out of scope (block mode)

        tools = [{"name": n, "description": f"{n} things", "input_schema": {"type": "object"}}
                 for n in ("delete", "search", "read")]
        r = c.post("/v1/mcp/tools", json={"agent_id": "bot", "mcp_server": "mail", "tools": tools})
        assert r.status_code == 200, r.text
        answer = r.json()["tools"]
        assert [(a["name"], a["visible"], a["pin"]) for a in answer] == [
            ("delete", False, None), ("search", True, None), ("read", False, None)]
        assert answer[0]["reason"] == "mail is never deleted by agents" and "outside" in answer[2]["reason"]
        files = c.post("/v1/mcp/tools", json={"agent_id": "bot", "mcp_server": "files", "session_id": "s",
                                              "tools": tools}).json()["tools"]
        assert [a["visible"] for a in files] == [True, True, True]  # the /etc rule is conditional


def test_tools_endpoint_bad_input(server: Server) -> None:
    t = tenant()
    with server.client(server.key(t)) as c:
        good = {"agent_id": "bot", "mcp_server": "m", "tools": [{"name": "x"}]}
        for body, word in [
            ([], "object"), ({**good, "agent_id": ""}, "agent_id"), ({**good, "mcp_server": 3}, "mcp_server"),
            ({**good, "tools": {"x": 1}}, "tools"), ({**good, "tools": ["x"]}, "tools[0]"),
            ({**good, "tools": [{"name": ""}]}, "name"), ({**good, "tools": [{"name": "x", "description": 1}]},
                                                          "description"),
            ({**good, "tools": [{"name": "x", "input_schema": []}]}, "input_schema"),
            ({**good, "approved_scope": "x"}, "approved_scope"),
        ]:
            r = c.post("/v1/mcp/tools", json=body)
            assert r.status_code == 422 and word in r.json()["message"], (body, r.text)
        assert c.post("/v1/mcp/tools", content=b"{no").status_code == 400
        assert c.get("/v1/mcp/tools").status_code == 405
        foreign = c.post("/v1/mcp/tools", json={**good, "tenant_id": "someone-else"})
        assert foreign.status_code == 403
    with server.client() as anonymous:
        assert anonymous.post("/v1/mcp/tools", json=good).status_code == 401


def test_openapi_documents_the_tools_endpoint(server: Server) -> None:
    with server.client() as c:
        doc = c.get("/openapi.json").json()
    assert "post" in doc["paths"]["/v1/mcp/tools"]
    assert "McpToolsAnswer" in doc["components"]["schemas"]


def test_marker_is_issued_for_allowed_mcp_calls_and_verified_once(server: Server) -> None:
    t, other = tenant(), tenant()
    with server.client(server.key(t)) as c, server.client(server.key(t, "admin")) as admin, \
            server.client(server.key(other)) as stranger:
        assert admin.put("/v1/policies", json={"document": POLICY}).status_code == 200
        allowed = enforce(c, t, "delete", "files", id=3)
        marker = allowed["mcp_marker"]
        assert marker.startswith("v1.")
        assert "mcp_marker" not in enforce(c, t, "delete", "mail", id=3)  # blocked: nothing to skip
        assert "mcp_marker" not in enforce(c, t, "delete", None, id=3)  # a local tool

        def verify(client: Any = c, **change: Any) -> dict[str, Any]:
            body = {"marker": marker, "mcp_server": "files", "tool_name": "delete", "tool_args": {"id": 3}, **change}
            r = client.post("/v1/mcp/verify", json=body)
            assert r.status_code == 200, r.text
            return dict(r.json())

        for change in ({"tool_args": {"id": 4}}, {"tool_name": "search"}, {"mcp_server": "mail"},
                       {"marker": marker[:-2] + "xx"}, {"marker": "forged"}, {"marker": "v1.e30.AAAA"}):
            assert verify(**change)["verified"] is False, change
        assert verify(stranger)["verified"] is False  # another tenant's key
        first = verify()
        assert first["verified"] is True and first["decision_id"] == allowed["decision_id"]
        assert first["agent_id"] == "bot" and first["session_id"] == allowed["session_id"]
        again = verify()
        assert again == {"verified": False, "reason": "the marker was used already"}
        bad = c.post("/v1/mcp/verify", json={"marker": 1, "mcp_server": "f", "tool_name": "d"})
        assert bad.status_code == 422 and "marker" in bad.json()["message"]
        bad = c.post("/v1/mcp/verify", json={"marker": "m", "mcp_server": "f", "tool_name": "d", "tool_args": [1]})
        assert bad.status_code == 422 and "tool_args" in bad.json()["message"]


HELD = """
version: 1
rules:
  - id: deletes-need-a-human
    when: {tool: delete}
    action: step_up
"""


def test_an_approval_covers_only_its_servers_tool(server: Server) -> None:
    t = tenant()
    sid = f"s-{uuid.uuid4().hex[:6]}"
    with server.client(server.key(t)) as c, server.client(server.key(t, "admin")) as admin:
        assert admin.put("/v1/policies", json={"document": HELD}).status_code == 200

        def call(srv: str, **extra: Any) -> dict[str, Any]:
            body = {"tenant_id": t, "agent_id": "bot", "tool_name": "delete", "session_id": sid, "mcp_server": srv,
                    "enforcement_mode": "step_up", "tool_args": {"id": 1}, **extra}
            return dict(c.post("/v1/enforce", json=body).json())

        held = call("files")
        assert held["decision"] == "STEP_UP"
        (approval,) = admin.get("/v1/approvals", params={"status": "pending"}).json()["items"]
        assert admin.post(f"/v1/approvals/{approval['approval_id']}/resolve",
                          json={"decision": "approve", "reason": "ok"}).status_code == 200
        # the same tool name and arguments on another server: not covered, held anew
        other = call("mail", hold_token=held["hold_token"])
        assert other["decision"] == "STEP_UP" and other["hold_token"] != held["hold_token"]
        mine = call("files", hold_token=held["hold_token"])
        assert mine["decision"] == "ALLOW" and mine["mcp_marker"]

"""POST /v1/mcp/tools: which of an MCP server's tools an agent gets to see (docs/mcp.md).

    {"agent_id": "...", "mcp_server": "mail", "session_id": "...",
     "tools": [{"name": "delete", "description": "...", "input_schema": {...}}]}
    -> {"tools": [{"name": "delete", "visible": false, "pin": null, "reason": "..."}]}

`visible` comes from the compiled policy alone (thoth.policy.visibility): one call per
tools/list, never one enforce call per tool. `pin` is the tool-description pin state; see the
single PIN HOOK below.
"""

from __future__ import annotations

from typing import Any

from thoth.policy.visibility import tool_visibility
from thoth.server.core import ClientError, Core
from thoth.server.store import KeyInfo
from thoth.wire import MODES

MAX_TOOLS = 2000
MAX_NAME = 512


def parse_tools_request(body: Any) -> dict[str, Any]:
    """Check the body; raises ClientError(422) with a message for anything malformed."""
    if type(body) is not dict:
        raise ClientError(422, "the request body must be a JSON object")
    for name in ("agent_id", "mcp_server"):
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise ClientError(422, f"'{name}' is required (a non-empty string)")
    for name in ("session_id", "tenant_id", "enforcement_mode"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise ClientError(422, f"'{name}' must be a string")
    scope = body.get("approved_scope")
    if scope is not None and (type(scope) is not list or not all(isinstance(s, str) for s in scope)):
        raise ClientError(422, "'approved_scope' must be a list of strings")
    tools = body.get("tools")
    if type(tools) is not list:
        raise ClientError(422, "'tools' must be a list of {name, description, input_schema}")
    if len(tools) > MAX_TOOLS:
        raise ClientError(422, f"at most {MAX_TOOLS} tools per request")
    for i, tool in enumerate(tools):
        if type(tool) is not dict:
            raise ClientError(422, f"tools[{i}] must be an object")
        tool_name = tool.get("name")
        if not isinstance(tool_name, str) or not tool_name or len(tool_name) > MAX_NAME:
            raise ClientError(422, f"tools[{i}].name must be a non-empty string of at most {MAX_NAME} characters")
        if tool.get("description") is not None and not isinstance(tool["description"], str):
            raise ClientError(422, f"tools[{i}].description must be a string")
        if tool.get("input_schema") is not None and type(tool["input_schema"]) is not dict:
            raise ClientError(422, f"tools[{i}].input_schema must be an object")
    mode = str(body.get("enforcement_mode") or "progressive").strip().lower()
    body["enforcement_mode"] = mode if mode in MODES else "progressive"
    return body


async def tools_answer(core: Core, key: KeyInfo, body: Any) -> dict[str, Any]:
    request = parse_tools_request(body)
    tenant_id = request.get("tenant_id") or key.tenant_id
    if tenant_id != key.tenant_id:
        raise ClientError(403, "tenant_id does not match the API key's tenant")
    policy, _version = await core.policy(tenant_id)
    out: list[dict[str, Any]] = []
    for tool in request["tools"]:
        seen = tool_visibility(policy, agent_id=request["agent_id"], tool_name=tool["name"],
                               mcp_server=request["mcp_server"], approved_scope=request.get("approved_scope"),
                               enforcement_mode=request["enforcement_mode"])
        entry: dict[str, Any] = {"name": tool["name"], "visible": seen.visible, "pin": None}
        if seen.reason:
            entry["reason"] = seen.reason
        out.append(entry)
    # ---- PIN HOOK (issue 17, tool-description pinning) -------------------------------------------
    # The integrator connects thoth.server.mcp_pins.observe(core, tenant_id, request["mcp_server"],
    # request["tools"], out) here: it stores/compares each tool's description and schema and sets
    # entry["pin"] (and may hide a tool held for review). Nothing else in this module changes.
    return {"tools": out}

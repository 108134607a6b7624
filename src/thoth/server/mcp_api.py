"""Control-plane routes of MCP tool pins (docs/mcp.md, "Pinning tool descriptions"):

    GET  /v1/mcp/servers                                   reader: servers and their tools' counts by state
    GET  /v1/mcp/servers/{mcp_server}/tools                reader: each tool, pinned and current side by side
    POST /v1/mcp/pins                                      admin: pin ahead of use ({servers: {NAME: {tools}}})
    POST /v1/mcp/servers/{mcp_server}/tools/{tool}/approve admin: re-pin a tool to what its server says now
"""

# No `from __future__ import annotations`: FastAPI reads these signatures' annotations at run time.
from typing import Annotated, Any

from fastapi import FastAPI, Path
from pydantic import BaseModel, Field

from thoth.server.core import ClientError, Core
from thoth.server.mcp_pins import MAX_NAME, PinError, apply_document

Name = Annotated[str, Path(min_length=1, max_length=MAX_NAME)]


class PinBody(BaseModel):
    tenant_id: str | None = Field(default=None, max_length=200, description="checked against the key's tenant")
    servers: dict[str, Any] = Field(description="{NAME: {tools: [{name, description, input_schema}]}}")


def add_routes(app: FastAPI, core: Core, reader: Any, admin: Any) -> None:
    pins = core.mcp_pins

    @app.get("/v1/mcp/servers", tags=["mcp"])
    def servers(key: reader) -> dict[str, Any]:  # type: ignore[valid-type]
        return {"items": pins.servers(key.tenant_id), "next_cursor": None}

    @app.get("/v1/mcp/servers/{mcp_server}/tools", tags=["mcp"])
    def tools(key: reader, mcp_server: Name) -> dict[str, Any]:  # type: ignore[valid-type]
        found = pins.tools(key.tenant_id, mcp_server)
        if not found:
            raise ClientError(404, "unknown MCP server")
        return {"items": found, "next_cursor": None}

    @app.post("/v1/mcp/pins", tags=["mcp"])
    def pin(key: admin, body: PinBody) -> dict[str, Any]:  # type: ignore[valid-type]
        if body.tenant_id is not None and body.tenant_id != key.tenant_id:
            raise ClientError(403, "tenant_id does not match the API key's tenant")
        try:
            counts = apply_document(pins, {"servers": body.servers}, key.tenant_id, f"key:{key.key_id}")
        except PinError as exc:
            raise ClientError(422, str(exc)) from None
        return {"pinned": counts}

    @app.post("/v1/mcp/servers/{mcp_server}/tools/{tool_name}/approve", tags=["mcp"])
    def approve(key: admin, mcp_server: Name, tool_name: Name) -> dict[str, Any]:  # type: ignore[valid-type]
        try:
            return pins.approve(key.tenant_id, mcp_server, tool_name, f"key:{key.key_id}")
        except LookupError as exc:
            raise ClientError(404, str(exc)) from None
        except PinError as exc:
            raise ClientError(409, str(exc)) from None

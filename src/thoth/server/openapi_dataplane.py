"""OpenAPI of the data plane, written by hand.

`/v1/enforce`, `/v1/enforce/hold/{hold_token}`, `/v1/tasks`, `/v1/mcp/tools`, `/v1/mcp/verify` and `/v1/events/batch` are raw ASGI handlers
(dataplane.py) that FastAPI never sees, so their part of /openapi.json is added here. The
request and event properties are generated from thoth.wire's field tables (the wire contract,
docs/wire.md), so a field added there appears here. Field names are snake_case; the server also
accepts camelCase.
"""

from __future__ import annotations

from typing import Any

from thoth import wire

_STR = {"type": "string"}
_STRS = {"type": "array", "items": {"type": "string"}}
_OBJ = {"type": "object", "additionalProperties": True}
_ERROR = {"$ref": "#/components/schemas/DataPlaneError"}

SCHEMAS: dict[str, Any] = {
    "DataPlaneError": {"type": "object", "properties": {"message": _STR}, "required": ["message"]},
    "EnforceRequest": {
        "type": "object",
        "required": list(wire.ENFORCE_REQUIRED),
        "additionalProperties": True,
        "properties": {
            **wire.schema_properties(wire.ENFORCE_FIELDS),
            "enforcement_mode": {"type": "string", "enum": sorted(wire.MODES)},
            "tool_args": {"type": ["object", "array"], "description": "an array is kept as {\"args\": [...]}"},
            "hold_token": {"description": "re-check of a held call: must be the same call"},
            "purpose": {"description": "carried, not read as session_intent (docs/wire.md)"},
        },
    },
    "Decision": {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "decision": {"type": "string", "enum": list(wire.VERDICTS)},
            "authorization_decision": _STR, "reason": _STR, "decision_reason_code": _STR,
            "violation_id": {"type": ["string", "null"]}, "hold_token": {"type": ["string", "null"]},
            "step_up_timeout_seconds": {"type": ["number", "null"]}, "risk_score": {"type": "number"},
            "latency_ms": {"type": "number"}, "matched_rule_ids": _STRS, "policy_references": _STRS,
            "modified_tool_args": _OBJ, "decision_id": _STR, "session_id": _STR,
            "mcp_marker": {"type": "string", "description": "an allowed MCP call: its marker for a proxy (ADR 0403)"},
        },
    },
    "HoldAnswer": {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "resolved": {"type": "boolean"}, "resolution": {"type": ["string", "null"]}, "decision": _STR,
            "reason": {"type": ["string", "null"]}, "hold_token": _STR, "approval_id": _STR, "status": _STR,
        },
    },
    "Event": {
        "type": "object",
        "required": ["event_id"],
        "additionalProperties": True,
        "properties": {
            **wire.schema_properties(wire.EVENT_FIELDS),
            "event_id": {"type": "string", "maxLength": wire.MAX_EVENT_ID_LENGTH},
        },
    },
    "EventBatch": {
        "oneOf": [
            {"type": "array", "maxItems": wire.MAX_EVENTS_PER_BATCH, "items": {"$ref": "#/components/schemas/Event"}},
            {"type": "object", "required": ["events"], "properties": {
                "events": {"type": "array", "maxItems": wire.MAX_EVENTS_PER_BATCH, "items": {"$ref": "#/components/schemas/Event"}}}},
        ],
    },
    "McpToolsRequest": {
        "type": "object",
        "required": ["agent_id", "mcp_server", "tools"],
        "additionalProperties": True,
        "properties": {
            "agent_id": _STR, "mcp_server": _STR, "session_id": _STR, "tenant_id": _STR,
            "approved_scope": _STRS, "enforcement_mode": {"type": "string", "enum": sorted(wire.MODES)},
            "tools": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": _STR, "description": _STR, "input_schema": _OBJ}}},
        },
    },
    "McpToolsAnswer": {"type": "object", "properties": {"tools": {"type": "array", "items": {
        "type": "object", "required": ["name", "visible", "pin"], "properties": {
            "name": _STR, "visible": {"type": "boolean"}, "reason": _STR,
            "pin": {"description": "the tool-description pin state, or null"}}}}}},
    "McpVerifyRequest": {
        "type": "object", "required": ["marker", "mcp_server", "tool_name"], "additionalProperties": True,
        "properties": {"marker": _STR, "mcp_server": _STR, "tool_name": _STR, "tool_args": _OBJ},
    },
    "McpVerifyAnswer": {"type": "object", "required": ["verified"], "properties": {
        "verified": {"type": "boolean"}, "reason": _STR, "decision_id": _STR, "agent_id": _STR,
        "session_id": _STR, "expires_at": {"type": "number"}}},
    "BatchAnswer": {"type": "object", "properties": {
        "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "status": _STR}},
}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "malformed JSON", 401: "missing or invalid API key", 403: "role or tenant not allowed",
            404: "unknown hold token", 413: "body or batch too large",
            422: f"wrong types, JSON nested deeper than {wire.MAX_JSON_DEPTH} levels, or an event claiming a"
                 " server event type",
            503: "the database is unavailable: retry after the Retry-After header's seconds"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": _ERROR}}} for c in codes}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


PATHS: dict[str, Any] = {
    "/v1/enforce": {"post": {
        "tags": ["data plane"], "summary": "Decide one tool call before it runs", "operationId": "enforce",
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "requestBody": {"required": True, "content": _json("EnforceRequest")},
        "responses": {"200": {"description": "the decision envelope", "content": _json("Decision")},
                      **_errors(400, 401, 403, 404, 413, 422, 503)},
    }},
    "/v1/enforce/hold/{hold_token}": {"get": {
        "tags": ["data plane"], "summary": "Poll a step-up hold (optionally long-poll)", "operationId": "hold",
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "parameters": [
            {"name": "hold_token", "in": "path", "required": True, "schema": _STR},
            {"name": "wait", "in": "query", "required": False,
             "schema": {"type": "number", "minimum": 0, "maximum": 60},
             "description": "seconds to wait for a resolution (at most 60)"},
        ],
        "responses": {"200": {"description": "pending or resolved", "content": _json("HoldAnswer")},
                      **_errors(401, 403, 404, 422, 503)},
    }},
    "/v1/tasks": {"get": {
        "tags": ["data plane"], "summary": "The tenant's task patterns, intents and catalogue (the SDK plans with them)",
        "operationId": "tasks",
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "responses": {"200": {"description": "catalogue, intents, tasks, digest, policy_version (docs/policy.md, "
                                             "'Task plans')",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_errors(401, 403, 503)},
    }},
    "/v1/mcp/tools": {"post": {
        "tags": ["data plane"], "summary": "Which tools of an MCP server an agent may see (tools/list filter)",
        "operationId": "mcp_tools",
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "requestBody": {"required": True, "content": _json("McpToolsRequest")},
        "responses": {"200": {"description": "one entry per tool, in order", "content": _json("McpToolsAnswer")},
                      **_errors(400, 401, 403, 413, 422, 503)},
    }},
    "/v1/mcp/verify": {"post": {
        "tags": ["data plane"], "summary": "Whether an MCP call's Thoth marker is genuine (once; ADR 0403)",
        "operationId": "mcp_verify",
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "requestBody": {"required": True, "content": _json("McpVerifyRequest")},
        "responses": {"200": {"description": "verified or not, with the reason", "content": _json("McpVerifyAnswer")},
                      **_errors(400, 401, 403, 413, 422, 503)},
    }},
    "/v1/events/batch": {"post": {
        "tags": ["data plane"], "summary": "Ingest audit events (idempotent on event_id)",
        "operationId": "ingest_events",
        "security": [{"ApiKey": []}, {"Bearer": []}, {"IngestToken": []}],
        "requestBody": {"required": True, "content": _json("EventBatch")},
        "responses": {"200": {"description": "stored", "content": _json("BatchAnswer")},
                      **_errors(400, 401, 403, 413, 422, 503)},
    }},
}

SECURITY_SCHEMES: dict[str, Any] = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
    "IngestToken": {"type": "apiKey", "in": "header", "name": "X-Thoth-Event-Ingest-Token"},
}


def add_data_plane(schema: dict[str, Any]) -> dict[str, Any]:
    schema.setdefault("paths", {}).update(PATHS)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update(SCHEMAS)
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    return schema

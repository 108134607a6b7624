"""OpenAPI of the data plane, written by hand.

`/v1/enforce`, `/v1/enforce/hold/{hold_token}` and `/v1/events/batch` are raw ASGI handlers
(dataplane.py) that FastAPI never sees, so their part of /openapi.json is added here, following
../shared/contract/wire.md. Field names are snake_case; the server also accepts camelCase.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_STRS = {"type": "array", "items": {"type": "string"}}
_OBJ = {"type": "object", "additionalProperties": True}
_ERROR = {"$ref": "#/components/schemas/DataPlaneError"}

SCHEMAS: dict[str, Any] = {
    "DataPlaneError": {"type": "object", "properties": {"message": _STR}, "required": ["message"]},
    "EnforceRequest": {
        "type": "object",
        "required": ["agent_id", "tool_name"],
        "additionalProperties": True,
        "properties": {
            "agent_id": _STR, "tenant_id": _STR, "user_id": _STR, "tool_name": _STR, "session_id": _STR,
            "session_tool_calls": _STRS, "approved_scope": _STRS,
            "enforcement_mode": {"type": "string", "enum": ["observe", "step_up", "block", "progressive"]},
            "environment": _STR, "enforcement_trace_id": _STR, "tool_args": _OBJ, "session_intent": _STR,
            "tool_call_id": _STR, "call_id": _STR, "action_attestation_id": _STR,
            "hold_token": {"type": "string", "description": "re-check of a held call: must be the same call"},
        },
    },
    "Decision": {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "decision": {"type": "string", "enum": ["ALLOW", "BLOCK", "STEP_UP", "MODIFY", "DEFER"]},
            "authorization_decision": _STR, "reason": _STR, "decision_reason_code": _STR,
            "violation_id": {"type": ["string", "null"]}, "hold_token": {"type": ["string", "null"]},
            "step_up_timeout_seconds": {"type": ["number", "null"]}, "risk_score": {"type": "number"},
            "latency_ms": {"type": "number"}, "matched_rule_ids": _STRS, "policy_references": _STRS,
            "modified_tool_args": _OBJ, "decision_id": _STR, "session_id": _STR,
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
            "event_id": {"type": "string", "maxLength": 300}, "tenant_id": _STR, "agent_id": _STR,
            "session_id": _STR, "user_id": _STR, "source_type": _STR, "event_type": _STR, "content": {},
            "metadata": _OBJ, "approved_scope": _STRS, "enforcement_mode": _STR, "session_tool_calls": _STRS,
            "tool_name": _STR, "endpoint_id": _STR, "hostname": _STR, "occurred_at": _STR,
            "ttl": {"type": "number"}, "violation_id": _STR,
        },
    },
    "EventBatch": {
        "oneOf": [
            {"type": "array", "maxItems": 1000, "items": {"$ref": "#/components/schemas/Event"}},
            {"type": "object", "required": ["events"], "properties": {
                "events": {"type": "array", "maxItems": 1000, "items": {"$ref": "#/components/schemas/Event"}}}},
        ],
    },
    "BatchAnswer": {"type": "object", "properties": {
        "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "status": _STR}},
}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "malformed JSON", 401: "missing or invalid API key", 403: "role or tenant not allowed",
            404: "unknown hold token", 413: "body or batch too large", 422: "wrong types",
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

"""The data-plane wire contract, defined once: the enforce request, the decision envelope, the
hold answer and the audit event (docs/wire.md).

One parser or builder per message, used by every side that speaks it: the server's data plane
(thoth.server.core), the in-process mode (thoth.policy.local via CallContext.from_request), the
SDK's enforcer client and the OpenAPI document (thoth.server.openapi_dataplane, generated from
the field tables below). Standard library only: the SDK imports it without the server extras.

The hot paths (enforce, event ingest) run through here on every call, so this stays plain dicts
and type checks: no models, no per-field objects.

Adding a field (docs/extending.md, "A wire field"): one line in ENFORCE_FIELDS or EVENT_FIELDS
with its kind. The kind decides the type check, the camelCase alias and the OpenAPI schema.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

# ---- kinds of fields -----------------------------------------------------------------------
# STR and STR_LIST are type-checked (a wrong type is a 422); ARGS is the tool's arguments (an
# object, or a list kept as {"args": [...]}); OBJECT must be an object; ANY is carried as sent
# (renamed from camelCase, never checked: published clients send these in shapes we do not own).
STR, STR_LIST, ARGS, OBJECT, NUMBER, ANY = "str", "str_list", "args", "object", "number", "any"

# ---- limits -------------------------------------------------------------------------------
# Deepest nesting of objects/arrays a client body may have (the body itself is level 1). What
# the server stores it re-serializes with orjson, which stops at 255 levels: a deeper body parsed
# fine and then failed at storage (a 500, a lost batch). Tool arguments and event metadata are a
# few levels deep; 64 leaves them room and stays far from orjson's limit. See ADR 0105.
MAX_JSON_DEPTH = 64
DEPTH_MESSAGE = f"JSON nested deeper than {MAX_JSON_DEPTH} levels (objects and arrays)"
MAX_EVENTS_PER_BATCH = 1000
MAX_EVENT_ID_LENGTH = 300
MODES = frozenset({"observe", "step_up", "block", "progressive"})
VERDICTS = ("ALLOW", "BLOCK", "STEP_UP", "MODIFY", "DEFER")

# ---- the enforce request (POST /v1/enforce) ---------------------------------------------------
# `purpose` is NOT an alias of session_intent: atensec-thoth sends both, `purpose` as a separate
# "purpose context for policy/DLP" (docs/wire.md, "purpose"). It is carried, never read as intent.
ENFORCE_FIELDS: dict[str, str] = {
    "agent_id": STR, "tenant_id": STR, "user_id": STR, "tool_name": STR, "session_id": STR,
    "session_tool_calls": STR_LIST, "approved_scope": STR_LIST, "enforcement_mode": STR, "environment": STR,
    "session_intent": STR, "tool_args": ARGS,
    "enforcement_trace_id": ANY, "action_attestation_id": ANY, "tool_call_id": ANY, "call_id": ANY,
    "hold_token": ANY, "identity_binding": ANY, "purpose": ANY, "data_classification": ANY,
    "task_context": ANY, "metadata": ANY, "auth_context": ANY, "delegation_context": ANY,
    # Our SDK's task and argument provenance (docs/wire.md, "The task and argument provenance").
    # Absent (published clients): every argument's provenance is "unknown".
    "task": OBJECT, "arg_sources": OBJECT,
    # The MCP server a tool belongs to (docs/wire.md, "MCP tools"); absent for local tools.
    "mcp_server": STR,
}
ENFORCE_REQUIRED = ("tool_name", "agent_id")
# An explicit id of the call, first found wins: a repeated check of the same call is answered
# with the first answer (never on an implicit key: two identical calls are two calls).
DEDUP_FIELDS = ("tool_call_id", "call_id", "action_attestation_id")

# ---- the audit event (POST /v1/events/batch) ---------------------------------------------------
EVENT_FIELDS: dict[str, str] = {
    "event_id": STR, "tenant_id": STR, "agent_id": STR, "session_id": STR, "user_id": STR,
    "source_type": STR, "event_type": STR, "content": ANY, "metadata": OBJECT, "approved_scope": STR_LIST,
    "enforcement_mode": STR, "session_tool_calls": STR_LIST, "tool_name": STR, "endpoint_id": STR,
    "hostname": STR, "occurred_at": STR, "ttl": NUMBER, "violation_id": STR,
}
# Filled by the server whatever the client sends (a client's value is dropped).
EVENT_SERVER_FIELDS = frozenset({"ingested_at", "chain_index", "hash", "previous_hash", "signature", "ingest_key_id"})
# The server's own records in the chain (the approval loop's APPROVAL_* events, source_type
# "thoth_approval"): a client event may not claim these types, or it would read as the server's.
RESERVED_SOURCE_PREFIX = "thoth_"
RESERVED_EVENT_PREFIX = "APPROVAL_"


class WireError(Exception):
    """A message that breaks the wire contract. `status` is what the server answers (422 for a
    wrong type or a missing field, 403 for a foreign tenant, ...); in-process the same rules
    raise this same exception, with the same message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---- names ------------------------------------------------------------------------------------

def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)


CAMEL_TO_SNAKE = {camel(f): f for f in (*ENFORCE_FIELDS, *EVENT_FIELDS, *EVENT_SERVER_FIELDS)}
_CAMEL_ONLY = frozenset(k for k, v in CAMEL_TO_SNAKE.items() if k != v)


def normalize_keys(body: dict[str, Any]) -> dict[str, Any]:
    """camelCase spellings of known fields become snake_case (snake wins when both are present)."""
    if _CAMEL_ONLY.isdisjoint(body):  # the usual snake_case body: nothing to rename, no copy
        return body
    out = dict(body)
    for key in body:
        name = CAMEL_TO_SNAKE.get(key)
        if name is not None and name != key:
            value = out.pop(key)
            out.setdefault(name, value)
    return out


def deeper_than(value: Any, levels: int) -> bool:
    """True if `value` nests objects/arrays more than `levels` deep: a scalar is 0 deep, {} and
    [1] are 1, [{"a": 1}] is 2. Stops at the first branch too deep; recursion is at most `levels`."""
    kind = type(value)
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    else:
        return False
    if levels <= 0:
        return True
    for item in items:
        kind = type(item)
        if (kind is dict or kind is list) and deeper_than(item, levels - 1):
            return True
    return False


_STR_TYPE = {str}


def _is_str_list(value: Any) -> bool:
    return type(value) is list and set(map(type, value)) <= _STR_TYPE  # C-speed check of every item


# The type-checked request fields, in the order they are checked.
_ENFORCE_STRS = tuple(name for name, kind in ENFORCE_FIELDS.items() if kind == STR)
_ENFORCE_STR_LISTS = tuple(name for name, kind in ENFORCE_FIELDS.items() if kind == STR_LIST)
_ENFORCE_OBJECTS = tuple(name for name, kind in ENFORCE_FIELDS.items() if kind == OBJECT)


@dataclass(slots=True)
class EnforceRequest:
    """One /v1/enforce body, checked and with the protocol's defaults applied. `body` is the
    whole request (snake_case keys): fields the engine does not read yet are carried there."""

    tool_name: str
    agent_id: str
    tenant_id: str | None
    user_id: str
    session_id: str | None
    enforcement_mode: str
    environment: str
    session_intent: str | None
    approved_scope: list[str] | None
    session_tool_calls: list[str] | None
    tool_args: dict[str, Any]
    hold_token: str | None
    dedup_key: str | None
    body: dict[str, Any]


def parse_enforce(body: Any) -> EnforceRequest:
    """THE parser of an enforce request (server and in-process). Raises WireError(422)."""
    if type(body) is not dict:
        raise WireError(422, "the request body must be a JSON object")
    body = normalize_keys(body)
    get = body.get
    for name in _ENFORCE_STRS:
        value = get(name)
        if value is not None and not isinstance(value, str):  # (an in-process caller may pass a StrEnum)
            raise WireError(422, f"'{name}' must be a string")
    for name in _ENFORCE_STR_LISTS:
        value = get(name)
        if value is not None and not _is_str_list(value):
            raise WireError(422, f"'{name}' must be a list of strings")
    for name in _ENFORCE_OBJECTS:
        value = get(name)
        if value is not None and type(value) is not dict:
            raise WireError(422, f"'{name}' must be an object")
    for name in ENFORCE_REQUIRED:
        value = get(name)
        if value is None:
            raise WireError(422, f"'{name}' is required")
        if not value:
            raise WireError(422, f"'{name}' must not be empty")
    tool_args = get("tool_args")
    if tool_args is None:
        tool_args = {}
    elif type(tool_args) is not dict:
        if type(tool_args) is not list:
            raise WireError(422, "'tool_args' must be an object")
        tool_args = {"args": tool_args}
    mode = get("enforcement_mode")
    mode = mode.strip().lower() if mode else "progressive"
    environment = get("environment")
    hold_token = get("hold_token")
    dedup_key = None
    for name in DEDUP_FIELDS:
        value = get(name)
        if value and isinstance(value, str):
            dedup_key = f"{name}:{value}"
            break
    # Positional: this runs on every call, and keywords cost a third more here.
    return EnforceRequest(
        body["tool_name"], body["agent_id"], get("tenant_id") or None, get("user_id") or "system",
        get("session_id") or None, mode if mode in MODES else "progressive",
        environment.strip().lower() if environment else "prod", get("session_intent"), get("approved_scope"),
        get("session_tool_calls"), tool_args, hold_token if isinstance(hold_token, str) else None, dedup_key, body)


# ---- the decision envelope (the 200 answer of /v1/enforce) -----------------------------------------

def decision_envelope(result: Any, risk_score: float | None = None) -> dict[str, Any]:
    """THE builder of the envelope's decision fields from the engine's result (a PolicyDecision).
    Every mode starts here; the server then adds its ids, hold and bookkeeping fields
    (server_fields), the in-process mode its local ids. Runs on every call: attribute reads only."""
    decided = result.decision
    verdict = decided.upper()  # a plain str, also from the engine's DecisionType (a StrEnum)
    envelope: dict[str, Any] = {
        "decision": verdict,
        "authorization_decision": verdict,
        "reason": result.reason,
        "decision_reason_code": result.reason_code,
        "matched_rule_ids": list(result.matched_rule_ids or ()),
        "policy_references": list(result.policy_references or ()),
        "risk_score": result.risk_score if risk_score is None else risk_score,
    }
    would = result.would_decision
    if would is not None and would != decided:
        envelope["would_decision"] = would.upper()
    if verdict == "MODIFY":
        envelope["modified_tool_args"] = result.modified_args
        envelope["modification_reason"] = result.reason
    elif verdict == "DEFER":
        envelope["defer_reason"] = result.reason
        envelope["defer_timeout_seconds"] = result.defer_timeout_seconds
    elif verdict == "STEP_UP":
        envelope["step_up_timeout_seconds"] = result.step_up_timeout_seconds
    if result.flags:
        envelope["flags"] = list(result.flags)
    provenance = getattr(result, "provenance", None)
    if provenance is not None:  # only for our SDK's requests (arg_sources/task), held or blocked
        envelope["provenance"] = provenance
    return envelope


# Published clients validate the answer into a typed model: list fields must be lists (never
# null) and rule_version a whole number or null (docs/conformance.md).
DEFER_TIMEOUT_SECONDS = 300


def server_fields(envelope: dict[str, Any], *, decision_id: str, session_id: str, mode: str,
                  violation_id: str | None, risk_reasons: list[str], policy_version: Any) -> dict[str, Any]:
    """The fields the server adds to decision_envelope's: always present, so that clients see
    one shape. The hold fields are filled later when the call is held."""
    envelope.update(
        violation_id=violation_id,  # also in observe mode: the would-be violation is on record
        hold_token=None, step_up_timeout_seconds=None,
        regulatory_regimes=[], matched_control_ids=[], model_signals=list(risk_reasons),
        decision_id=decision_id, session_id=session_id, enforcement_mode=mode,
        would_decision=envelope.get("would_decision", envelope["decision"]),
        policy_version=policy_version,
        # Published clients accept only an integer or null here (a string makes them block).
        rule_version=policy_version if isinstance(policy_version, int) else None,
    )
    # flags stay in-process: published clients refuse an answer with a list where they expect text.
    envelope.pop("flags", None)
    if envelope["decision"] == "DEFER" and not envelope.get("defer_timeout_seconds"):
        envelope["defer_timeout_seconds"] = DEFER_TIMEOUT_SECONDS
    return envelope


def verdict_of(body: dict[str, Any]) -> Any:
    """The verdict a client reads: `decision`, falling back to `authorization_decision`."""
    return body.get("decision", body.get("authorization_decision"))


# ---- the hold answer (GET /v1/enforce/hold/{token}) ------------------------------------------------

def spent_reason(approval: dict[str, Any]) -> str:
    """Why an approved hold no longer allows its call."""
    ends = approval.get("_valid_until_ts")
    if ends is not None and ends <= time.time():
        return f"the approval was valid until {approval['valid_until']}; the call needs a new approval"
    return f"the approval's {approval['allowed_uses']} use(s) are spent; the call needs a new approval"


def hold_answer(approval: dict[str, Any], usable: bool = True) -> dict[str, Any]:
    """THE builder of the poll's answer; `usable` False: approved, but its use is gone (window
    over, or the uses were spent before this hold's own was taken), so the held call may not run.
    `decision` always equals the resolution once resolved: clients read it before `resolved`."""
    status = approval["status"]
    answer: dict[str, Any] = {
        "hold_token": approval["hold_token"], "approval_id": approval["approval_id"], "status": status,
        "violation_id": approval["violation_id"], "tool_name": approval["tool_name"],
        "expires_at": approval["expires_at"],
    }
    if status == "pending":
        answer.update(resolved=False, resolution=None, decision="STEP_UP", authorization_decision="STEP_UP",
                      reason=approval["request_reason"])
        return answer
    resolution = "ALLOW" if status == "approved" and usable else "BLOCK"
    reason = approval["reason"] or {"approved": "approved", "denied": "denied by approver",
                                    "expired": "approval timed out"}[status]
    if status == "approved" and not usable:
        reason = spent_reason(approval)
    answer.update(resolved=True, resolution=resolution, decision=resolution, authorization_decision=resolution,
                  reason=reason, resolved_by=approval["resolved_by"], resolved_at=approval["resolved_at"])
    return answer


# ---- the event ------------------------------------------------------------------------------------

_EVENT_STRINGS = frozenset(n for n, k in EVENT_FIELDS.items() if k == STR)
_EVENT_STRING_LISTS = frozenset(n for n, k in EVENT_FIELDS.items() if k == STR_LIST)
_EVENT_OBJECTS = frozenset(n for n, k in EVENT_FIELDS.items() if k == OBJECT)
_EVENT_NUMBERS = frozenset(n for n, k in EVENT_FIELDS.items() if k == NUMBER)


def parse_event(i: int, raw: Any, levels: int, tenant_id: str) -> dict[str, Any]:
    """THE validator of one event, in one pass over its fields (this runs per event): types,
    camelCase, server fields dropped, depth (`levels`: how deep its fields' values may nest),
    reserved types, and the tenant (the key's: `tenant_id`). Raises WireError naming event `i`."""
    if not isinstance(raw, dict):
        raise WireError(422, f"event {i} must be a JSON object")
    event: dict[str, Any] = {}
    for name, value in raw.items():
        field: str = CAMEL_TO_SNAKE.get(name) or name
        if field in EVENT_SERVER_FIELDS or (field != name and field in raw):  # snake case wins
            continue
        if value is not None:
            if field in _EVENT_STRINGS:
                if type(value) is not str:
                    raise WireError(422, f"event {i}: '{field}' must be a string")
            elif field in _EVENT_STRING_LISTS:
                if type(value) is not list or not all(type(v) is str for v in value):
                    raise WireError(422, f"event {i}: '{field}' must be a list of strings")
            elif field in _EVENT_OBJECTS:
                if not isinstance(value, dict):
                    raise WireError(422, f"event {i}: '{field}' must be an object")
                if deeper_than(value, levels):
                    raise WireError(422, f"event {i}: {DEPTH_MESSAGE}")
            elif field in _EVENT_NUMBERS and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise WireError(422, f"event {i}: '{field}' must be a number")
            elif (type(value) is dict or type(value) is list) and deeper_than(value, levels):
                raise WireError(422, f"event {i}: {DEPTH_MESSAGE}")  # content, fields we do not know
        event[field] = value
    event_id = event.get("event_id")
    if event_id is None:
        raise WireError(422, f"event {i}: 'event_id' is required")
    if not event_id:
        raise WireError(422, f"event {i}: 'event_id' must not be empty")
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        raise WireError(422, f"event {i}: 'event_id' is too long")
    refuse_reserved(i, event.get("source_type"), event.get("event_type"))
    tenant = event.get("tenant_id")
    if tenant is not None and tenant != tenant_id:
        raise WireError(403, f"event {i}: tenant_id does not match the API key's tenant")
    event["tenant_id"] = tenant_id
    return event


def refuse_reserved(i: int, source_type: str | None, event_type: str | None) -> None:
    if source_type and source_type[:len(RESERVED_SOURCE_PREFIX)].lower() == RESERVED_SOURCE_PREFIX:
        raise WireError(422, f"event {i}: source_type '{RESERVED_SOURCE_PREFIX}*' is reserved for the server's"
                             " own records")
    if event_type and event_type[:len(RESERVED_EVENT_PREFIX)].upper() == RESERVED_EVENT_PREFIX:
        raise WireError(422, f"event {i}: event_type '{RESERVED_EVENT_PREFIX}*' is reserved for the server's"
                             " own approval records")


# ---- OpenAPI schemas, from the tables above ----------------------------------------------------------

_SCHEMA_OF_KIND: dict[str, dict[str, Any]] = {
    STR: {"type": "string"}, STR_LIST: {"type": "array", "items": {"type": "string"}},
    ARGS: {"type": "object", "additionalProperties": True}, OBJECT: {"type": "object", "additionalProperties": True},
    NUMBER: {"type": "number"}, ANY: {},
}


def schema_properties(fields: dict[str, str]) -> dict[str, Any]:
    """JSON-Schema properties of a field table (thoth.server.openapi_dataplane uses this)."""
    return {name: dict(_SCHEMA_OF_KIND[kind]) for name, kind in fields.items()}


# ---- MCP tool identity (docs/wire.md, "MCP tools") ------------------------------------------------
# Every path that governs an MCP tool (thoth.integrations.mcp, the proxy, the Claude Agent SDK
# hook, framework MCP loaders) names it the same way: tool_name = the tool's own name, mcp_server
# = the server's configured name. Policies name a tool `tool` (every server, and local tools) or
# `server/tool` (that server's only): the MCP specification restricts tool names to letters,
# digits, `_`, `-` and `.`, so a slash never belongs to a tool's own name. See ADR 0401.

MCP_SEPARATOR = "/"
# The Claude Agent SDK (and Claude Code) name an MCP tool `mcp__<server>__<tool>`.
CLAUDE_MCP_PREFIX = "mcp__"


def mcp_tool_id(server: str | None, tool: str) -> str:
    """The display and policy id of a tool: `server/tool`, or `tool` for a local tool."""
    return f"{server}{MCP_SEPARATOR}{tool}" if server else tool


def split_mcp_tool_id(name: str) -> tuple[str | None, str]:
    """`server/tool` -> (server, tool); a name without a slash -> (None, name). The server part
    is everything before the last slash (a configured server name may carry one; a tool not)."""
    server, sep, tool = name.rpartition(MCP_SEPARATOR)
    if not sep or not server or not tool:
        return None, name
    return server, tool


def parse_claude_mcp_name(name: str) -> tuple[str | None, str]:
    """`mcp__server__tool` (Claude Agent SDK / Claude Code) -> (server, tool); other names
    (Bash, Write, ...) -> (None, name). The server is up to the first `__` after the prefix: a
    server name with `__` in it cannot be told from a tool name that has one, and tool names
    with `__` are the likelier of the two."""
    if name.startswith(CLAUDE_MCP_PREFIX):
        server, sep, tool = name[len(CLAUDE_MCP_PREFIX):].partition("__")
        if sep and server and tool:
            return server, tool
    return None, name

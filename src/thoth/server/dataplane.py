"""The hot path as raw ASGI: POST /v1/enforce, GET /v1/enforce/hold/{token}, POST /v1/events/batch.

Measured: raw ASGI + orjson serves ~1.6x Starlette and ~3x FastAPI on one core, so the three
routes the SDKs call on every tool call skip the framework entirely.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qs

import orjson

from thoth.server import mcp_marker, mcp_tools
from thoth.server.core import (
    DATA_PLANE_ROLES,
    DEPTH_MESSAGE,
    INGEST_ROLES,
    MAX_JSON_DEPTH,
    ClientError,
    Core,
    deeper_than,
)
from thoth.server.db import RETRY_AFTER, StorageUnavailable, is_unavailable

Scope = dict[str, Any]
_JSON_HEADERS = [(b"content-type", b"application/json")]
HOLD_PREFIX = "/v1/enforce/hold/"
MCP_TOOLS_PATH = "/v1/mcp/tools"
MCP_VERIFY_PATH = "/v1/mcp/verify"


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Any, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_json(send: Any, status: int, payload: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    # With a content-length the server writes the body as is (without one: chunked framing).
    headers = [*_JSON_HEADERS, (b"content-length", b"%d" % len(payload)), *(extra or ())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


UNAVAILABLE_MESSAGE = "the database is unavailable; retry shortly"


async def send_unavailable(send: Any, message: str = UNAVAILABLE_MESSAGE) -> None:
    """503 with Retry-After: the database cannot answer now; the same request may succeed soon."""
    await send_json(send, 503, error_body(message), [(b"retry-after", RETRY_AFTER.encode())])


def error_body(message: str) -> bytes:
    return orjson.dumps({"message": message})


def api_key(scope: Any, ingest: bool = False) -> str | None:
    bearer = None
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                bearer = text[7:].strip()
        elif ingest and name == b"x-thoth-event-ingest-token":
            bearer = bearer or value.decode("latin-1").strip()
    return bearer


def is_data_plane(path: str) -> bool:
    return path in ("/v1/enforce", "/v1/events/batch", "/v1/tasks", MCP_TOOLS_PATH, MCP_VERIFY_PATH) or path.startswith(HOLD_PREFIX)


async def handle(core: Core, scope: Scope, receive: Any, send: Any) -> None:
    path = scope["path"]
    method = scope["method"]
    try:
        if path == "/v1/enforce":
            if method != "POST":
                raise ClientError(405, "use POST")
            key = await core.authorize(api_key(scope), DATA_PLANE_ROLES)
            body = await _json_body(core, receive, check_depth=True)
            await send_json(send, 200, await core.enforce(key, body))
        elif path == "/v1/tasks":  # what the SDK plans a task with (thoth.plan; docs/policy.md "Task plans")
            if method != "GET":
                raise ClientError(405, "use GET")
            key = await core.authorize(api_key(scope), DATA_PLANE_ROLES)
            policy, version = await core.policy(key.tenant_id)
            await send_json(send, 200, task_export_bytes(policy, version))
        elif path == MCP_TOOLS_PATH:  # once per MCP tools/list: which tools the agent may see
            if method != "POST":
                raise ClientError(405, "use POST")
            key = await core.authorize(api_key(scope), DATA_PLANE_ROLES)
            body = await _json_body(core, receive, check_depth=True)
            await send_json(send, 200, orjson.dumps(await mcp_tools.tools_answer(core, key, body)))
        elif path == MCP_VERIFY_PATH:  # a proxy asks whether an MCP call was checked already (ADR 0403)
            if method != "POST":
                raise ClientError(405, "use POST")
            key = await core.authorize(api_key(scope), DATA_PLANE_ROLES)
            body = await _json_body(core, receive, check_depth=True)
            await send_json(send, 200, orjson.dumps(await mcp_marker.verify_answer(core, key, body)))
        elif path == "/v1/events/batch":
            if method != "POST":
                raise ClientError(405, "use POST")
            key = await core.authorize(api_key(scope, ingest=True), INGEST_ROLES)
            body = await _json_body(core, receive)  # nesting: checked per event by Core.ingest
            await send_json(send, 200, orjson.dumps(await core.ingest(key, body)))
        else:
            if method != "GET":
                raise ClientError(405, "use GET")
            key = await core.authorize(api_key(scope), DATA_PLANE_ROLES)
            token = path[len(HOLD_PREFIX):]
            if "\x00" in token:  # never issued; PostgreSQL could not even look it up
                raise ClientError(404, "unknown hold token")
            wait = 0.0
            if scope.get("query_string"):
                values = parse_qs(scope["query_string"].decode("latin-1")).get("wait")
                if values:
                    try:
                        wait = float(values[0])
                    except ValueError:
                        raise ClientError(422, "'wait' must be a number of seconds") from None
                    if wait != wait:  # NaN
                        raise ClientError(422, "'wait' must be a number of seconds")
            await send_json(send, 200, orjson.dumps(await core.hold(key, token, wait)))
    except ClientError as exc:
        core.metrics.http_errors[exc.status] += 1
        await send_json(send, exc.status, error_body(exc.message))
    except BodyTooLarge:
        await send_json(send, 413, error_body(f"request body larger than {core.settings.max_body_bytes} bytes"))
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        # Never a 500 for an outage: a STEP_UP whose hold cannot be stored, a key never seen, an
        # event batch, a hold poll. Decisions of cached tenants do not get here (writer.record).
        core.metrics.http_errors[503] += 1
        await send_unavailable(send, str(exc) if isinstance(exc, StorageUnavailable) else UNAVAILABLE_MESSAGE)


def task_export_bytes(policy: Any, version: Any) -> bytes:
    """The policy's task export as JSON, made once per compiled policy (it is the same for every
    SDK of the tenant until the policy changes)."""
    cached = getattr(policy, "_task_export_bytes", None)
    if cached is None or cached[0] != version:
        export = policy.task_export()
        export["policy_version"] = version
        cached = (version, orjson.dumps(export, default=str))
        with contextlib.suppress(AttributeError):  # a policy object that takes no attributes: made each time
            policy._task_export_bytes = cached
    return cached[1]


async def _json_body(core: Core, receive: Any, check_depth: bool = False) -> Any:
    raw = await read_body(receive, core.settings.max_body_bytes)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ClientError(400, "malformed JSON body") from None
    # PostgreSQL text cannot hold NUL characters (a query with one fails, and the call would
    # answer 500); refuse them up front on every database. One scan of the raw bytes.
    if b"\\u0000" in raw:
        raise ClientError(422, "strings must not contain NUL characters (\\u0000)")
    # Nesting beyond MAX_JSON_DEPTH is refused (core.py says why). A body with no more opening
    # brackets than that cannot be too deep: counting them (C speed) spares most bodies the walk.
    if check_depth and raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and deeper_than(body, MAX_JSON_DEPTH):
        raise ClientError(422, DEPTH_MESSAGE)
    return body

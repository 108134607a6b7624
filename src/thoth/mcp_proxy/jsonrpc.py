"""One JSON-RPC 2.0 message of MCP, as the proxy reads it from a client or an upstream.

The proxy passes messages on as parsed dicts, never through models: a field it does not know
(a newer protocol revision, an extension) reaches the other side unchanged.
"""

from __future__ import annotations

import json
from typing import Any

# A message larger than this is refused before it is parsed (a client cannot make the proxy hold
# or parse an unbounded body). Tool arguments and results of real servers are far below it.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors (-32000 to -32099): the upstream, not the proxy, failed.
UPSTREAM_UNAVAILABLE = -32001
UPSTREAM_TIMEOUT = -32002


class BadMessage(Exception):
    """A message the proxy cannot pass on; `error` is the JSON-RPC error answer for the client."""

    def __init__(self, code: int, message: str, msg_id: Any = None) -> None:
        super().__init__(message)
        self.error = error(msg_id, code, message)


def error(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def parse(raw: bytes | str) -> dict[str, Any]:
    """The message in `raw`, or BadMessage with the answer to send (id null when unknown)."""
    size = len(raw)
    if size > MAX_MESSAGE_BYTES:
        raise BadMessage(INVALID_REQUEST, f"message of {size} bytes is over the proxy's limit of "
                         f"{MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(PARSE_ERROR, f"parse error: not JSON ({exc})") from None
    if isinstance(message, list):
        # JSON-RPC batches were removed from MCP (2025-06-18); no current client sends one.
        raise BadMessage(INVALID_REQUEST, "JSON-RPC batches are not supported by MCP")
    if not isinstance(message, dict):
        raise BadMessage(INVALID_REQUEST, "a JSON-RPC message is an object")
    msg_id = message.get("id")
    if msg_id is not None and (isinstance(msg_id, bool) or not isinstance(msg_id, str | int)):
        raise BadMessage(INVALID_REQUEST, "a JSON-RPC id is a string or an integer")
    if message.get("jsonrpc") != "2.0":
        raise BadMessage(INVALID_REQUEST, 'a JSON-RPC message has "jsonrpc": "2.0"', msg_id)
    method = message.get("method")
    if method is not None and not isinstance(method, str):
        raise BadMessage(INVALID_REQUEST, "a JSON-RPC method is a string", msg_id)
    if method is None and "result" not in message and "error" not in message:
        raise BadMessage(INVALID_REQUEST, "a JSON-RPC message has a method, a result or an error", msg_id)
    params = message.get("params")
    if params is not None and not isinstance(params, dict | list):
        raise BadMessage(INVALID_REQUEST, "JSON-RPC params are an object or an array", msg_id)
    return message


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def is_request(message: dict[str, Any]) -> bool:
    return "method" in message and message.get("id") is not None


def is_response(message: dict[str, Any]) -> bool:
    return "method" not in message and ("result" in message or "error" in message)


def tool_error(msg_id: Any, text: str) -> dict[str, Any]:
    """A tools/call answered with a tool error: the model reads `text` and the agent loop goes on
    (MCP: errors of the tool are results with isError, not protocol errors)."""
    return {"jsonrpc": "2.0", "id": msg_id,
            "result": {"content": [{"type": "text", "text": text}], "isError": True}}

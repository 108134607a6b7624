"""The "already checked by Thoth" marker of an MCP tool call (ADR 0403).

An agent governed in the SDK (thoth.integrations.mcp) may also reach its MCP server through a
Thoth proxy; the call must be checked once, not twice. The server's answer to an allowed MCP
call (`mcp_server` in the enforce request) carries `mcp_marker`; the SDK puts it in the
request's `_meta` ("dev.thoth/decision"); the proxy sends it back with the call it is about to
forward (POST /v1/mcp/verify) and skips its own check only when the server says it is genuine.

    marker = "v1." + base64url(JSON {d: decision id, e: expiry, a: agent, s: session}) + "." + HMAC

The HMAC (SHA-256) covers the payload, the tenant, the MCP server, the tool and the digest of
the allowed arguments, so a marker copied to another tool, server, argument set or tenant fails.
Its key is derived from the server's audit signing key (every process of one deployment shares
that file), so any process verifies any process's marker. A marker is good for MARKER_SECONDS
and once: the verifying process remembers the decision ids it accepted until they expire (a
replay through another process of a multi-process deployment within that window is not caught;
see the ADR).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.hazmat.primitives import serialization

from thoth.wire import WireError as ClientError

if TYPE_CHECKING:
    from thoth.server.core import Core
    from thoth.server.store import KeyInfo

MARKER_SECONDS = 60.0
_MAX_MARKER = 1024
_MAX_REMEMBERED = 100_000


def args_digest(tool_args: Any) -> str:
    return hashlib.sha256(orjson.dumps(tool_args, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


def _key(core: Core) -> bytes:
    key: bytes | None = getattr(core, "_mcp_marker_key", None)
    if key is None:
        raw = core.signer.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                            serialization.NoEncryption())
        key = hashlib.sha256(b"thoth mcp marker v1\x00" + raw).digest()
        core._mcp_marker_key = key  # type: ignore[attr-defined]
    return key


def _mac(core: Core, payload: str, tenant_id: str, server: str, tool: str, digest: str) -> str:
    message = "\x00".join((payload, tenant_id, server, tool, digest)).encode()
    return base64.urlsafe_b64encode(hmac.new(_key(core), message, hashlib.sha256).digest()).decode().rstrip("=")


def issue(core: Core, *, tenant_id: str, decision_id: str, agent_id: str, session_id: str, server: str,
          tool: str, tool_args: Any, now: float) -> str:
    """The marker of an allowed call (enforce's answer, `mcp_marker`)."""
    body = orjson.dumps({"d": decision_id, "e": int(now + MARKER_SECONDS), "a": agent_id, "s": session_id})
    payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
    return f"v1.{payload}.{_mac(core, payload, tenant_id, server, tool, args_digest(tool_args))}"


async def verify_answer(core: Core, key: KeyInfo, body: Any) -> dict[str, Any]:
    """POST /v1/mcp/verify {marker, mcp_server, tool_name, tool_args} -> {verified, reason?, ...}."""
    if type(body) is not dict:
        raise ClientError(422, "the request body must be a JSON object")
    for name in ("marker", "mcp_server", "tool_name"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise ClientError(422, f"'{name}' is required (a non-empty string)")
    args = body.get("tool_args")
    if args is None:
        args = {}
    if type(args) is not dict:
        raise ClientError(422, "'tool_args' must be an object")
    marker: str = body["marker"]
    parts = marker.split(".")
    if len(marker) > _MAX_MARKER or len(parts) != 3 or parts[0] != "v1":
        return {"verified": False, "reason": "not a Thoth marker"}
    payload, mac = parts[1], parts[2]
    expected = _mac(core, payload, key.tenant_id, body["mcp_server"], body["tool_name"], args_digest(args))
    if not hmac.compare_digest(mac, expected):
        return {"verified": False, "reason": "the marker does not match this tenant, server, tool and arguments"}
    try:
        fields = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        decision_id, expires = str(fields["d"]), float(fields["e"])
    except (ValueError, KeyError, TypeError):
        return {"verified": False, "reason": "not a Thoth marker"}
    now = time.time()
    if expires < now:
        return {"verified": False, "reason": "the marker has expired"}
    used: dict[str, float] = core.__dict__.setdefault("_mcp_markers_used", {})
    if decision_id in used:
        return {"verified": False, "reason": "the marker was used already"}
    if len(used) >= _MAX_REMEMBERED:
        for old in [d for d, e in used.items() if e < now]:
            del used[old]
        if len(used) >= _MAX_REMEMBERED:  # never forget an unexpired one: refuse instead (the proxy checks)
            return {"verified": False, "reason": "too many markers in flight"}
    used[decision_id] = expires
    return {"verified": True, "decision_id": decision_id, "agent_id": fields.get("a"),
            "session_id": fields.get("s"), "expires_at": expires}

"""HTTP/1.1 framing shared by the SDK's own sync and async clients (thoth.sync_http, thoth.async_http).

Both speak only what the enforce call, the hold poll and the event batches need: one request at a
time on a keep-alive connection, answers framed by Content-Length, chunked transfer coding or the
end of the connection.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

MAX_BODY_BYTES = 16 * 1024 * 1024  # an enforce verdict is a few hundred bytes; refuse absurd answers
HEAD_END = b"\r\n\r\n"


class TransportFault(Exception):
    """No HTTP answer at all (refused, reset, timed out): an infrastructure fault."""


class FastResponse:
    """The little of an HTTP answer the enforce path needs."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.content = body
        self.headers = headers or {}  # lower-cased names (parse_head)

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def reason_phrase(self) -> str:
        return http.client.responses.get(self.status_code, "")


class StaleConnection(Exception):
    """A kept-alive connection was closed by the server before it answered anything."""


def host_header(host: str, port: int, tls: bool) -> str:
    name = host if ":" not in host else f"[{host}]"  # an IPv6 literal
    return name if port == (443 if tls else 80) else f"{name}:{port}"


def encode_request(method: str, target: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    """The request's bytes; ValueError for a header that would break the framing or is not latin-1."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of an answer's head (status line to the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


def framing(status: int, headers: dict[str, str], head_only: bool) -> tuple[str, int]:
    """How the body is delimited: ("none", 0), ("chunked", 0), ("length", n) or ("close", 0)."""
    if head_only or status in (204, 304):
        return "none", 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked", 0
    length = headers.get("content-length")
    if length is not None:
        size = int(length)
        if size < 0 or size > MAX_BODY_BYTES:
            raise ValueError(f"bad Content-Length {length!r}")
        return "length", size
    return "close", 0


def chunk_size(line: bytes) -> int:
    size = int(line.split(b";", 1)[0].strip(), 16)  # chunk extensions are ignored
    if size < 0:
        raise ValueError("malformed chunk size")
    return size


def keeps_alive(headers: dict[str, str]) -> bool:
    return headers.get("connection", "").lower() != "close"

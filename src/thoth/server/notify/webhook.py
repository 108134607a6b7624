"""Generic webhook channel: a signed JSON POST, retried with exponential backoff.

Retried: connection errors, timeouts, 408, 429 and 5xx. Not retried: other 4xx (the receiver
refused the message; retrying would not change its mind). Headers: see `signing`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson

from thoth.server.notify.config import Channel
from thoth.server.notify.signing import SIGNATURE_HEADER, sign_webhook

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


async def deliver(client: httpx.AsyncClient, channel: Channel, event: str,
                  payload: dict[str, Any]) -> tuple[bool, int, str | None]:
    """-> (delivered, attempts, last error)."""
    body = orjson.dumps(payload, default=str)
    delivery = f"dlv_{uuid.uuid4().hex}"
    error: str | None = None
    attempt = 0
    for attempt in range(1, max(1, channel.max_attempts) + 1):
        headers = {"content-type": "application/json", "user-agent": "thoth-webhook/1",
                   "x-thoth-event": event, "x-thoth-delivery": delivery,
                   SIGNATURE_HEADER: sign_webhook(channel.secret, body)}  # fresh timestamp per attempt
        try:
            resp = await client.post(channel.url, content=body, headers=headers, timeout=channel.timeout_seconds)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if resp.status_code < 300:
                return True, attempt, None
            error = f"HTTP {resp.status_code}: {resp.text[:200]}"
            if resp.status_code not in RETRY_STATUSES:
                return False, attempt, error
        if attempt < channel.max_attempts:
            await asyncio.sleep(channel.backoff_seconds * (2 ** (attempt - 1)))
    return False, attempt, error

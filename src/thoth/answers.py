"""What an HTTP answer says, whichever client carried it: error text, Retry-After, retry pauses.

Below thoth.http and thoth.transport (both read answers), so neither has to import the other.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from datetime import UTC
from typing import Any

import httpx

from thoth.http1 import FastResponse

Response = FastResponse | httpx.Response  # status_code, headers, json(), text, reason_phrase

# "Come back later": the server did not act on the request (overload shedding, rate limit), so
# asking again is safe. Other 5xx may come after the server acted (a recorded decision) and are not retried.
RETRY_STATUSES = frozenset({429, 503})
_RETRY_MARGIN_SECONDS = 0.02  # a retry needs at least this much of the deadline left to be worth sending


def error_message(response: Any) -> str:
    """The human-readable part of an error body (wire.md: first of message, error_description...)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error_description", "error", "reason", "detail"):
            if body.get(key):
                return str(body[key])[:500]
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase


def retry_after(response: Response) -> float | None:
    """Seconds the answer's Retry-After asks to wait (delta-seconds or an HTTP-date), or None."""
    value = (response.headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()  # an HTTP-date is wall-clock time
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_pause(response: Response, deadline: float, attempt: int) -> float | None:
    """How long to wait before asking again, or None: not a 429/503, or no retry fits before
    `deadline` (time.monotonic()). A Retry-After longer than what is left means no retry at all (the
    server said it will not answer in time); without one, a jittered backoff (25-50 ms, doubling
    up to 1 s) that ends before the deadline. Never less than the backoff: Retry-After: 0 must not
    become a busy loop."""
    if response.status_code not in RETRY_STATUSES:
        return None
    left = deadline - time.monotonic() - _RETRY_MARGIN_SECONDS
    if left <= 0:
        return None
    backoff = min(0.05 * 2 ** attempt, 1.0) * random.uniform(0.5, 1.0)
    asked = retry_after(response)
    if asked is not None and asked > left:
        return None
    return min(max(asked or 0.0, backoff), left)

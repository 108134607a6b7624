"""Audit events to POST /v1/events/batch, off the agent's critical path.

`HttpEmitter` is a light handle; the work is done by one `EventTransport` (one daemon thread,
one bounded queue) per (url, key) per process. Batches hold at most 10 events and are sent as a
bare JSON array. Each attempt ends within `send_timeout_seconds`, however slowly the server
answers. Transient failures (connection errors, timeouts, 408/429/5xx) are retried with
backoff, or after the server's Retry-After, until `max_retry_seconds`; only a full queue, a
permanent refusal (other 4xx) or that final give-up drop events. `sent` and `dropped` count
events (not queue items: a job that builds events counts only the events it made), `batches`
the batches delivered.

The transport also runs small background jobs (observe mode's enforce call) in queue order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thoth.http import get_endpoint
from thoth.models import LOCAL_API_URL
from thoth.tls import TlsFiles
from thoth.transport import (  # noqa: F401  (EventTransport and the constants are this module's names too)
    BATCH_SIZE,
    LINGER_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    QUEUE_SIZE,
    SEND_TIMEOUT_SECONDS,
    EventTransport,
    Job,
)

__all__ = ["EventTransport", "HttpEmitter", "Job"]


class HttpEmitter:
    """`HttpEmitter(api_url=..., api_key=...)`: queue events for the shared transport."""

    def __init__(self, api_url: str, api_key: str | None = None, tls: TlsFiles | None = None) -> None:
        if not api_url:
            raise ValueError("HttpEmitter needs api_url (or set THOTH_API_URL)")
        if api_url.strip() == LOCAL_API_URL:
            raise ValueError("api_url='local' has no HTTP server; use thoth.policy.local.LocalEventSink")
        self.endpoint = get_endpoint(api_url.strip(), api_key, tls)  # tls None: THOTH_CLIENT_CERT etc.

    @property
    def transport(self) -> EventTransport:
        return self.endpoint.transport

    def emit(self, event: dict[str, Any]) -> None:
        self.transport.put(event)

    def emit_later(self, build: Callable[[], dict[str, Any]]) -> None:
        """Queue an event that `build()` makes on the event thread (off the governed call)."""
        self.transport.put(lambda: [build()])

    def submit(self, job: Job) -> None:
        """Run `job` on the event thread, in order with events; the events it returns are sent."""
        self.transport.put(job)

    def flush(self, timeout: float = 5.0) -> bool:
        return self.transport.flush(timeout)

    @property
    def dropped(self) -> int:
        """Events lost to a full queue, a permanent refusal or a final delivery failure."""
        return self.transport.dropped

    @property
    def sent(self) -> int:
        """Events delivered (every emitter of this server and key shares the count)."""
        return self.transport.sent

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

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from thoth.http import Endpoint, Response, TransportFault, error_message, get_endpoint, retry_after
from thoth.models import LOCAL_API_URL

log = logging.getLogger("thoth")

BATCH_SIZE = 10
QUEUE_SIZE = 10_000
LINGER_SECONDS = 0.05
SEND_TIMEOUT_SECONDS = 10.0
MAX_RETRY_AFTER_SECONDS = 60.0  # a longer Retry-After waits this long, then asks again
Job = Callable[[], list[dict[str, Any]] | None]


def _stop_job() -> None:
    return None


_STOP: Job = _stop_job  # sentinel: ends the worker thread


class EventTransport:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        max_queue: int = QUEUE_SIZE,
        max_retry_seconds: float = 900.0,
        max_backoff_seconds: float = 5.0,
        send_timeout_seconds: float = SEND_TIMEOUT_SECONDS,
    ) -> None:
        self.endpoint = endpoint
        self.max_retry_seconds = max_retry_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.send_timeout_seconds = send_timeout_seconds
        self._queue: queue.Queue[dict[str, Any] | Job] = queue.Queue(maxsize=max_queue)
        self._cond = threading.Condition()
        self._pending = 0  # items queued or in flight, not yet sent or dropped
        self._wake = threading.Event()
        self._flushing = 0
        self._stopping = False
        self.dropped = 0  # events
        self.sent = 0  # events delivered
        self.batches = 0  # batches delivered
        self._thread = threading.Thread(target=self._run, name="thoth-events", daemon=True)
        self._thread.start()

    # Producer side (agent threads) ---------------------------------------------------------------
    def put(self, item: dict[str, Any] | Job) -> bool:
        with self._cond:
            self._pending += 1
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self._finish(1, dropped=True)  # a job is counted as the one event it would have made
            log.warning("Thoth event queue is full (%d); event dropped", self._queue.maxsize)
            return False

    @property
    def pending(self) -> int:
        return self._pending

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event is sent (or dropped). True if the queue drained."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            try:
                while self._pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._wake.set()  # cut a retry backoff short
                    self._cond.wait(min(remaining, 0.05))
                return True
            finally:
                self._flushing -= 1

    def stop(self) -> None:
        """End the worker thread; events still queued after a final attempt are dropped."""
        self._stopping = True
        self._wake.set()
        with self._cond:
            self._pending += 1
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            self._finish(1, sent=False)

    # Worker side ---------------------------------------------------------------------------------
    def _finish(self, count: int, *, dropped: bool = False, sent: bool = True) -> None:
        """`count` queue items are done: events sent or dropped, or (sent=False) jobs and the stop."""
        with self._cond:
            self._pending -= count
            if dropped:
                self.dropped += count
            elif sent:
                self.sent += count
            self._cond.notify_all()

    def _run(self) -> None:
        backlog: deque[dict[str, Any]] = deque()  # events taken off the queue, not yet sent
        while True:
            if not backlog:
                first = self._queue.get()  # sleep until there is something to send
                if self._queue.qsize() < BATCH_SIZE - 1 and not (self._flushing or self._stopping):
                    # Let a batch fill up without being woken by every event (a put does not end
                    # this wait; a flush or stop does): one wake-up and one POST per ten events
                    # keeps this thread from competing with the agent's threads for the GIL.
                    self._wake.wait(LINGER_SECONDS)
                    self._wake.clear()
                if self._take(first, backlog):
                    return
            while len(backlog) < BATCH_SIZE:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if self._take(item, backlog):
                    return
            batch = [backlog.popleft() for _ in range(min(BATCH_SIZE, len(backlog)))]
            if batch:
                self._send(batch)

    def _take(self, item: dict[str, Any] | Job, backlog: deque[dict[str, Any]]) -> bool:
        """Move one queue item into the backlog (running a job for its events); True on stop."""
        if item is _STOP:
            while backlog:
                self._send([backlog.popleft() for _ in range(min(BATCH_SIZE, len(backlog)))])
            self._finish(1, sent=False)
            return True
        if isinstance(item, dict):
            backlog.append(item)
        else:
            produced = self._run_job(item)
            with self._cond:
                self._pending += len(produced)
            backlog.extend(produced)
            self._finish(1, sent=False)  # the job itself; its events count when they are sent
        return False

    @staticmethod
    def _run_job(job: Job) -> list[dict[str, Any]]:
        try:
            return list(job() or [])
        except Exception:  # noqa: BLE001 - a job must never kill the event thread
            log.exception("Thoth background job failed")
            return []

    def _send(self, batch: list[dict[str, Any]]) -> None:
        fail_opens = self.endpoint.take_fail_opens()
        if fail_opens:
            # The server learns about decisions made without it (documented in docs/sdk.md).
            meta = batch[0].setdefault("metadata", {})
            meta["sdk_fail_open_count"] = fail_opens
            meta["sdk_fail_open_total"] = self.endpoint.fail_open_total
        if self.dropped:
            batch[0].setdefault("metadata", {})["sdk_dropped_events_total"] = self.dropped
        body = json.dumps(batch, separators=(",", ":"), default=str).encode()
        backoff = 0.05
        first_failure: float | None = None
        while True:
            problem: str
            response: Response | None = None
            try:
                # The own client without a proxy: a third of httpx's CPU, less contention with the agent's thread.
                response = self.endpoint.send("POST", "/v1/events/batch", body, timeout=self.send_timeout_seconds)
            except TransportFault as exc:
                problem = str(exc)
            else:
                status = response.status_code
                if status < 300:
                    self.batches += 1
                    self._finish(len(batch))
                    return
                if status not in (408, 429) and status < 500:
                    log.error(
                        "Thoth refused %d audit events (%d): %s. Check THOTH_API_KEY and the tenant.",
                        len(batch), status, error_message(response),
                    )
                    self._finish(len(batch), dropped=True)
                    return
                problem = f"HTTP {status}"
            now = time.monotonic()
            if first_failure is None:
                first_failure = now
                log.warning("Thoth event delivery failed (%s); retrying with backoff", problem)
            if now - first_failure >= self.max_retry_seconds or self._stopping:
                log.error("Thoth gave up on %d audit events after %.0f s: %s",
                          len(batch), now - first_failure, problem)
                self._finish(len(batch), dropped=True)
                return
            asked = retry_after(response) if response is not None else None
            if asked is not None:
                self._wait_retry_after(max(asked, backoff))
            else:
                self._wake.wait(backoff if not self._flushing else min(backoff, 0.1))  # a flush cuts it short
                self._wake.clear()
            backoff = min(backoff * 2, self.max_backoff_seconds)

    def _wait_retry_after(self, seconds: float) -> None:
        """Wait as the server asked, up to MAX_RETRY_AFTER_SECONDS; a flush does not cut it short
        (asking sooner would only be refused again), stop does."""
        end = time.monotonic() + min(seconds, MAX_RETRY_AFTER_SECONDS)
        while not self._stopping and (left := end - time.monotonic()) > 0:
            self._wake.wait(left)
            self._wake.clear()


class HttpEmitter:
    """`HttpEmitter(api_url=..., api_key=...)`: queue events for the shared transport."""

    def __init__(self, api_url: str, api_key: str | None = None) -> None:
        if not api_url:
            raise ValueError("HttpEmitter needs api_url (or set THOTH_API_URL)")
        if api_url.strip() == LOCAL_API_URL:
            raise ValueError("api_url='local' has no HTTP server; use thoth.policy.local.LocalEventSink")
        self.endpoint = get_endpoint(api_url.strip(), api_key)

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

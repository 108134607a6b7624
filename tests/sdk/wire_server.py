"""A small real HTTP server that speaks docs' wire contract (shared/contract/wire.md), for SDK tests.

Threaded, loopback only, free port. Scriptable: per-tool decisions, holds resolved by the test,
failure injection, and stop()/start() on the same port with its stored state kept, like a real
server restarting on the same database. The real `thoth serve` can replace it for tests that
only use `url`, `api_key`, `tenant_id`, `events`, `event_ids()` and `enforce_requests`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.ports import free_port

Decision = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a production server would
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle adds ~40 ms per answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.wire.track(self.connection)

    def finish(self) -> None:
        super().finish()
        self.server.wire.untrack(self.connection)

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return _BAD

    def _tenant(self) -> str | None:
        key = self.headers.get("x-api-key")
        auth = self.headers.get("authorization", "")
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:]
        return self.server.wire.keys.get(key or "")

    def do_POST(self) -> None:
        wire = self.server.wire
        body = self._body()
        path = urlsplit(self.path).path
        wire.hits[path] = wire.hits.get(path, 0) + 1
        injected = wire.take_failure(path)
        if injected is not None:
            status, delay = injected
            if delay:
                time.sleep(delay)
            if status:
                return self._reply(status, {"message": f"injected failure {status}"})
        tenant = self._tenant()
        if tenant is None:
            return self._reply(401, {"message": "missing or unknown API key"})
        if body is _BAD:
            return self._reply(400, {"message": "body is not JSON"})
        if path == "/v1/enforce":
            if not isinstance(body, dict):
                return self._reply(400, {"message": "expected a JSON object"})
            if body.get("tenant_id") != tenant:
                return self._reply(403, {"message": "tenant_id does not match the API key"})
            return self._reply(200, wire.decide(body))
        if path == "/v1/events/batch":
            events = body.get("events") if isinstance(body, dict) else body
            if not isinstance(events, list):
                return self._reply(400, {"message": "expected an array of events"})
            wire.store(events)
            return self._reply(200, {"accepted": len(events)})
        return self._reply(404, {"message": f"no route {path}"})

    def do_GET(self) -> None:
        wire = self.server.wire
        parts = urlsplit(self.path)
        prefix = "/v1/enforce/hold/"
        if not parts.path.startswith(prefix):
            return self._reply(404, {"message": "no such route"})
        wire.hits["hold"] = wire.hits.get("hold", 0) + 1
        if self._tenant() is None or not self.headers.get("authorization", "").startswith("Bearer "):
            return self._reply(401, {"message": "hold poll needs a Bearer key"})
        token = parts.path[len(prefix):]
        wait = float(parse_qs(parts.query).get("wait", ["0"])[0] or 0) if wire.long_poll else 0.0
        status = wire.hold_status(token, min(wait, 30.0))
        if status is None:
            return self._reply(404, {"message": "unknown hold token"})
        return self._reply(200, status)


_BAD = object()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the stdlib default (5) refuses bursts of concurrent clients
    wire: WireServer


class WireServer:
    def __init__(self, tenant_id: str = "acme-corp", api_key: str = "thoth_test_key") -> None:
        self.tenant_id = tenant_id
        self.api_key = api_key
        self.keys = {api_key: tenant_id}
        self.port = free_port()
        self.long_poll = True
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._failures: dict[str, list[tuple[int, float]]] = {}
        self.scripts: dict[str, list[Decision]] = {}
        self.holds: dict[str, dict[str, Any]] = {}
        self.enforce_requests: list[dict[str, Any]] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.event_posts = 0
        self.batch_sizes: list[int] = []
        self.hits: dict[str, int] = {}

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Lifecycle -----------------------------------------------------------------------------------
    def start(self) -> WireServer:
        for _ in range(50):  # the port can take a moment to be free again after stop()
            try:
                httpd = _HTTPServer(("127.0.0.1", self.port), _Handler)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"port {self.port} did not become free")
        httpd.wire = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open (keep-alive) connection, like a crashed server."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self._cond:
            self._cond.notify_all()

    def track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

    # Scripting -----------------------------------------------------------------------------------
    def script(self, tool_name: str, *decisions: Decision) -> None:
        """Answer the next enforce calls for `tool_name` with these envelopes (the last one sticks)."""
        self.scripts[tool_name] = list(decisions)

    def fail(self, path: str, status: int = 0, times: int = 1, delay: float = 0.0) -> None:
        """Make the next `times` requests to `path` answer `status` (after `delay` seconds)."""
        with self._lock:
            self._failures.setdefault(path, []).extend([(status, delay)] * times)

    def take_failure(self, path: str) -> tuple[int, float] | None:
        with self._lock:
            queue = self._failures.get(path)
            return queue.pop(0) if queue else None

    def resolve(self, token: str, resolution: str, **extra: Any) -> None:
        with self._cond:
            self.holds[token].update(resolved=True, resolution=resolution, decision=resolution, **extra)
            self._cond.notify_all()

    # Wire behaviour ------------------------------------------------------------------------------
    def decide(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.enforce_requests.append(request)
            queue = self.scripts.get(request["tool_name"])
            scripted = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else None
        if scripted is not None:
            envelope = dict(scripted(request) if callable(scripted) else scripted)
        else:
            envelope = self._default_policy(request)
        verdict = envelope.setdefault("decision", "ALLOW")
        envelope.setdefault("authorization_decision", verdict)
        envelope.setdefault("latency_ms", 0.1)
        if verdict in ("BLOCK", "STEP_UP") and "violation_id" not in envelope:
            envelope["violation_id"] = f"vio_{uuid.uuid4().hex[:12]}"
        if verdict == "STEP_UP" and envelope.get("hold_token") == "":  # scripted "no token"
            envelope.pop("hold_token", None)
        elif verdict == "STEP_UP" and "hold_token" not in envelope:
            envelope["hold_token"] = f"hold_{uuid.uuid4().hex}"
        if envelope.get("hold_token"):
            with self._lock:
                self.holds[envelope["hold_token"]] = {
                    "resolved": False, "resolution": None, "decision": "STEP_UP",
                    "violation_id": envelope.get("violation_id"),
                }
        return envelope

    @staticmethod
    def _default_policy(request: dict[str, Any]) -> dict[str, Any]:
        """The seed's semantics: out of scope blocks (or steps up); observe only records."""
        in_scope = request["tool_name"] in request.get("approved_scope", [])
        mode = request.get("enforcement_mode")
        if in_scope:
            return {"decision": "ALLOW", "reason": "in approved scope"}
        reason = f"tool '{request['tool_name']}' is outside the approved scope"
        if mode == "observe":
            return {"decision": "ALLOW", "would_decision": "BLOCK", "reason": reason,
                    "decision_reason_code": "policy_scope_violation"}
        if mode == "step_up":
            return {"decision": "STEP_UP", "reason": reason, "decision_reason_code": "step_up_scope"}
        return {"decision": "BLOCK", "reason": reason, "decision_reason_code": "policy_scope_violation"}

    def hold_status(self, token: str, wait: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                hold = self.holds.get(token)
                if hold is None:
                    return None
                remaining = deadline - time.monotonic()
                if hold["resolved"] or remaining <= 0 or self._httpd is None:
                    return dict(hold)
                self._cond.wait(remaining)

    def store(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self.event_posts += 1
            self.batch_sizes.append(len(events))
            for event in events:
                self.events.setdefault(event["event_id"], event)  # idempotent on event_id

    # Queries -------------------------------------------------------------------------------------
    def event_ids(self) -> set[str]:
        with self._lock:
            return set(self.events)

    def events_of(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events.values() if e["event_type"] == event_type]


def delivered(server: WireServer, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """Flush the SDK's queue for this server and return the server's stored events."""
    from thoth.http import get_endpoint

    assert get_endpoint(server.url, server.api_key).transport.flush(timeout), "events not delivered in time"
    return dict(server.events)

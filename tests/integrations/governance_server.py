"""A small HTTP server speaking Thoth's data-plane wire contract, for the framework tests.

It decides by tool name (BLOCK for `block`, STEP_UP for `step_up` with a reviewer answer that
arrives on the second poll, ALLOW otherwise), counts every /v1/enforce call and keeps every
event. Its answers follow /work/shared/contract/wire.md, so the SDK talks to it exactly as it
talks to `thoth serve`; tests use it where they need to count what a real server cannot show.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GovernanceServer:
    def __init__(
        self,
        *,
        block: set[str] | None = None,
        step_up: dict[str, str] | None = None,
        api_key: str = "thoth_test_key",
    ) -> None:
        self.block = set(block or ())
        self.step_up = dict(step_up or {})  # tool -> reviewer's answer: "ALLOW" or "BLOCK"
        self.api_key = api_key
        self.enforce_requests: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.polls: Counter[str] = Counter()
        self._holds: dict[str, tuple[str, str]] = {}  # token -> (tool, answer)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> GovernanceServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> GovernanceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # what tests look at ---------------------------------------------------------------------
    def enforce_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(r.get("tool_name", "") for r in self.enforce_requests)

    def event_types(self, tool_name: str | None = None) -> list[str]:
        with self._lock:
            return [e.get("event_type", "") for e in self.events if tool_name in (None, e.get("tool_name"))]

    def reset(self) -> None:
        with self._lock:
            self.enforce_requests.clear()
            self.events.clear()
            self.polls.clear()

    # decisions ------------------------------------------------------------------------------
    def decide(self, request: dict[str, Any]) -> dict[str, Any]:
        tool = str(request.get("tool_name", ""))
        with self._lock:
            self.enforce_requests.append(request)
        if tool in self.block:
            return _envelope("BLOCK", f"{tool} is not allowed here", "policy_block", violation_id=_vid())
        if tool in self.step_up:
            token = uuid.uuid4().hex
            with self._lock:
                self._holds[token] = (tool, self.step_up[tool])
            return _envelope("STEP_UP", f"{tool} needs a reviewer", "step_up_required", violation_id=_vid(),
                             hold_token=token, step_up_timeout_seconds=30)
        return _envelope("ALLOW", "within policy", "policy_allow")

    def poll(self, token: str) -> dict[str, Any] | None:
        with self._lock:
            if token not in self._holds:
                return None
            self.polls[token] += 1
            tool, answer = self._holds[token]
            first = self.polls[token] == 1
        if first:  # the reviewer has not answered yet
            return {"resolved": False, "resolution": None, "decision": "STEP_UP", "hold_token": token}
        reason = "approved by reviewer" if answer == "ALLOW" else "denied by reviewer"
        return {"resolved": True, "resolution": answer, "decision": answer, "authorization_decision": answer,
                "reason": reason, "hold_token": token, "violation_id": None}


def _vid() -> str:
    return f"vio_{uuid.uuid4().hex[:12]}"


def _envelope(decision: str, reason: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"decision": decision, "authorization_decision": decision, "reason": reason,
            "decision_reason_code": code, "risk_score": 0.0, "latency_ms": 0.1,
            "matched_rule_ids": [], "policy_references": [], **extra}


def _handler_for(server: GovernanceServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _authorized(self) -> bool:
            key = self.headers.get("x-api-key") or (self.headers.get("authorization") or "").removeprefix("Bearer ")
            if key.strip() == server.api_key:
                return True
            self._json(401, {"message": "missing or unknown API key"})
            return False

        def _body(self) -> Any:
            length = int(self.headers.get("content-length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            try:
                body = self._body()
            except ValueError:
                return self._json(400, {"message": "body is not JSON"})
            path = self.path.split("?", 1)[0]
            if path == "/v1/enforce" and isinstance(body, dict):
                return self._json(200, server.decide(body))
            if path == "/v1/events/batch":
                events = body.get("events") if isinstance(body, dict) else body
                if not isinstance(events, list):
                    return self._json(400, {"message": "expected a list of events"})
                with server._lock:
                    server.events.extend(e for e in events if isinstance(e, dict))
                return self._json(200, {"accepted": len(events)})
            self._json(404, {"message": f"no route {self.path}"})

        def do_GET(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            path = self.path.split("?", 1)[0]
            if path.startswith("/v1/enforce/hold/"):
                answer = server.poll(path.rsplit("/", 1)[1])
                if answer is None:
                    return self._json(404, {"message": "unknown hold token"})
                return self._json(200, answer)
            if path in ("/health", "/healthz"):
                return self._json(200, {"status": "ok"})
            self._json(404, {"message": f"no route {self.path}"})

        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler

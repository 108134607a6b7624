"""Local stand-ins for what no test can reach: Slack's Web API, a webhook receiver, an SMTP server.

Each is a real server on a free 127.0.0.1 port, spoken to by the real client (slack-sdk's
WebClient, httpx, smtplib). The webhook receiver checks the HMAC itself, from the documented
scheme, not with our signing module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socketserver
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from .ports import free_port


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SlackStub(_Server):
    """Answers chat.postMessage and chat.update like Slack; channels in `fail_channels` get ok=false."""

    def __init__(self, fail_channels: tuple[str, ...] = ()) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_channels = fail_channels
        self._ts = 1000
        self.lock = threading.Lock()
        super().__init__(_SlackHandler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def posted(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["method"] == method]


class _SlackHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        stub: SlackStub = self.server.owner  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if "json" in (self.headers.get("content-type") or ""):
            body = json.loads(raw)
        else:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            if isinstance(body.get("blocks"), str):
                body["blocks"] = json.loads(body["blocks"])
        method = self.path.rsplit("/", 1)[-1]
        with stub.lock:
            stub._ts += 1
            ts = f"{stub._ts}.000100"
            stub.calls.append({"method": method, "body": body, "auth": self.headers.get("authorization"), "ts": ts})
        if self.headers.get("authorization") != "Bearer xoxb-test-token":
            answer: dict[str, Any] = {"ok": False, "error": "invalid_auth"}
        elif body.get("channel") in stub.fail_channels:
            answer = {"ok": False, "error": "channel_not_found"}
        else:
            answer = {"ok": True, "channel": body.get("channel"), "ts": body.get("ts") or ts}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class WebhookReceiver(_Server):
    """Verifies X-Thoth-Signature (t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>); fails the
    first `fail_first` deliveries of each approval with 503 to exercise the retries."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.received: list[dict[str, Any]] = []  # every delivery attempt, with its verdict
        self.lock = threading.Lock()
        super().__init__(_HookHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def verified(self, event: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r["body"] for r in self.received if r["valid"] and r["event"] == event and r["status"] == 200]


class _HookHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        recv: WebhookReceiver = self.server.owner  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        header = self.headers.get("x-thoth-signature") or ""
        fields = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        expected = hmac.new(recv.secret.encode(), f"{fields.get('t')}.".encode() + raw, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(expected, fields.get("v1", "")) and abs(time.time() - int(fields["t"])) < 300
        body = json.loads(raw)
        with recv.lock:
            earlier = [r for r in recv.received if r["body"].get("approval_id") == body.get("approval_id")
                       and r["event"] == self.headers.get("x-thoth-event")]
            status = 401 if not valid else (503 if len(earlier) < recv.fail_first else 200)
            recv.received.append({"body": body, "valid": valid, "status": status,
                                  "event": self.headers.get("x-thoth-event"),
                                  "delivery": self.headers.get("x-thoth-delivery")})
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()


class SmtpSink:
    """A minimal SMTP server (RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, QUIT) keeping messages."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                def say(line: str) -> None:
                    self.wfile.write(line.encode() + b"\r\n")

                say("220 sink ESMTP")
                rcpt: list[str] = []
                while True:
                    line = self.rfile.readline().decode().rstrip("\r\n")
                    verb = line[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        say("250 sink")
                    elif verb == "MAIL":
                        rcpt = []
                        say("250 OK")
                    elif verb == "RCPT":
                        rcpt.append(line.split(":", 1)[1].strip(" <>"))
                        say("250 OK")
                    elif verb == "DATA":
                        say("354 end with <CRLF>.<CRLF>")
                        data = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                        sink.messages.append((rcpt, message_from_bytes(b"".join(data), policy=policy.default)))
                        say("250 queued")
                    elif verb == "QUIT" or not line:
                        say("221 bye")
                        return
                    else:
                        say("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A port nothing listens on (free_port: bound, then released)."""
    return free_port()

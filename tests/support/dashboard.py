"""A real `thoth serve` for dashboard tests, with the first admin's password it printed, and
helpers that act like an agent (enforce + events over HTTP) and like a browser (login).
The fixtures are in tests/dashboard/conftest.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from thoth.server.db import Database
from thoth.server.store import Store

from .ports import free_port
from .serve import SRC, stop_process

TENANT = "default"


class Server:
    def __init__(self, url: str, db_url: str, proc: subprocess.Popen[str], admin_password: str) -> None:
        self.url = url
        self.db_url = db_url
        self.proc = proc
        self.admin_password = admin_password
        self.store = Store(Database(db_url))

    def key(self, role: str = "sdk", tenant: str = TENANT) -> str:
        return str(self.store.create_key(tenant, role)["key"])

    def login(self, username: str = "admin", password: str | None = None) -> httpx.Client:
        """An httpx client holding a dashboard login cookie, like a browser."""
        c = httpx.Client(base_url=self.url, timeout=30)
        page = c.get("/login")
        token = csrf_of(page.text)
        r = c.post("/login", data={"username": username, "password": password or self.admin_password,
                                   "csrf_token": token, "next": "/"})
        assert r.status_code == 303, r.text
        return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def start(home: Path, extra_env: dict[str, str] | None = None, db_url: str | None = None,
          args: list[str] | None = None) -> Server:
    port = free_port()
    db_url = db_url or f"sqlite:///{home / 'thoth.db'}"
    env = {**os.environ, "THOTH_HOME": str(home), "PYTHONPATH": SRC, **(extra_env or {})}
    env.pop("THOTH_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "thoth", "serve", "--port", str(port), "--database-url", db_url,
                             *(args or [])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    password = None
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server exited: {proc.communicate()[0]}")
        m = re.search(r"first admin user 'admin' .* password (\S+)", line)
        if m:
            password = m.group(1)
        if line.startswith("Thoth server on"):
            break
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    assert password, "thoth serve did not print the first admin's password"
    # Keep draining output so the server never blocks on a full pipe.
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()
    return Server(url, db_url, proc, password)


def stop(server: Server) -> None:
    stop_process(server.proc)
    server.store.db.close()


class Agent:
    """What an instrumented agent sends: an enforce check, then the matching events."""

    def __init__(self, server: Server, key: str, agent_id: str = "billing-bot", user_id: str = "alice",
                 scope: list[str] | None = None, mode: str = "block", session_id: str | None = None) -> None:
        self.client = httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30)
        self.agent_id, self.user_id, self.mode = agent_id, user_id, mode
        self.scope = scope if scope is not None else ["search", "read_invoice"]
        self.session_id = session_id or f"s-{uuid.uuid4().hex[:12]}"
        self.history: list[str] = []

    def event(self, event_type: str, tool: str, args: Any, **meta: Any) -> dict[str, Any]:
        return {"event_id": f"{TENANT}:{uuid.uuid4()}", "tenant_id": TENANT, "agent_id": self.agent_id,
                "session_id": self.session_id, "user_id": self.user_id, "source_type": "agent_tool_call",
                "event_type": event_type, "tool_name": tool, "content": f"{tool} call",
                "metadata": {"tool_call": {"name": tool, "arguments": args}, **meta},
                "approved_scope": self.scope, "enforcement_mode": self.mode,
                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e6) % 10**6:06d}Z"}

    def enforce(self, tool: str, args: Any, **extra: Any) -> dict[str, Any]:
        """`extra`: more request fields (e.g. the SDK's `task` and `arg_sources`)."""
        self.history.append(tool)
        body = {"tenant_id": TENANT, "agent_id": self.agent_id, "user_id": self.user_id, "session_id": self.session_id,
                "tool_name": tool, "tool_args": args, "approved_scope": self.scope, "enforcement_mode": self.mode,
                "session_tool_calls": list(self.history), **extra}
        r = self.client.post("/v1/enforce", json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def call(self, tool: str, args: Any, result: str = "ok", **extra: Any) -> dict[str, Any]:
        """One governed call the way the SDK does it: PRE, enforce, then POST or BLOCK."""
        pre = self.event("TOOL_CALL_PRE", tool, args)
        decision = self.enforce(tool, args, **extra)
        if decision["decision"] in ("ALLOW", "MODIFY"):
            post = self.event("TOOL_CALL_POST", tool, args, duration_ms=12.5, result_type="str",
                              result_size_bytes=len(result))
        else:
            post = self.event("TOOL_CALL_BLOCK", tool, args, reason=decision.get("reason"))
        self.send([pre, post])
        return decision

    def send(self, events: list[dict[str, Any]]) -> None:
        r = self.client.post("/v1/events/batch", json=events)
        assert r.status_code < 300, r.text

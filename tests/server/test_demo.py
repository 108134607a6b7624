"""`thoth serve --demo` seeds a tenant, a policy and sessions, prints a login, keeps serving."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from tests.support.server import SRC, free_port

from thoth.server.migrate import upgrade


def test_demo_seeds_policy_sessions_and_a_working_login(backend: str, tmp_path: Path) -> None:
    upgrade(backend)
    port = free_port()
    env = {**os.environ, "THOTH_HOME": str(tmp_path), "PYTHONPATH": SRC}
    env.pop("THOTH_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "thoth", "serve", "--demo", "--port", str(port),
                             "--database-url", backend], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Demo sessions recorded"):
                done.set()

    threading.Thread(target=read, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert done.wait(60), "".join(lines)
        out = "".join(lines)
        assert f"Dashboard  {url}/" in out and "thoth.instrument(" in out
        user, password = re.search(r"Login\s+user (\S+)\s+password (\S+)", out).groups()  # type: ignore[union-attr]
        sdk_key = re.search(r"SDK key\s+(thk_\S+)", out).group(1)  # type: ignore[union-attr]

        # The printed login signs in to the dashboard (username + password, with the form's CSRF token).
        with httpx.Client(base_url=url) as browser:
            form = browser.get("/login").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
            signed_in = browser.post("/login", data={"username": user, "password": password, "csrf_token": csrf})
            assert signed_in.status_code in (200, 303), signed_in.text[:300]
            approvals_page = browser.get("/approvals")
            assert approvals_page.status_code == 200 and "issue_refund" in approvals_page.text

        from thoth.server.db import Database
        from thoth.server.store import Store

        store = Store(Database(backend))
        policy = store.active_policy("demo")
        assert policy is not None and "demo-refunds-need-a-human" in policy["document"]
        approvals, _ = store.list_approvals("demo", None)
        assert sorted(a["status"] for a in approvals) == ["approved", "denied", "pending"]
        sessions, _ = store.list_sessions("demo", None, 50, None)
        decisions = {d["decision"] for s in sessions
                     for d in store.session_decisions("demo", s["session_id"])}
        assert {"ALLOW", "BLOCK", "STEP_UP"} <= decisions
        # ... and it keeps serving: the printed SDK key works.
        r = httpx.post(url + "/v1/enforce", headers={"x-api-key": sdk_key},
                       json={"tenant_id": "demo", "agent_id": "mine", "tool_name": "search_docs",
                             "approved_scope": ["search_docs"]})
        assert r.status_code == 200 and r.json()["decision"] == "ALLOW"
        assert proc.poll() is None
        store.db.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

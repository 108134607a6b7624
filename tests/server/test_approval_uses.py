"""An approval allows its call a counted number of times within a window (docs/approvals.md, "Uses").

A use is taken by the first ALLOW on the approval; polls and re-checks carrying the hold token
are that same use while the window is open. A matching call without the token is a new call,
held again unless the policy allowed more than one use; another user never rides on it.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.support.server import Server, pg_schema, start_servers, stop_server, tenant

from thoth.server.db import sqlalchemy_url

POLICY = """
version: 1
defaults:
  approval_uses: {default_uses}
rules:
  - id: refunds
    when: {{tool: issue_refund}}
    action: step_up
    reason: refunds need a human
  - id: short-lived
    when: {{tool: wire_money}}
    action: step_up
    reason: wires need a human
    approval_valid_seconds: 2
  - id: batch-refunds
    when: {{tool: refund_batch}}
    action: step_up
    approval_uses: 3
"""


def refund(t: str, sid: str, tool: str = "issue_refund", user: str = "dana", **extra: Any) -> dict[str, Any]:
    # step_up mode: the progressive ladder would turn a session's repeated violations into blocks.
    return {"tenant_id": t, "agent_id": "refunder", "user_id": user, "session_id": sid, "tool_name": tool,
            "tool_args": {"order": "A-1", "amount": 30}, "enforcement_mode": "step_up", **extra}


class Tenant:
    """One tenant with the policy above: an SDK client, an admin client, helpers for the loop."""

    def __init__(self, server: Server, default_uses: int = 1) -> None:
        self.t = tenant()
        self.sid = f"s-{uuid.uuid4().hex[:8]}"
        self.sdk = server.client(server.key(self.t))
        self.admin = server.client(server.key(self.t, "admin"))
        r = self.admin.put("/v1/policies", json={"document": POLICY.format(default_uses=default_uses)})
        assert r.status_code == 200, r.text

    def enforce(self, **kw: Any) -> dict[str, Any]:
        r = self.sdk.post("/v1/enforce", json=refund(self.t, self.sid, **kw))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def approve(self, held: dict[str, Any]) -> dict[str, Any]:
        assert held["decision"] == "STEP_UP", held
        r = self.admin.post(f"/v1/approvals/{held['approval_id']}/resolve", json={"decision": "approve"})
        assert r.status_code == 200, r.text
        return self.approval(held)

    def approval(self, held: dict[str, Any]) -> dict[str, Any]:
        r = self.admin.get(f"/v1/approvals/{held['approval_id']}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def poll(self, held: dict[str, Any]) -> dict[str, Any]:
        r = self.sdk.get(f"/v1/enforce/hold/{held['hold_token']}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def hold(self, **kw: Any) -> dict[str, Any]:
        """A new held call; its approval_id comes from the approvals list."""
        held = self.enforce(**kw)
        assert held["decision"] == "STEP_UP", held
        items = self.admin.get("/v1/approvals", params={"status": "pending"}).json()["items"]
        (match,) = [a for a in items if a["hold_token"] == held["hold_token"]]
        return {**held, "approval_id": match["approval_id"]}

    def close(self) -> None:
        self.sdk.close()
        self.admin.close()


@pytest.fixture
def tn(server: Server) -> Any:
    t = Tenant(server)
    yield t
    t.close()


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_replay_without_token_is_held_again(tn: Tenant) -> None:
    held = tn.hold()
    before = tn.approval(held)
    assert (before["uses"], before["allowed_uses"], before["valid_until"]) == (0, 1, None)
    approved = tn.approve(held)
    # the default window: 600 s from the approval
    assert 599 < _ts(approved["valid_until"]) - _ts(approved["resolved_at"]) < 601
    assert approved["uses"] == 0

    answer = tn.poll(held)  # the SDK's wait: the first ALLOW takes the one use
    assert answer["resolution"] == "ALLOW" and answer["decision"] == "ALLOW"
    assert tn.approval(held)["uses"] == 1

    replay = tn.enforce()  # the same call again, without the token: a new call, held again
    assert replay["decision"] == "STEP_UP" and replay["hold_token"] != held["hold_token"]
    pending = tn.admin.get("/v1/approvals", params={"status": "pending"}).json()["items"]
    assert [a["hold_token"] for a in pending] == [replay["hold_token"]]

    # the held call's own token: the same use, still allowed, still one use
    again = tn.enforce(hold_token=held["hold_token"])
    assert again["decision"] == "ALLOW" and again["decision_reason_code"] == "step_up_approved"
    assert tn.poll(held)["resolution"] == "ALLOW"
    assert tn.approval(held)["uses"] == 1


def test_tokenless_call_cannot_take_the_held_calls_use(tn: Tenant) -> None:
    held = tn.hold()
    tn.approve(held)
    first = tn.enforce()  # before the requester's poll: still a new call, held again
    assert first["decision"] == "STEP_UP" and first["hold_token"] != held["hold_token"]
    assert tn.approval(held)["uses"] == 0
    assert tn.poll(held)["resolution"] == "ALLOW"  # the held call keeps its use


def test_another_user_never_rides_on_the_approval(tn: Tenant) -> None:
    held = tn.hold(tool="refund_batch")  # three uses: spare uses must not reach another user either
    tn.approve(held)
    for kw in ({"user": "mallory"}, {"user": "mallory", "hold_token": held["hold_token"]}):
        other = tn.enforce(tool="refund_batch", **kw)
        assert other["decision"] == "STEP_UP" and other["hold_token"] != held["hold_token"], kw
    assert tn.approval(held)["uses"] == 0
    own = tn.enforce(tool="refund_batch", hold_token=held["hold_token"])
    assert own["decision"] == "ALLOW"


def test_token_recheck_allows_within_the_rules_window_and_not_after(tn: Tenant) -> None:
    held = tn.hold(tool="wire_money")  # approval_valid_seconds: 2 on its rule
    approved = tn.approve(held)
    assert approved["valid_seconds"] == 2 and 1.9 < _ts(approved["valid_until"]) - _ts(approved["resolved_at"]) < 2.1
    for _ in range(3):
        assert tn.enforce(tool="wire_money", hold_token=held["hold_token"])["decision"] == "ALLOW"
        assert tn.poll(held)["resolution"] == "ALLOW"
    assert tn.approval(held)["uses"] == 1
    time.sleep(max(0.0, _ts(approved["valid_until"]) - time.time()) + 0.1)

    late = tn.enforce(tool="wire_money", hold_token=held["hold_token"])  # decided anew: held again
    assert late["decision"] == "STEP_UP" and late["hold_token"] != held["hold_token"]
    polled = tn.poll(held)
    assert polled["resolution"] == "BLOCK" and polled["decision"] == "BLOCK" and polled["status"] == "approved"
    assert "valid until" in polled["reason"]


def test_window_passes_before_the_held_call_used_it(tn: Tenant) -> None:
    held = tn.hold(tool="wire_money")
    approved = tn.approve(held)
    time.sleep(max(0.0, _ts(approved["valid_until"]) - time.time()) + 0.1)
    assert tn.poll(held)["resolution"] == "BLOCK"
    assert tn.enforce(tool="wire_money", hold_token=held["hold_token"])["decision"] == "STEP_UP"
    assert tn.approval(held)["uses"] == 0


def test_a_policy_count_allows_that_many_distinct_uses(tn: Tenant) -> None:
    held = tn.hold(tool="refund_batch")  # approval_uses: 3 on its rule
    assert tn.approve(held)["allowed_uses"] == 3
    assert tn.poll(held)["resolution"] == "ALLOW"  # use 1: the held call
    for n in (2, 3):
        call = tn.enforce(tool="refund_batch")  # a further identical call, no token
        assert call["decision"] == "ALLOW" and call["decision_reason_code"] == "step_up_approved", n
        assert tn.approval(held)["uses"] == n
    spent = tn.enforce(tool="refund_batch")
    assert spent["decision"] == "STEP_UP" and spent["hold_token"] != held["hold_token"]
    assert tn.enforce(tool="refund_batch", hold_token=held["hold_token"])["decision"] == "ALLOW"  # its own use
    assert tn.approval(held)["uses"] == 3


def test_uses_spent_before_the_token_took_its_own(server: Server) -> None:
    tn = Tenant(server, default_uses=2)  # defaults.approval_uses: 2 applies to the refunds rule
    try:
        held = tn.hold()
        assert tn.approve(held)["allowed_uses"] == 2
        assert tn.enforce()["decision"] == "ALLOW"  # the one spare use
        assert tn.enforce()["decision"] == "STEP_UP"  # the other is kept for the held call
        assert tn.poll(held)["resolution"] == "ALLOW"
        assert tn.approval(held)["uses"] == 2
    finally:
        tn.close()


def test_concurrent_rechecks_over_several_processes(backend: str, tmp_path: Path) -> None:
    """Uses are counted by the database: processes sharing it never hand out more than allowed."""
    servers = start_servers(backend, tmp_path / "home", 2)
    tns = [Tenant(s) for s in servers]
    try:
        a = tns[0]
        b = Tenant.__new__(Tenant)  # the same tenant through the second process
        b.t, b.sid = a.t, a.sid
        b.sdk = servers[1].client(a.sdk.headers["x-api-key"])
        b.admin = a.admin

        def together(n: int, fn: Any) -> list[Any]:
            out: list[Any] = [None] * n
            go = threading.Barrier(n)

            def run(i: int) -> None:
                go.wait()
                out[i] = fn(i)
            threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
            return out

        # 1 use, 8 re-checks with the token at once: the same use, all ALLOW, one use counted
        held = a.hold()
        a.approve(held)
        answers = together(8, lambda i: (a, b)[i % 2].enforce(hold_token=held["hold_token"])["decision"])
        assert answers == ["ALLOW"] * 8
        assert a.approval(held)["uses"] == 1
        # ... and 8 calls without it: each a new call, each held anew
        answers = together(8, lambda i: (a, b)[i % 2].enforce()["hold_token"])
        assert len(set(answers)) == 8 and held["hold_token"] not in answers

        # 3 uses, one kept for the token: of 8 tokenless calls at once exactly 2 are allowed
        batch = a.hold(tool="refund_batch")
        a.approve(batch)
        answers = together(8, lambda i: (a, b)[i % 2].enforce(tool="refund_batch")["decision"])
        assert sorted(answers) == ["ALLOW"] * 2 + ["STEP_UP"] * 6
        assert a.approval(batch)["uses"] == 2
        polls = together(4, lambda i: (a, b)[i % 2].poll(batch)["resolution"])
        assert polls == ["ALLOW"] * 4 and a.approval(batch)["uses"] == 3
        b.sdk.close()
    finally:
        for t in tns:
            t.close()
        for s in servers:
            stop_server(s)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_marks_approved_rows_spent(kind: str, tmp_path: Path) -> None:
    """Approvals approved before 0005 cannot be replayed after the upgrade; pending ones get defaults."""
    from alembic import command
    from alembic.config import Config

    from thoth.server import migrate

    def run(url: str) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(migrate._SCRIPTS))
        engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0004_lean_decision_indexes")
            conn.commit()
            rows = [("apr_old", "approved", 1000.0), ("apr_wait", "pending", None)]
            for approval_id, status, resolved_at in rows:
                conn.execute(sa.text(
                    "INSERT INTO approvals (approval_id, tenant_id, hold_token, tool_name, args_digest, requested_at,"
                    " expires_at, status, resolved_at) VALUES (:i, 't', :h, 'x', 'd', 900, 99999999999, :s, :r)"),
                    {"i": approval_id, "h": "hold_" + approval_id, "s": status, "r": resolved_at})
            conn.commit()
            command.upgrade(cfg, "0005_approval_uses")
            conn.commit()
            got = {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(
                "SELECT approval_id, uses, allowed_uses, valid_seconds, valid_until, token_used_at FROM approvals"))}
        engine.dispose()
        assert got["apr_old"] == (1, 1, 600.0, 1000.0, 1000.0)
        assert got["apr_wait"] == (0, 1, 600.0, None, None)

    if kind == "sqlite":
        run(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        with pg_schema("thoth_mig") as url:
            run(url)


def test_approval_fields_are_validated(server: Server) -> None:
    with server.client(server.key(tenant(), "admin")) as admin:
        for bad in ("approval_uses: 0", "approval_uses: 2.5", "approval_uses: yes", "approval_valid_seconds: 0",
                    "approval_valid_seconds: soon"):
            doc = f"version: 1\nrules:\n  - id: r\n    when: {{tool: x}}\n    action: step_up\n    {bad}\n"
            r = admin.put("/v1/policies", json={"document": doc})
            assert r.status_code in (400, 422) and "approval_" in r.text, (bad, r.status_code, r.text)
        r = admin.put("/v1/policies", json={"document": "version: 1\ndefaults: {approval_uses: -1}\n"})
        assert r.status_code in (400, 422) and "approval_uses" in r.text


def test_hold_poll_json_stays_client_shaped(tn: Tenant) -> None:
    """The published clients validate the poll body: only the fields they know, with their types."""
    held = tn.hold()
    tn.approve(held)
    body = httpx.get(f"{tn.sdk.base_url}/v1/enforce/hold/{held['hold_token']}",
                     headers={"Authorization": f"Bearer {tn.sdk.headers['x-api-key']}"}).json()
    assert body["resolved"] is True and body["resolution"] == "ALLOW"
    assert not {"uses", "allowed_uses", "valid_seconds"} & set(body)

"""The loop's rules in the store, on SQLite and PostgreSQL: every refusal leaves the row unchanged."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.support.fixtures import backend, pg_schema_url  # noqa: F401  (fixtures)

from thoth.server.audit import Signer
from thoth.server.db import Database
from thoth.server.migrate import upgrade
from thoth.server.store import APPROVAL_COLUMNS, Store


def _store(url: str, tmp: Any) -> Store:
    upgrade(url)
    return Store(Database(url), Signer(tmp / "key.pem"))


def _approval(store: Store, tenant: str, required: int = 1, user: str = "dana", ttl: float = 60) -> str:
    aid = f"apr_{uuid.uuid4().hex}"
    now = time.time()
    row = dict(approval_id=aid, tenant_id=tenant, hold_token=f"hold_{uuid.uuid4().hex}", violation_id=None,
               decision_id=None, tool_name="wire_transfer", tool_args="{}", args_digest="0" * 64, agent_id="a",
               session_id="s-" + aid, reason="r", requested_at=now, expires_at=now + ttl, status="pending",
               user_id=user, requested_by="key1", required_approvals=required, allowed_uses=1, valid_seconds=600)
    with store.db.transaction() as conn:
        conn.execute(f"INSERT INTO approvals ({', '.join(APPROVAL_COLUMNS)}) VALUES "
                     f"({', '.join('?' * len(APPROVAL_COLUMNS))})", [row[c] for c in APPROVAL_COLUMNS])
    return aid


def test_rules(backend: str, tmp_path: Any) -> None:  # noqa: F811
    store = _store(backend, tmp_path)
    t = f"t-{uuid.uuid4().hex[:8]}"
    try:
        one = _approval(store, t)
        assert store.resolve_approval(t, one, True, "dana", None)[0] == "self_approval"
        assert store.resolve_approval(t, one, True, "key:key1", None)[0] == "self_approval"
        assert store.approval(t, one)["status"] == "pending"  # type: ignore[index]
        assert store.resolve_approval("other-tenant", one, True, "bob", None)[0] == "not_found"
        assert store.resolve_approval(t, one, False, "dana", "changed my mind")[0] == "ok"  # a deny is allowed
        assert store.resolve_approval(t, one, True, "bob", None)[0] == "not_pending"
        assert store.approval(t, one)["status"] == "denied"  # type: ignore[index]

        two = _approval(store, t, required=2)
        outcome, a = store.resolve_approval(t, two, True, "bob", None, "api")
        assert outcome == "partial" and a is not None and a["approvals"] == ["bob"]
        assert store.resolve_approval(t, two, True, "bob", None)[0] == "already_reviewed"
        assert store.resolve_approval(t, two, True, "carol", None)[0] == "ok"
        assert store.approval(t, two)["resolved_by"] == "bob, carol"  # type: ignore[index]

        late = _approval(store, t, ttl=-1)
        outcome, a = store.resolve_approval(t, late, True, "bob", None)
        assert outcome == "not_pending" and a is not None and a["status"] == "expired"
        events = [e["event_type"] for e in store.session_events(t, "s-" + late)]
        assert events == ["APPROVAL_RESOLVED"]
        assert store.verify_chain(t)["verified"] is True
    finally:
        store.db.close()

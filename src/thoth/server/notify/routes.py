"""HTTP routes of the approval loop: delivery status, and each channel kind's callback routes.

Every refusal is a 4xx with a JSON `message` and changes nothing: forged or stale signatures
(401), replays (409), unknown approvals (404), double resolution and resolution after expiry (409).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from fastapi import FastAPI, Query, Request

from thoth.server.core import READ_ROLES, ClientError, public_approval
from thoth.server.dataplane import api_key
from thoth.server.notify.channels import CHANNELS


def mount(app: FastAPI, core: Any, notifier: Any) -> None:
    config = notifier.config
    records = notifier.records
    keep_nonces = 2 * config.max_request_age_seconds

    async def first_use(signature: str) -> None:
        nonce = hashlib.sha256(signature.encode()).hexdigest()
        if not await core.read(records.first_use, nonce, keep_nonces):
            raise ClientError(409, "replayed request: this signed payload was already processed")

    for kind in CHANNELS.values():  # each kind's callback routes (Slack interactivity, webhook callbacks)
        kind.mount(app, notifier, first_use)

    def reader(request: Request) -> Any:
        return core.authenticate(api_key(request.scope), READ_ROLES)

    @app.get("/v1/approvals/{approval_id}/notifications", tags=["approvals"])
    def approval_notifications(approval_id: str, request: Request) -> dict[str, Any]:
        """Where this approval was sent and whether each delivery worked; two-person reviews so far."""
        key = reader(request)
        approval = core.reads.approval(key.tenant_id, approval_id)
        if approval is None:
            raise ClientError(404, "unknown approval")
        return {"approval": public_approval(approval), "items": records.for_approval(key.tenant_id, approval_id),
                "reviews": core.reads.approval_reviews(approval_id), "next_cursor": None}

    @app.get("/v1/notifications", tags=["approvals"])
    def notifications(request: Request, status: Literal["queued", "sent", "failed"] | None = None,
                      limit: int = Query(100, ge=1, le=500)) -> dict[str, Any]:
        """Recent notifications of the tenant; `?status=failed` lists deliveries that need attention."""
        key = reader(request)
        return {"items": records.recent(key.tenant_id, status, limit), "next_cursor": None}


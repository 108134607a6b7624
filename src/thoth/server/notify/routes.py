"""HTTP routes of the approval loop: Slack interactivity, webhook callbacks, delivery status.

Every refusal is a 4xx with a JSON `message` and changes nothing: forged or stale signatures
(401), replays (409), unknown approvals (404), double resolution and resolution after expiry (409).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, Query, Request

from thoth.server.core import READ_ROLES, ClientError, public_approval
from thoth.server.dataplane import api_key
from thoth.server.notify import tenant_channels
from thoth.server.notify.render import clean
from thoth.server.notify.signing import SIGNATURE_HEADER, SignatureError, verify_slack, verify_webhook

SLACK_ACTIONS = {"thoth_approve": True, "thoth_deny": False}


def mount(app: FastAPI, core: Any, notifier: Any) -> None:
    config = notifier.config
    records = notifier.records
    keep_nonces = 2 * config.max_request_age_seconds

    async def first_use(signature: str) -> None:
        nonce = hashlib.sha256(signature.encode()).hexdigest()
        if not await core.read(records.first_use, nonce, keep_nonces):
            raise ClientError(409, "replayed request: this signed payload was already processed")

    @app.post("/v1/notify/slack/interactivity", tags=["approvals"])
    async def slack_interactivity(request: Request) -> dict[str, Any]:
        """Slack's Request URL for interactive components (Approve / Deny buttons)."""
        body = await request.body()
        signature = None
        failure: SignatureError | None = None
        candidates = [x for x in (config.slack.signing_secret, *await slack_secrets_of(body)) if x]
        for secret in candidates or [""]:  # none: verify_slack says interactivity is not configured
            try:
                signature = verify_slack(secret, request.headers.get("x-slack-request-timestamp"),
                                         request.headers.get("x-slack-signature"), body,
                                         config.max_request_age_seconds)
                break
            except SignatureError as exc:
                failure = failure or exc
        if signature is None:
            assert failure is not None
            raise ClientError(failure.status, failure.message)
        await first_use(signature)
        payload = _slack_payload(body)
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            raise ClientError(422, "no action in the Slack payload")
        action_id = actions[0].get("action_id")
        if action_id == "thoth_open":  # the link button: nothing to do but acknowledge
            return {"ok": True}
        if action_id not in SLACK_ACTIONS:
            raise ClientError(422, "unknown Slack action")
        approval_id = actions[0].get("value")
        raw_user = payload.get("user")
        user: dict[str, Any] = raw_user if isinstance(raw_user, dict) else {}
        slack_user = user.get("id") if isinstance(user.get("id"), str) else None
        if not isinstance(approval_id, str) or not slack_user:
            raise ClientError(422, "the Slack payload lacks the approval id or the user")
        identity = config.slack.users.get(slack_user)
        if identity is None:
            if config.slack.require_mapping:
                raise ClientError(403, f"Slack user {clean(slack_user, 40)} is not mapped to a Thoth identity")
            identity = f"slack:{slack_user}"
        tenant = await core.read(records.tenant_of, approval_id, "slack")
        if tenant is None:
            raise ClientError(404, "unknown approval")
        name = user.get("username") or user.get("name")
        approval = await core.resolve_approval(
            tenant, approval_id, SLACK_ACTIONS[action_id], identity,
            f"via Slack by {clean(slack_user, 40)}" + (f" (@{clean(name, 80)})" if isinstance(name, str) else ""),
            via="slack")
        if approval["status"] == "pending":  # first of two approvers: show who approved so far
            notifier.progress(approval)
        return {"ok": True, "approval_id": approval_id, "status": approval["status"],
                "resolved_by": approval.get("resolved_by")}

    @app.post("/v1/notify/webhook/{channel}/callback", tags=["approvals"])
    async def webhook_callback(channel: str, request: Request) -> dict[str, Any]:
        """A webhook receiver resolves an approval: body {approval_id, decision, actor?, reason?}, signed."""
        found = config.channels.get(channel)
        if found is None:  # a channel configured in the dashboard's Settings
            stored = await core.read(tenant_channels.by_name, core.db, channel, config)
            found = stored[1] if stored is not None else None
        if found is None or found.kind != "webhook":
            raise ClientError(404, "unknown webhook channel")
        body = await request.body()
        try:
            signature = verify_webhook(found.secret, request.headers.get(SIGNATURE_HEADER), body,
                                       config.max_request_age_seconds)
        except SignatureError as exc:
            raise ClientError(exc.status, exc.message) from None
        await first_use(signature)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ClientError(400, "malformed JSON body") from None
        if not isinstance(data, dict):
            raise ClientError(422, "the body must be a JSON object")
        approval_id, decision = data.get("approval_id"), data.get("decision")
        actor, reason = data.get("actor"), data.get("reason")
        if not isinstance(approval_id, str) or decision not in ("approve", "deny"):
            raise ClientError(422, "'approval_id' (string) and 'decision' ('approve' or 'deny') are required")
        if actor is not None and (not isinstance(actor, str) or not actor or len(actor) > 200):
            raise ClientError(422, "'actor' must be a non-empty string of at most 200 characters")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 4000):
            raise ClientError(422, "'reason' must be a string of at most 4000 characters")
        tenant = await core.read(records.tenant_of, approval_id, "webhook", channel)
        if tenant is None:
            raise ClientError(404, "unknown approval")
        approval = await core.resolve_approval(tenant, approval_id, decision == "approve",
                                               actor or f"webhook:{channel}", reason, via=f"webhook:{channel}")
        return public_approval(approval)

    async def slack_secrets_of(body: bytes) -> list[str]:
        """Signing secrets of Slack apps configured in Settings by the tenant of the approval the
        (not yet verified) payload names: only used to pick the key it must be verified with."""
        try:
            payload = _slack_payload(body)
        except ClientError:
            return []
        actions = payload.get("actions")
        approval_id = actions[0].get("value") if isinstance(actions, list) and actions and \
            isinstance(actions[0], dict) else None
        if not isinstance(approval_id, str):
            return []
        tenant = await core.read(records.tenant_of, approval_id, "slack")
        if tenant is None:
            return []
        found: list[str] = await core.read(tenant_channels.signing_secrets, core.db, tenant)
        return found

    def reader(request: Request) -> Any:
        return core.authenticate(api_key(request.scope), READ_ROLES)

    @app.get("/v1/approvals/{approval_id}/notifications", tags=["approvals"])
    def approval_notifications(approval_id: str, request: Request) -> dict[str, Any]:
        """Where this approval was sent and whether each delivery worked; two-person reviews so far."""
        key = reader(request)
        approval = core.store.approval(key.tenant_id, approval_id)
        if approval is None:
            raise ClientError(404, "unknown approval")
        return {"approval": public_approval(approval), "items": records.for_approval(key.tenant_id, approval_id),
                "reviews": core.store.approval_reviews(approval_id), "next_cursor": None}

    @app.get("/v1/notifications", tags=["approvals"])
    def notifications(request: Request, status: Literal["queued", "sent", "failed"] | None = None,
                      limit: int = Query(100, ge=1, le=500)) -> dict[str, Any]:
        """Recent notifications of the tenant; `?status=failed` lists deliveries that need attention."""
        key = reader(request)
        return {"items": records.recent(key.tenant_id, status, limit), "next_cursor": None}


def _slack_payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False)
        payload = orjson.loads(form["payload"][0])
    except (UnicodeDecodeError, KeyError, IndexError, orjson.JSONDecodeError):
        raise ClientError(400, "expected a form field 'payload' holding Slack's JSON") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise ClientError(422, "only block_actions payloads are handled")
    return payload

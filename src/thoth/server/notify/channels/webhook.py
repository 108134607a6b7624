"""Generic webhook channel: a signed JSON POST, retried with exponential backoff.

Retried: connection errors, timeouts, 408, 429 and 5xx. Not retried: other 4xx (the receiver
refused the message; retrying would not change its mind). Headers: see `signing`. A receiver
decides by POSTing a signed body to /v1/notify/webhook/<channel>/callback (mounted here).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from fastapi import Request

from thoth.server.core import ClientError, public_approval
from thoth.server.notify.channels.base import (
    ENV_REF,
    NO_CHANNEL,
    Channel,
    ChannelKind,
    FirstUse,
    NotifyConfigError,
    Sent,
    file_secret,
    settings_secret,
    text,
)
from thoth.server.notify.render import HeldCall, webhook_body
from thoth.server.notify.signing import SIGNATURE_HEADER, SignatureError, sign_webhook, verify_webhook

if TYPE_CHECKING:
    from thoth.server.notify.config import NotifyConfig
    from thoth.server.notify.service import Notifier

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MIN_SECRET = 16


@dataclass(frozen=True)
class Hook:
    url: str
    secret: str
    max_attempts: int = 4
    backoff_seconds: float = 0.5
    timeout_seconds: float = 5.0


async def deliver(client: httpx.AsyncClient, hook: Hook, event: str,
                  payload: dict[str, Any]) -> tuple[bool, int, str | None]:
    """-> (delivered, attempts, last error)."""
    body = orjson.dumps(payload, default=str)
    delivery = f"dlv_{uuid.uuid4().hex}"
    error: str | None = None
    attempt = 0
    for attempt in range(1, max(1, hook.max_attempts) + 1):
        headers = {"content-type": "application/json", "user-agent": "thoth-webhook/1",
                   "x-thoth-event": event, "x-thoth-delivery": delivery,
                   SIGNATURE_HEADER: sign_webhook(hook.secret, body)}  # fresh timestamp per attempt
        try:
            resp = await client.post(hook.url, content=body, headers=headers, timeout=hook.timeout_seconds)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if resp.status_code < 300:
                return True, attempt, None
            error = f"HTTP {resp.status_code}: {resp.text[:200]}"
            if resp.status_code not in RETRY_STATUSES:
                return False, attempt, error
        if attempt < hook.max_attempts:
            await asyncio.sleep(hook.backoff_seconds * (2 ** (attempt - 1)))
    return False, attempt, error


class WebhookKind(ChannelKind):
    name = "webhook"
    order = 2
    follows_up = True

    def from_file(self, name: str, raw: dict[str, Any], where: str) -> Channel:
        url = text(raw, "url", where)
        secret = file_secret(raw.get("secret"), f"{where}.secret")
        if not url.startswith(("http://", "https://")):
            raise NotifyConfigError(f"{where}.url must be an http(s) URL")
        if len(secret) < MIN_SECRET:
            raise NotifyConfigError(f"{where}.secret must be at least {MIN_SECRET} characters")
        return Channel(name, self.name, Hook(url, secret, max_attempts=int(raw.get("max_attempts", 4)),
                                             backoff_seconds=float(raw.get("backoff_seconds", 0.5)),
                                             timeout_seconds=float(raw.get("timeout_seconds", 5.0))))

    def form_problem(self, target: str, secrets: Mapping[str, str]) -> str | None:
        if not target.startswith(("https://", "http://")):
            return "A webhook channel needs an http(s) URL."
        secret = secrets.get("secret", "")
        if not (ENV_REF.match(secret) or len(secret) >= MIN_SECRET):
            return f"A webhook channel needs a signing secret of {MIN_SECRET}+ characters (or env:NAME)."
        return None

    def from_settings(self, name: str, target: str, secrets: Mapping[str, Any], config: NotifyConfig) -> Channel:
        problems: list[str] = []
        secret = settings_secret(str(secrets.get("secret", "")), problems, "secret")
        return Channel(name, self.name, Hook(target, secret), problem="; ".join(problems))

    async def request(self, notifier: Notifier, channel: Channel, call: HeldCall,
                      approval: dict[str, Any]) -> Sent:
        body = webhook_body("approval.requested", call, approval, callback_url(notifier.config, channel))
        ok, attempts, error = await deliver(notifier.http, channel.options, "approval.requested", body)
        return Sent(ok, attempts, error, {"url": channel.options.url})

    async def outcome(self, notifier: Notifier, channel: Channel | None, notification: dict[str, Any],
                      call: HeldCall, approval: dict[str, Any]) -> tuple[bool, str | None]:
        if channel is None:
            return False, NO_CHANNEL
        body = webhook_body("approval.resolved", call, approval, "")
        ok, _, error = await deliver(notifier.http, channel.options, "approval.resolved", body)
        return ok, error

    def mount(self, app: Any, notifier: Notifier, first_use: FirstUse) -> None:
        core, config, records = notifier.core, notifier.config, notifier.records

        @app.post("/v1/notify/webhook/{channel}/callback", tags=["approvals"])
        async def webhook_callback(channel: str, request: Request) -> dict[str, Any]:
            """A webhook receiver resolves an approval: body {approval_id, decision, actor?, reason?}, signed."""
            found = await core.read(notifier.channel_named, channel)
            if found is None or found.kind != self.name:
                raise ClientError(404, "unknown webhook channel")
            body = await request.body()
            try:
                signature = verify_webhook(found.options.secret, request.headers.get(SIGNATURE_HEADER), body,
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
            tenant = await core.read(records.tenant_of, approval_id, self.name, channel)
            if tenant is None:
                raise ClientError(404, "unknown approval")
            approval = await core.resolve_approval(tenant, approval_id, decision == "approve",
                                                   actor or f"webhook:{channel}", reason, via=f"webhook:{channel}")
            return public_approval(approval)


def callback_url(config: NotifyConfig, channel: Channel) -> str:
    """Where the receiver sends its signed decision (in the request body as `callback_url`)."""
    base = config.public_url
    return f"{base}/v1/notify/webhook/{channel.name}/callback" if base else ""


KIND = WebhookKind()

"""Slack channel: post the request with Approve / Deny buttons, then edit it to show the outcome.

Uses slack-sdk's WebClient (synchronous; run in a thread so the event loop never waits on Slack).
`base_url` points it at another Web API (our tests run a local stub of chat.postMessage/update).
The Slack app (bot token, signing secret, user mapping) is notify.yaml's `slack:` section; a
Settings channel may bring its own bot token and signing secret. Clicks come back to
POST /v1/notify/slack/interactivity (mounted here).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from fastapi import Request
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from thoth.server.core import ClientError
from thoth.server.notify.channels.base import (
    ENV_REF,
    NO_CHANNEL,
    Channel,
    ChannelKind,
    DeliveryError,
    FirstUse,
    NotifyConfigError,
    Sent,
    file_secret,
    settings_secret,
    text,
)
from thoth.server.notify.render import HeldCall, clean, slack_outcome, slack_request
from thoth.server.notify.signing import SignatureError, verify_slack

if TYPE_CHECKING:
    from thoth.server.notify.config import NotifyConfig
    from thoth.server.notify.service import Notifier

_TARGET = re.compile(r"^(#[a-z0-9._-]{1,80}|[CDGUW][A-Z0-9]{2,30})$")
ACTIONS = {"thoth_approve": True, "thoth_deny": False}

__all__ = ["KIND", "DeliveryError", "SlackApp", "SlackKind", "SlackSender", "SlackTarget"]


@dataclass(frozen=True)
class SlackApp:
    bot_token: str = ""
    signing_secret: str = ""
    base_url: str = "https://slack.com/api/"
    # Slack user id -> Thoth identity recorded as the approver.
    users: dict[str, str] = field(default_factory=dict)
    # When true, a click by a Slack user missing from `users` is refused.
    require_mapping: bool = False


@dataclass(frozen=True)
class SlackTarget:
    channel: str  # a channel id, #name or a user id for a DM
    # Settings channels may bring their own Slack app.
    token: str = ""
    signing_secret: str = ""


class SlackSender:
    def __init__(self, app: SlackApp) -> None:
        base = app.base_url if app.base_url.endswith("/") else app.base_url + "/"
        self.client = WebClient(token=app.bot_token, base_url=base, timeout=10, retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=2)])

    def post(self, channel: str, text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        """-> {"channel": id, "ts": message ts}, what chat.update needs later."""
        try:
            resp = self.client.chat_postMessage(channel=channel, text=text, blocks=blocks, unfurl_links=False,
                                                unfurl_media=False)
        except SlackApiError as exc:
            raise DeliveryError(f"Slack chat.postMessage failed: {exc.response.get('error', exc)}") from None
        except Exception as exc:  # network errors after slack-sdk's own retries
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None
        return {"channel": resp.get("channel") or channel, "ts": resp.get("ts")}

    def update(self, target: dict[str, Any], text: str, blocks: list[dict[str, Any]]) -> None:
        try:
            self.client.chat_update(channel=target["channel"], ts=target["ts"], text=text, blocks=blocks)
        except SlackApiError as exc:
            raise DeliveryError(f"Slack chat.update failed: {exc.response.get('error', exc)}") from None
        except Exception as exc:
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None


class SlackKind(ChannelKind):
    name = "slack"
    order = 1
    follows_up = True

    def __init__(self) -> None:
        self._senders: dict[tuple[str, str], SlackSender] = {}

    # ---- configuration -----------------------------------------------------------------------

    def section(self, raw: Any) -> SlackApp:
        raw = raw or {}
        if not isinstance(raw, dict):
            raise NotifyConfigError("slack must be a mapping")
        users = raw.get("users") or {}
        if not isinstance(users, dict):
            raise NotifyConfigError("slack.users must map Slack user ids to Thoth identities")
        return SlackApp(bot_token=file_secret(raw.get("bot_token"), "slack.bot_token"),
                        signing_secret=file_secret(raw.get("signing_secret"), "slack.signing_secret"),
                        base_url=text(raw, "base_url", "slack", "https://slack.com/api/"),
                        users={str(k): str(v) for k, v in users.items()},
                        require_mapping=bool(raw.get("require_mapping", False)))

    def check(self, config: NotifyConfig) -> None:
        if any(c.kind == self.name for c in config.channels.values()) and not self.app(config).bot_token:
            raise NotifyConfigError("a slack channel needs slack.bot_token")

    def from_file(self, name: str, raw: dict[str, Any], where: str) -> Channel:
        target = text(raw, "channel", where)
        if not target:
            raise NotifyConfigError(f"{where}.channel is required (a channel id, #name or user id)")
        return Channel(name, self.name, SlackTarget(target))

    def form_problem(self, target: str, secrets: Mapping[str, str]) -> str | None:
        if not _TARGET.match(target):
            return "A Slack channel needs a channel id (C…), a #name or a reviewer's user id (U…)."
        for key, what in (("bot_token", "bot token"), ("signing_secret", "signing secret")):
            value = secrets.get(key, "")
            if value and not (ENV_REF.match(value) or len(value) >= 16):
                return f"The Slack {what} is a reference env:NAME (or the value itself)."
        return None

    def from_settings(self, name: str, target: str, secrets: Mapping[str, Any], config: NotifyConfig) -> Channel:
        problems: list[str] = []
        token = settings_secret(str(secrets.get("bot_token", "")), problems, "bot token")
        signing = settings_secret(str(secrets.get("signing_secret", "")), problems, "signing secret")
        if not token and not self.app(config).bot_token:
            problems.append("no Slack bot token: set one on the channel or slack.bot_token in notify.yaml")
        return Channel(name, self.name, SlackTarget(target, token, signing), problem="; ".join(problems))

    def app(self, config: NotifyConfig) -> SlackApp:
        found: SlackApp = config.section(self.name)
        return found

    def sender(self, config: NotifyConfig, channel: Channel | None) -> SlackSender | None:
        """The Slack app of a channel: its own bot token (Settings), else the file's."""
        app = self.app(config)
        own = channel.options.token if channel is not None and channel.kind == self.name else ""
        token = own or app.bot_token
        if not token:
            return None
        key = (token, app.base_url)
        found = self._senders.get(key)
        if found is None:
            found = self._senders[key] = SlackSender(SlackApp(bot_token=token, base_url=app.base_url))
        return found

    # ---- delivery -----------------------------------------------------------------------------

    async def request(self, notifier: Notifier, channel: Channel, call: HeldCall,
                      approval: dict[str, Any]) -> Sent:
        slack = self.sender(notifier.config, channel)
        if slack is None:
            raise DeliveryError("no Slack bot token configured")
        text_, blocks = slack_request(call, notifier.config.max_arg_chars)
        return Sent(True, target=await asyncio.to_thread(slack.post, channel.options.channel, text_, blocks))

    async def progress(self, notifier: Notifier, channel: Channel | None, notification: dict[str, Any],
                       call: HeldCall, approval: dict[str, Any]) -> None:
        """Edit the message: who approved so far, the buttons still there for the next approver."""
        slack = self.sender(notifier.config, channel)
        if slack is None or not notification["target"]:
            return
        text_, blocks = slack_outcome(call, approval, notifier.config.max_arg_chars)
        blocks[-1:-1] = [b for b in slack_request(call, notifier.config.max_arg_chars)[1] if b["type"] == "actions"]
        with contextlib.suppress(DeliveryError):
            await asyncio.to_thread(slack.update, notification["target"], text_, blocks)

    async def outcome(self, notifier: Notifier, channel: Channel | None, notification: dict[str, Any],
                      call: HeldCall, approval: dict[str, Any]) -> tuple[bool, str | None]:
        slack = self.sender(notifier.config, channel)
        if slack is None or not notification["target"]:
            return False, NO_CHANNEL
        text_, blocks = slack_outcome(call, approval, notifier.config.max_arg_chars)
        await asyncio.to_thread(slack.update, notification["target"], text_, blocks)
        return True, None

    # ---- callbacks ----------------------------------------------------------------------------

    def mount(self, app: Any, notifier: Notifier, first_use: FirstUse) -> None:
        core, config, records = notifier.core, notifier.config, notifier.records
        slack_app = self.app(config)

        @app.post("/v1/notify/slack/interactivity", tags=["approvals"])
        async def slack_interactivity(request: Request) -> dict[str, Any]:
            """Slack's Request URL for interactive components (Approve / Deny buttons)."""
            body = await request.body()
            signature = None
            failure: SignatureError | None = None
            candidates = [x for x in (slack_app.signing_secret, *await slack_secrets_of(body)) if x]
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
            payload = _payload(body)
            actions = payload.get("actions")
            if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
                raise ClientError(422, "no action in the Slack payload")
            action_id = actions[0].get("action_id")
            if action_id == "thoth_open":  # the link button: nothing to do but acknowledge
                return {"ok": True}
            if action_id not in ACTIONS:
                raise ClientError(422, "unknown Slack action")
            approval_id = actions[0].get("value")
            raw_user = payload.get("user")
            user: dict[str, Any] = raw_user if isinstance(raw_user, dict) else {}
            slack_user = user.get("id") if isinstance(user.get("id"), str) else None
            if not isinstance(approval_id, str) or not slack_user:
                raise ClientError(422, "the Slack payload lacks the approval id or the user")
            identity = slack_app.users.get(slack_user)
            if identity is None:
                if slack_app.require_mapping:
                    raise ClientError(403, f"Slack user {clean(slack_user, 40)} is not mapped to a Thoth identity")
                identity = f"slack:{slack_user}"
            tenant = await core.read(records.tenant_of, approval_id, self.name)
            if tenant is None:
                raise ClientError(404, "unknown approval")
            name = user.get("username") or user.get("name")
            approval = await core.resolve_approval(
                tenant, approval_id, ACTIONS[action_id], identity,
                f"via Slack by {clean(slack_user, 40)}" + (f" (@{clean(name, 80)})" if isinstance(name, str) else ""),
                via="slack")
            if approval["status"] == "pending":  # first of two approvers: show who approved so far
                notifier.progress(approval)
            return {"ok": True, "approval_id": approval_id, "status": approval["status"],
                    "resolved_by": approval.get("resolved_by")}

        async def slack_secrets_of(body: bytes) -> list[str]:
            """Signing secrets of Slack apps configured in Settings by the tenant of the approval the
            (not yet verified) payload names: only used to pick the key it must be verified with."""
            try:
                payload = _payload(body)
            except ClientError:
                return []
            actions = payload.get("actions")
            approval_id = actions[0].get("value") if isinstance(actions, list) and actions and \
                isinstance(actions[0], dict) else None
            if not isinstance(approval_id, str):
                return []
            tenant = await core.read(records.tenant_of, approval_id, self.name)
            if tenant is None:
                return []
            found: list[str] = await core.read(self.signing_secrets, core.db, tenant)
            return found

    def signing_secrets(self, db: Any, tenant_id: str) -> list[str]:
        """The Slack signing secrets a tenant's Settings channels name (for interactivity requests)."""
        from thoth.server.notify import tenant_channels
        from thoth.server.notify.config import NotifyConfig

        channels, _ = tenant_channels.load(db, tenant_id, NotifyConfig())
        return [c.options.signing_secret for c in channels if c.kind == self.name and c.options.signing_secret]


def _payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False)
        payload = orjson.loads(form["payload"][0])
    except (UnicodeDecodeError, KeyError, IndexError, orjson.JSONDecodeError):
        raise ClientError(400, "expected a form field 'payload' holding Slack's JSON") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise ClientError(422, "only block_actions payloads are handled")
    return payload


KIND = SlackKind()

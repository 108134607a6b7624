"""The notifier: sends held calls to their channels in the background and posts the outcome.

`on_hold_created` only puts the approval on an in-memory queue, so the enforce response never
waits for Slack, SMTP or a webhook. A worker task delivers each notification and records its
delivery status; a failed delivery leaves the hold pending (it is still in the dashboard queue and
the API) and the failure shows in GET /v1/approvals/{id}/notifications and the session timeline.
A reconcile loop edits messages of approvals decided elsewhere (CLI, another process, expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from thoth.server.db import is_unavailable
from thoth.server.notify import smtp, tenant_channels, webhook
from thoth.server.notify.config import Channel, NotifyConfig, SlackApp, load, select
from thoth.server.notify.records import Records
from thoth.server.notify.render import HeldCall, email_request, slack_outcome, slack_request, webhook_body
from thoth.server.notify.slack import DeliveryError, SlackSender

log = logging.getLogger("thoth.server.notify")
RECONCILE_SECONDS = 2.0
MAX_CONCURRENT_DELIVERIES = 16


class Notifier:
    def __init__(self, core: Any, config: NotifyConfig) -> None:
        self.core = core
        self.config = config
        self.records = Records(core.store)
        self.slack = SlackSender(config.slack) if config.slack.bot_token else None
        self._slack_by_token: dict[str, SlackSender] = {}
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)

    # ---- lifecycle (called by thoth.server.app on startup / shutdown) ----------------------

    def start(self) -> None:
        if self._queue is not None:
            return
        self._queue = asyncio.Queue(maxsize=10_000)
        self._http = httpx.AsyncClient()
        self._spawn(self._worker())
        # Always: channels may also come from the dashboard's Settings (any tenant, any time).
        self._spawn(self._reconcile())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._http is not None:
            await self._http.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- hooks (called by Core; must return at once) ----------------------------------------

    def on_hold_created(self, approval: dict[str, Any]) -> None:
        self._enqueue("request", approval)

    def on_hold_resolved(self, approval: dict[str, Any]) -> None:
        self._enqueue("outcome", approval)

    def progress(self, approval: dict[str, Any]) -> None:
        """A two-person approval got its first approver: say so in the Slack messages."""
        self._enqueue("progress", approval)

    def _enqueue(self, kind: str, approval: dict[str, Any]) -> None:
        self.start()
        assert self._queue is not None
        try:
            self._queue.put_nowait((kind, approval))
        except asyncio.QueueFull:  # the hold itself is stored; it waits in the dashboard queue
            log.error("notification queue full; approval %s not sent", approval.get("approval_id"))

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            kind, approval = await self._queue.get()
            self._spawn(self._guarded(kind, approval))

    async def _guarded(self, kind: str, approval: dict[str, Any]) -> None:
        async with self._limit:
            try:
                if kind == "request":
                    await self.notify(approval)
                elif kind == "progress":
                    await self.post_progress(approval)
                else:
                    await self.post_outcomes(approval)
            except Exception:  # a notifier bug must not kill the worker
                log.exception("notification %s for %s failed", kind, approval.get("approval_id"))

    async def _reconcile(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            try:
                await asyncio.to_thread(self.core.store.expire_approvals)
                for notification, approval in await asyncio.to_thread(self.records.needing_outcome):
                    await self._post_outcome(notification, approval)
            except Exception as exc:
                if is_unavailable(exc):  # an outage: one line per pass, not a traceback; retried next pass
                    log.warning("notification reconcile skipped: the database is unavailable (%s)", exc)
                else:
                    log.exception("notification reconcile failed")

    # ---- delivery -----------------------------------------------------------------------------

    async def held_call(self, approval: dict[str, Any]) -> HeldCall:
        ctx = await asyncio.to_thread(self.records.decision_context, approval.get("decision_id"))
        return HeldCall(
            approval_id=approval["approval_id"], tenant_id=approval["tenant_id"], tool_name=approval["tool_name"],
            tool_args=approval.get("tool_args"), agent_id=approval.get("agent_id") or "",
            user_id=approval.get("user_id") or ctx.get("user_id") or "", session_id=approval.get("session_id") or "",
            reason=approval.get("request_reason") or ctx.get("reason") or "",
            matched_rule_ids=list(ctx.get("matched_rule_ids") or []), risk_score=ctx.get("risk_score"),
            expires_at=approval.get("expires_at") or "", required_approvals=int(approval.get("required_approvals") or 1),
            dashboard_url=self.config.dashboard_url)

    def channels(self, approval: dict[str, Any], call: HeldCall) -> list[Channel]:
        """Settings first: the tenant's channels from the dashboard, when any of them matches the
        call (most specific: rule, then agent, then the whole tenant); else the file's routes."""
        mine, routes = tenant_channels.load(self.core.db, call.tenant_id, self.config)
        picked = select(routes, {c.name: c for c in mine}, call.tenant_id, call.agent_id, call.matched_rule_ids)
        return picked or self.config.channels_for(call.tenant_id, call.agent_id, call.matched_rule_ids)

    def channel_named(self, name: str, tenant_id: str) -> Channel | None:
        found = self.config.channels.get(name)
        if found is None:
            stored = tenant_channels.by_name(self.core.db, name, self.config)
            if stored is not None and stored[0] == tenant_id:
                found = stored[1]
        return found

    def sender(self, channel: Channel) -> SlackSender | None:
        """The Slack app of a channel: its own bot token (Settings), else the file's."""
        if not channel.slack_token:
            return self.slack
        found = self._slack_by_token.get(channel.slack_token)
        if found is None:
            app = SlackApp(bot_token=channel.slack_token, base_url=self.config.slack.base_url)
            found = self._slack_by_token[channel.slack_token] = SlackSender(app)
        return found

    async def notify(self, approval: dict[str, Any]) -> None:
        call = await self.held_call(approval)
        channels = await asyncio.to_thread(self.channels, approval, call)
        await asyncio.gather(*(self._send(channel, call, approval) for channel in channels))

    async def _send(self, channel: Channel, call: HeldCall, approval: dict[str, Any]) -> None:
        nid = await asyncio.to_thread(self.records.create, approval, channel.name, channel.kind)
        ok, attempts, error, target = False, 1, None, None
        try:
            if channel.problem:
                raise DeliveryError(channel.problem)
            if channel.kind == "slack":
                slack = self.sender(channel)
                if slack is None:
                    raise DeliveryError("no Slack bot token configured")
                text, blocks = slack_request(call, self.config.max_arg_chars)
                target = await asyncio.to_thread(slack.post, channel.slack_channel, text, blocks)
                ok = True
            elif channel.kind == "webhook":
                assert self._http is not None
                body = webhook_body("approval.requested", call, approval, self.callback_url(channel))
                ok, attempts, error = await webhook.deliver(self._http, channel, "approval.requested", body)
                target = {"url": channel.url}
            else:
                subject, text, html_body = email_request(call, self.config.max_arg_chars)
                await asyncio.to_thread(smtp.send, channel, subject, text, html_body)
                ok, target = True, {"to": list(channel.mail_to)}
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # SMTP and anything else: record it, never lose the hold
            error = f"{type(exc).__name__}: {exc}"
        if not ok:
            log.warning("approval %s: %s channel %s failed: %s", call.approval_id, channel.kind, channel.name, error)
        await asyncio.to_thread(self.records.delivered, nid, approval, channel.name, channel.kind, ok, attempts,
                                error, target)

    def callback_url(self, channel: Channel) -> str:
        base = self.config.public_url
        return f"{base}/v1/notify/webhook/{channel.name}/callback" if base else ""

    async def post_outcomes(self, approval: dict[str, Any]) -> None:
        items = await asyncio.to_thread(self.records.for_approval, approval["tenant_id"], approval["approval_id"])
        for notification in items:
            if notification["status"] == "sent" and notification["outcome_status"] is None \
                    and notification["kind"] in ("slack", "webhook"):
                await self._post_outcome(notification, approval)

    async def post_progress(self, approval: dict[str, Any]) -> None:
        call = await self.held_call(approval)
        text, blocks = slack_outcome(call, approval, self.config.max_arg_chars)
        blocks[-1:-1] = [b for b in slack_request(call, self.config.max_arg_chars)[1] if b["type"] == "actions"]
        items = await asyncio.to_thread(self.records.for_approval, approval["tenant_id"], approval["approval_id"])
        for n in items:
            if n["kind"] == "slack" and n["status"] == "sent" and n["outcome_status"] is None and n["target"]:
                channel = await asyncio.to_thread(self.channel_named, n["channel"], approval["tenant_id"])
                slack = self.sender(channel) if channel is not None else self.slack
                if slack is not None:
                    with contextlib.suppress(DeliveryError):
                        await asyncio.to_thread(slack.update, n["target"], text, blocks)

    async def _post_outcome(self, notification: dict[str, Any], approval: dict[str, Any]) -> None:
        if not await asyncio.to_thread(self.records.claim_outcome, notification["notification_id"]):
            return  # another process or the reconcile loop is doing it
        channel = await asyncio.to_thread(self.channel_named, notification["channel"], approval["tenant_id"])
        slack = self.sender(channel) if channel is not None and channel.kind == "slack" else self.slack
        ok, error = False, None
        try:
            call = await self.held_call(approval)
            if notification["kind"] == "slack" and slack is not None and notification["target"]:
                text, blocks = slack_outcome(call, approval, self.config.max_arg_chars)
                await asyncio.to_thread(slack.update, notification["target"], text, blocks)
                ok = True
            elif notification["kind"] == "webhook" and channel is not None and self._http is not None:
                body = webhook_body("approval.resolved", call, approval, "")
                ok, _, error = await webhook.deliver(self._http, channel, "approval.resolved", body)
            else:
                error = "channel no longer configured"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        await asyncio.to_thread(self.records.outcome_done, notification["notification_id"], ok, error)


def register(app: Any, core: Any) -> Notifier:
    """Load the config, hook the notifier into the core, mount the callback routes."""
    from thoth.server.notify.routes import mount

    config = load(core.settings.home)
    notifier = Notifier(core, config)
    core.required_approvals = config.required_approvals
    core.on_hold_created(notifier.on_hold_created)
    core.on_hold_resolved(notifier.on_hold_resolved)
    mount(app, core, notifier)
    return notifier

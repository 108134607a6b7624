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
from thoth.server.notify import tenant_channels
from thoth.server.notify.channels import CHANNELS, DeliveryError
from thoth.server.notify.channels.base import NO_CHANNEL
from thoth.server.notify.config import Channel, NotifyConfig, load, select
from thoth.server.notify.records import Records
from thoth.server.notify.render import HeldCall

log = logging.getLogger("thoth.server.notify")
RECONCILE_SECONDS = 2.0
MAX_CONCURRENT_DELIVERIES = 16
# Kinds whose messages are edited / followed up once the approval is decided.
FOLLOW_UP = tuple(name for name, kind in CHANNELS.items() if kind.follows_up)


class Notifier:
    def __init__(self, core: Any, config: NotifyConfig) -> None:
        self.core = core
        self.config = config
        self.records = Records(core.store)
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

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client channels share (created by `start`)."""
        assert self._http is not None
        return self._http

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
        """A two-person approval got its first approver: say so in the messages (kinds that follow up)."""
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
                for notification, approval in await asyncio.to_thread(self.records.needing_outcome, FOLLOW_UP):
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

    def channel_named(self, name: str, tenant_id: str | None = None) -> Channel | None:
        """A file channel, or a Settings channel (of `tenant_id` when given)."""
        found = self.config.channels.get(name)
        if found is None:
            stored = tenant_channels.by_name(self.core.db, name, self.config)
            if stored is not None and tenant_id in (None, stored[0]):
                found = stored[1]
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
            sent = await CHANNELS[channel.kind].request(self, channel, call, approval)
            ok, attempts, error, target = sent.ok, sent.attempts, sent.error, sent.target
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # SMTP and anything else: record it, never lose the hold
            error = f"{type(exc).__name__}: {exc}"
        if not ok:
            log.warning("approval %s: %s channel %s failed: %s", call.approval_id, channel.kind, channel.name, error)
        await asyncio.to_thread(self.records.delivered, nid, approval, channel.name, channel.kind, ok, attempts,
                                error, target)

    async def post_outcomes(self, approval: dict[str, Any]) -> None:
        items = await asyncio.to_thread(self.records.for_approval, approval["tenant_id"], approval["approval_id"])
        for notification in items:
            if notification["status"] == "sent" and notification["outcome_status"] is None \
                    and notification["kind"] in FOLLOW_UP:
                await self._post_outcome(notification, approval)

    async def post_progress(self, approval: dict[str, Any]) -> None:
        call = await self.held_call(approval)
        items = await asyncio.to_thread(self.records.for_approval, approval["tenant_id"], approval["approval_id"])
        for n in items:
            if n["kind"] in FOLLOW_UP and n["status"] == "sent" and n["outcome_status"] is None:
                channel = await asyncio.to_thread(self.channel_named, n["channel"], approval["tenant_id"])
                await CHANNELS[n["kind"]].progress(self, channel, n, call, approval)

    async def _post_outcome(self, notification: dict[str, Any], approval: dict[str, Any]) -> None:
        if not await asyncio.to_thread(self.records.claim_outcome, notification["notification_id"]):
            return  # another process or the reconcile loop is doing it
        channel = await asyncio.to_thread(self.channel_named, notification["channel"], approval["tenant_id"])
        kind = CHANNELS.get(notification["kind"])
        ok, error = False, None
        try:
            call = await self.held_call(approval)
            if kind is not None and kind.follows_up:
                ok, error = await kind.outcome(self, channel, notification, call, approval)
            else:
                error = NO_CHANNEL
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

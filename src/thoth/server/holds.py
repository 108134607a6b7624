"""Holds and approvals: the hold long-poll, resolving an approval, the hooks that notify.

`Core.hold` and `Core.resolve_approval` are these functions; a resolution in this process wakes
its long-polls at once (`Core.hold_events`), other processes' are seen by re-reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from thoth.server.store import KeyInfo
from thoth.wire import WireError as ClientError
from thoth.wire import hold_answer

if TYPE_CHECKING:
    from thoth.server.core import Core

MAX_HOLD_WAIT = 60.0


async def hold(core: Core, key: KeyInfo, token: str, wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_HOLD_WAIT)
    while True:
        approval = await core.read(core.store.approval_by_token, key.tenant_id, token)
        if approval is None:
            raise ClientError(404, "unknown hold token")
        if approval["status"] == "pending" and approval["_expires_ts"] <= time.time():
            await core.read(core.store.expire_approvals, key.tenant_id)
            continue
        remaining = deadline - time.monotonic()
        if approval["status"] == "approved":  # the first ALLOW takes the hold's use (docs/approvals.md)
            return hold_answer(approval, await core.read(core.store.use_approval, approval, True))
        if approval["status"] != "pending" or remaining <= 0:
            return hold_answer(approval)
        # Woken at once by a resolution in this process; other processes are seen by re-reading.
        event = core.hold_events.setdefault(token, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout=min(core.settings.hold_poll_interval, remaining))
        except TimeoutError:
            pass
        finally:
            if event.is_set():
                core.hold_events.pop(token, None)

async def resolve_approval(core: Core, tenant_id: str | None, approval_id: str, approve: bool,
                           resolved_by: str, reason: str | None, via: str = "api") -> dict[str, Any]:
    """Resolve a pending approval (used by the API, the dashboard and notification integrations).

    A two-person approval answers with status still "pending" after its first approver.
    """
    outcome, approval = await asyncio.to_thread(
        core.store.resolve_approval, tenant_id, approval_id, approve, resolved_by, reason, via)
    if outcome == "not_found" or approval is None:
        raise ClientError(404, "unknown approval")
    problem = resolution_problem(outcome, approval, resolved_by)
    if problem is not None:
        raise ClientError(*problem)
    if outcome == "partial":
        return approval
    event = core.hold_events.pop(approval["hold_token"], None)
    if event is not None:
        event.set()
    if approve:
        core.learn_approved(approval)
    fire(core.hold_resolved_hooks, approval)
    return approval

def learn_approved(core: Core, approval: dict[str, Any]) -> None:
    """A held call is learnt by analytics only once a human approved it."""
    analytics = core.analytics(approval["tenant_id"])
    if analytics is not None:
        with contextlib.suppress(Exception):
            analytics.observe(approval["agent_id"], approval["tool_name"], approval["tool_args"] or {},
                              time.time(), "ALLOW", session_id=approval["session_id"])

def fire(hooks: list[Callable[[dict[str, Any]], Any]], approval: dict[str, Any]) -> None:
    for hook in hooks:
        try:
            result = hook(public_approval(approval))
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result)
        except Exception:  # a notifier must never break enforcement
            pass


def resolution_problem(outcome: str, approval: dict[str, Any], resolver: str) -> tuple[int, str] | None:
    """The (status, message) a refused resolution answers, or None when it was accepted."""
    if outcome == "not_pending":
        return 409, f"approval is already {approval['status']}"
    if outcome == "self_approval":
        return 403, f"{resolver} requested this call and cannot approve it"
    if outcome == "already_reviewed":
        return 409, f"{resolver} has already approved; this tool needs a second, different approver"
    return None


def public_approval(approval: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in approval.items() if not k.startswith("_")}

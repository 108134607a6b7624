"""Notification channels an admin configures per tenant on the dashboard's Settings page.

Rows live in `dashboard_channels` (migration 0007_dashboard_tables): kind, target
(a Slack channel or user id, a webhook URL, or e-mail recipients), `options` (JSON: the agent
and rule the channel is for, both optional) and `secrets` (JSON: the webhook's signing secret,
a Slack bot token and signing secret; each a literal or `env:NAME`). Secrets are written once
and never read back by a page: the Settings list only says whether one is set.

What a target and secrets must be, and how a row becomes a `Channel`, is the kind's business
(`CHANNELS[kind].form_problem / stored_target / from_settings`). A Settings channel is named
`tenant-<channel_id>` in notification records and webhook callback URLs. How these channels and the file's routes combine: docs/approvals.md ("Precedence").
"""

from __future__ import annotations

import secrets as random
import time
from typing import Any

import orjson

from thoth.server.notify.channels import CHANNELS, listed
from thoth.server.notify.config import Channel, NotifyConfig, Route

KINDS = tuple(CHANNELS)
NAME_PREFIX = "tenant-"


def problem(kind: str, target: str, *, secret: str = "", agent: str = "", rule: str = "", bot_token: str = "",
            signing_secret: str = "") -> str | None:
    """Why this channel cannot be saved (a sentence for the form), or None."""
    found = CHANNELS.get(kind)
    if found is None:
        return f"Choose a channel kind: {listed(' or ')}."
    if not target or len(target) > 2000:
        return "A channel needs a target (at most 2000 characters)."
    if len(agent) > 200 or len(rule) > 200:
        return "Agent and rule are at most 200 characters."
    return found.form_problem(target, {"secret": secret, "bot_token": bot_token, "signing_secret": signing_secret})


def add(db: Any, tenant_id: str, kind: str, target: str, created_by: str, *, secret: str = "", agent: str = "",
        rule: str = "", bot_token: str = "", signing_secret: str = "") -> str:
    channel_id = random.token_hex(8)
    if kind in CHANNELS:
        target = CHANNELS[kind].stored_target(target)
    options = {k: v for k, v in (("agent", agent), ("rule", rule)) if v}
    kept = {k: v for k, v in (("secret", secret), ("bot_token", bot_token), ("signing_secret", signing_secret)) if v}
    with db.transaction() as conn:
        conn.execute("INSERT INTO dashboard_channels (channel_id, tenant_id, kind, target, created_at, created_by,"
                     " options, secrets) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (channel_id, tenant_id, kind, target, time.time(), created_by,
                      orjson.dumps(options).decode(), orjson.dumps(kept).decode() if kept else None))
    return channel_id


def delete(db: Any, tenant_id: str, channel_id: str) -> bool:
    """False when the tenant has no such channel (nothing removed)."""
    with db.transaction() as conn:
        return bool(conn.execute("DELETE FROM dashboard_channels WHERE channel_id = ? AND tenant_id = ?",
                                 (channel_id, tenant_id)).rowcount)


def listing(db: Any, tenant_id: str) -> list[dict[str, Any]]:
    """What the Settings page shows: never a secret, only which ones are set."""
    with db.read() as conn:
        rows = conn.all("SELECT channel_id, kind, target, created_at, created_by, options, secrets"
                        " FROM dashboard_channels WHERE tenant_id = ? ORDER BY created_at", (tenant_id,))
    out = []
    for channel_id, kind, target, created_at, created_by, options, kept in rows:
        opts, sec = _json(options), _json(kept)
        out.append({"channel_id": channel_id, "name": NAME_PREFIX + channel_id, "kind": kind, "target": target,
                    "created_at": created_at, "created_by": created_by, "agent": opts.get("agent") or "",
                    "rule": opts.get("rule") or "", "secrets_set": sorted(sec)})
    return out


def _json(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _channel(config: NotifyConfig, channel_id: str, kind: str, target: str, kept: dict[str, Any]) -> Channel:
    return CHANNELS[kind].from_settings(NAME_PREFIX + channel_id, target, kept, config)


def load(db: Any, tenant_id: str, config: NotifyConfig) -> tuple[list[Channel], list[Route]]:
    """The tenant's Settings channels and one route per channel (tenant, plus agent / rule if set)."""
    try:
        with db.read() as conn:
            rows = conn.all("SELECT channel_id, kind, target, options, secrets FROM dashboard_channels"
                            " WHERE tenant_id = ? ORDER BY created_at", (tenant_id,))
    except Exception:  # a server without the dashboard's tables: the file config alone
        return [], []
    channels, routes = [], []
    for channel_id, kind, target, options, kept in rows:
        if kind not in CHANNELS:  # e.g. a legacy kind the notifier cannot deliver
            continue
        opts = _json(options)
        channel = _channel(config, channel_id, kind, target, _json(kept))
        channels.append(channel)
        routes.append(Route((channel.name,), tenant_id, opts.get("agent") or None, opts.get("rule") or None))
    return channels, routes


def by_name(db: Any, name: str, config: NotifyConfig) -> tuple[str, Channel] | None:
    """(tenant, channel) of a Settings channel name, for webhook callbacks and outcome messages."""
    if not name.startswith(NAME_PREFIX):
        return None
    channel_id = name[len(NAME_PREFIX):]
    try:
        with db.read() as conn:
            row = conn.one("SELECT tenant_id, kind, target, secrets FROM dashboard_channels WHERE channel_id = ?",
                           (channel_id,))
    except Exception:
        return None
    if row is None or row[1] not in CHANNELS:
        return None
    return row[0], _channel(config, channel_id, row[1], row[2], _json(row[3]))

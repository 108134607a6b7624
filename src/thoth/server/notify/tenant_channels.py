"""Notification channels an admin configures per tenant on the dashboard's Settings page.

Rows live in `dashboard_channels` (created by `thoth.server.dashboard.schema`): kind, target
(a Slack channel or user id, a webhook URL, or e-mail recipients), `options` (JSON: the agent
and rule the channel is for, both optional) and `secrets` (JSON: the webhook's signing secret,
a Slack bot token and signing secret; each a literal or `env:NAME`). Secrets are written once
and never read back by a page: the Settings list only says whether one is set.

A Settings channel is named `tenant-<channel_id>` in notification records and webhook callback
URLs. How these channels and the file's routes combine: docs/approvals.md ("Precedence").
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets as random
import time
from typing import Any

import orjson

from thoth.server.notify.config import Channel, NotifyConfig, Route

KINDS = ("slack", "webhook", "email")
NAME_PREFIX = "tenant-"
_SLACK_TARGET = re.compile(r"^(#[a-z0-9._-]{1,80}|[CDGUW][A-Z0-9]{2,30})$")
_ADDRESS = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")
_ENV_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
MIN_WEBHOOK_SECRET = 16


def recipients(target: str) -> list[str]:
    return [a.strip() for a in re.split(r"[,;\s]+", target) if a.strip()]


def problem(kind: str, target: str, *, secret: str = "", agent: str = "", rule: str = "", bot_token: str = "",
            signing_secret: str = "") -> str | None:
    """Why this channel cannot be saved (a sentence for the form), or None."""
    if kind not in KINDS:
        return "Choose a channel kind: slack, webhook or email."
    if not target or len(target) > 2000:
        return "A channel needs a target (at most 2000 characters)."
    if len(agent) > 200 or len(rule) > 200:
        return "Agent and rule are at most 200 characters."
    if kind == "webhook":
        if not target.startswith(("https://", "http://")):
            return "A webhook channel needs an http(s) URL."
        if not (_ENV_REF.match(secret) or len(secret) >= MIN_WEBHOOK_SECRET):
            return f"A webhook channel needs a signing secret of {MIN_WEBHOOK_SECRET}+ characters (or env:NAME)."
    elif kind == "email":
        found = recipients(target)
        if not found or not all(_ADDRESS.match(a) for a in found) or len(found) > 50:
            return "An email channel needs one or more addresses, separated by commas."
    else:
        if not _SLACK_TARGET.match(target):
            return "A Slack channel needs a channel id (C…), a #name or a reviewer's user id (U…)."
        for value, what in ((bot_token, "bot token"), (signing_secret, "signing secret")):
            if value and not (_ENV_REF.match(value) or len(value) >= 16):
                return f"The Slack {what} is a reference env:NAME (or the value itself)."
    return None


def add(db: Any, tenant_id: str, kind: str, target: str, created_by: str, *, secret: str = "", agent: str = "",
        rule: str = "", bot_token: str = "", signing_secret: str = "") -> str:
    channel_id = random.token_hex(8)
    if kind == "email":
        target = ", ".join(recipients(target))
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


def _resolve(value: str, problems: list[str], what: str) -> str:
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            problems.append(f"{what}: environment variable {name} is not set on the server")
            return ""
        return os.environ[name]
    return value


def _channel(config: NotifyConfig, channel_id: str, kind: str, target: str, kept: dict[str, Any]) -> Channel:
    problems: list[str] = []
    name = NAME_PREFIX + channel_id
    if kind == "webhook":
        return Channel(name, kind, url=target, secret=_resolve(str(kept.get("secret", "")), problems, "secret"),
                       problem="; ".join(problems))
    if kind == "email":
        base = config.email_defaults
        return dataclasses.replace(base, name=name, mail_to=tuple(recipients(target)))
    token = _resolve(str(kept.get("bot_token", "")), problems, "bot token")
    signing = _resolve(str(kept.get("signing_secret", "")), problems, "signing secret")
    if not token and not config.slack.bot_token:
        problems.append("no Slack bot token: set one on the channel or slack.bot_token in notify.yaml")
    return Channel(name, kind, slack_channel=target, slack_token=token, slack_signing_secret=signing,
                   problem="; ".join(problems))


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
        if kind not in KINDS:  # e.g. a legacy kind the notifier cannot deliver
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
    if row is None or row[1] not in KINDS:
        return None
    return row[0], _channel(config, channel_id, row[1], row[2], _json(row[3]))


def signing_secrets(db: Any, tenant_id: str) -> list[str]:
    """The Slack signing secrets a tenant's Settings channels name (for interactivity requests)."""
    channels, _ = load(db, tenant_id, NotifyConfig())
    return [c.slack_signing_secret for c in channels if c.kind == "slack" and c.slack_signing_secret]

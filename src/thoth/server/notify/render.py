"""What a reviewer sees: Slack blocks, e-mail text/HTML and the webhook body for one held call.

Tool arguments, tool names, agent and user ids all come from the agent, so they are
attacker-controlled: each is truncated and escaped for the medium it lands in (Slack mrkdwn,
HTML, plain text) so it can neither ping people, inject links or buttons, nor hide text.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# Bidi overrides, zero-width and other invisible characters can make "rm -rf /" read as
# something harmless; show them as escapes instead.
_INVISIBLE = re.compile("[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f"
                        "\u2028-\u202e\u2060-\u2069\ufeff]")
MAX_FIELD = 200
MAX_VALUE = 300


def clean(text: Any, limit: int = MAX_FIELD) -> str:
    """One line of untrusted text: invisible characters made visible, cut to `limit` characters."""
    s = str(text) if text is not None else ""
    s = _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
    if len(s) > limit:
        s = s[:limit] + f"… (+{len(s) - limit} chars)"
    return s


def _shorten(value: Any, depth: int = 0) -> Any:
    """Long strings and long lists inside the arguments are cut so one value cannot hide the rest."""
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + f"… (+{len(value) - MAX_VALUE} chars)"
    if depth >= 6:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())
        out = {clean(k, 80): _shorten(v, depth + 1) for k, v in items[:50]}
        if len(items) > 50:
            out["…"] = f"{len(items) - 50} more keys"
        return out
    if isinstance(value, list):
        shown = [_shorten(v, depth + 1) for v in value[:30]]
        if len(value) > 30:
            shown.append(f"… {len(value) - 30} more items")
        return shown
    return value


def format_args(tool_args: Any, limit: int) -> str:
    """Pretty JSON of the arguments, invisible characters escaped, at most `limit` characters."""
    text = json.dumps(_shorten(tool_args), indent=2, sort_keys=True, ensure_ascii=False, default=str)
    text = _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if len(text) > limit:
        text = text[:limit] + f"\n… truncated ({len(text) - limit} more chars; full arguments in the dashboard)"
    return text


def slack_escape(text: str) -> str:
    """Slack's three control characters; with them escaped, <!channel>, <@U..> and <url|label> are inert."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_code(text: str) -> str:
    # A ``` inside the arguments would close the code block and let the rest render as mrkdwn.
    return "```" + slack_escape(text).replace("```", "`\u200b`\u200b`") + "```"


def _slack_plain(text: str) -> str:
    # Untrusted values go in inline code, where *bold* _italic_ ~strike~ do not apply; a backtick
    # would end it, so it is shown as the look-alike U+02CB.
    if not text:
        return " "
    return "`" + slack_escape(text).replace("`", "\u02cb") + "`"


@dataclass(frozen=True)
class HeldCall:
    """Everything a message shows about one approval."""

    approval_id: str
    tenant_id: str
    tool_name: str
    tool_args: Any
    agent_id: str
    user_id: str
    session_id: str
    reason: str
    matched_rule_ids: list[str]
    risk_score: float | None
    expires_at: str
    required_approvals: int
    dashboard_url: str

    @property
    def session_link(self) -> str:
        if not self.dashboard_url:
            return ""
        return f"{self.dashboard_url}/sessions/{quote(self.session_id, safe='')}"

    @property
    def approvals_link(self) -> str:
        return f"{self.dashboard_url}/approvals" if self.dashboard_url else ""

    def summary(self) -> str:
        return f"Approval needed: {clean(self.agent_id, 80)} wants to run {clean(self.tool_name, 80)}"


def _risk(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def slack_request(call: HeldCall, max_args: int) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of the request message, with Approve / Deny buttons."""
    fields = [
        ("Agent", call.agent_id), ("User", call.user_id), ("Tool", call.tool_name),
        ("Risk score", _risk(call.risk_score)),
        ("Matched rules", ", ".join(call.matched_rule_ids) or "none"), ("Expires", call.expires_at),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Approval needed", "emoji": False}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{name}*\n{_slack_plain(clean(value))}"} for name, value in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Reason*\n" + _slack_plain(clean(call.reason, 500))}},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": "*Arguments*\n" + _slack_code(format_args(call.tool_args, max_args))}},
    ]
    if call.required_approvals > 1:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                       f"Two-person rule: {call.required_approvals} different approvers are needed."}]})
    actions: list[dict[str, Any]] = [
        {"type": "button", "action_id": "thoth_approve", "style": "primary", "value": call.approval_id,
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": "thoth_deny", "style": "danger", "value": call.approval_id,
         "text": {"type": "plain_text", "text": "Deny"}},
    ]
    if call.session_link:
        actions.append({"type": "button", "action_id": "thoth_open", "url": call.session_link,
                        "text": {"type": "plain_text", "text": "Open session"}})
    blocks.append({"type": "actions", "block_id": f"thoth:{call.approval_id}", "elements": actions})
    return slack_escape(call.summary()), blocks


def outcome_line(approval: dict[str, Any]) -> str:
    status = approval.get("status")
    who = clean(approval.get("resolved_by") or "", 120)
    when = approval.get("resolved_at") or ""
    if status == "approved":
        text = f"Approved by {who} at {when}"
    elif status == "denied":
        text = f"Denied by {who} at {when}"
    elif status == "expired":
        text = f"Expired at {when}: the call was blocked"
    else:
        text = f"Approved by {who}; waiting for another approver"
    reason = approval.get("reason")
    if reason and status in ("approved", "denied"):
        text += f" (reason: {clean(reason, 300)})"
    return text


def slack_outcome(call: HeldCall, approval: dict[str, Any], max_args: int) -> tuple[str, list[dict[str, Any]]]:
    """The request message with its buttons replaced by the outcome."""
    _, blocks = slack_request(call, max_args)
    blocks = [b for b in blocks if b["type"] != "actions"]
    blocks[0] = {"type": "header", "text": {"type": "plain_text", "emoji": False, "text": {
        "approved": "Approved", "denied": "Denied", "expired": "Expired"}.get(approval.get("status") or "",
                                                                               "Approval needed")}}
    line = outcome_line(approval)
    blocks.append({"type": "section", "text": {"type": "plain_text", "text": line[:2900], "emoji": False}})
    if call.session_link:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<{call.session_link}|Open session in the dashboard>"}]})
    return slack_escape(f"{call.summary()}: {line}"), blocks


def email_request(call: HeldCall, max_args: int, cli_hint: bool = True) -> tuple[str, str, str]:
    """(subject, text body, HTML body)."""
    subject = clean(call.summary(), 150).replace("\r", " ").replace("\n", " ")
    args = format_args(call.tool_args, max_args)
    rows = [
        ("Agent", clean(call.agent_id)), ("User", clean(call.user_id)), ("Tool", clean(call.tool_name)),
        ("Session", clean(call.session_id)), ("Risk score", _risk(call.risk_score)),
        ("Matched rules", clean(", ".join(call.matched_rule_ids) or "none", 500)),
        ("Reason", clean(call.reason, 500)), ("Expires", call.expires_at),
        ("Approvals needed", str(call.required_approvals)),
    ]
    steps = []
    if call.approvals_link:
        steps.append(f"Approve or deny in the dashboard: {call.approvals_link}")
    if cli_hint:
        steps.append(f"or: thoth approvals approve {call.approval_id}  |  thoth approvals deny {call.approval_id}")
    text = "\n".join([f"{k}: {v}" for k, v in rows] + ["", "Arguments:", args, "", *steps]) + "\n"
    table = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    links = ""
    if call.session_link:
        links += f"<p><a href=\"{html.escape(call.session_link)}\">Open the session</a>"
        links += f" · <a href=\"{html.escape(call.approvals_link)}\">Approve or deny</a></p>"
    body = (f"<h2>{html.escape(subject)}</h2><table>{table}</table><h3>Arguments</h3>"
            f"<pre>{html.escape(args)}</pre>{links}"
            f"<p><code>thoth approvals approve {html.escape(call.approval_id)}</code></p>")
    return subject, text, body


def webhook_body(kind: str, call: HeldCall, approval: dict[str, Any], callback_url: str) -> dict[str, Any]:
    """JSON for webhook receivers: the raw (JSON-escaped) arguments plus a display-safe rendering."""
    return {
        "type": kind,
        "approval_id": call.approval_id,
        "tenant_id": call.tenant_id,
        "status": approval.get("status"),
        "tool_name": call.tool_name,
        "tool_args": call.tool_args,
        "tool_args_display": format_args(call.tool_args, 4000),
        "args_digest": approval.get("args_digest"),
        "agent_id": call.agent_id,
        "user_id": call.user_id,
        "session_id": call.session_id,
        "reason": call.reason,
        "matched_rule_ids": call.matched_rule_ids,
        "risk_score": call.risk_score,
        "requested_at": approval.get("requested_at"),
        "expires_at": call.expires_at,
        "required_approvals": call.required_approvals,
        "resolved_by": approval.get("resolved_by"),
        "resolved_at": approval.get("resolved_at"),
        "resolution_reason": approval.get("reason") if approval.get("status") != "pending" else None,
        "session_url": call.session_link or None,
        "callback_url": callback_url or None,
    }

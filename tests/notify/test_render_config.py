"""Rendering of untrusted text and channel routing (pure functions)."""

from __future__ import annotations

import json

import pytest

from thoth.server.notify.config import NotifyConfigError, parse
from thoth.server.notify.render import HeldCall, clean, email_request, format_args, slack_request
from thoth.server.notify.signing import SignatureError, sign_webhook, verify_webhook


def _call(**kw: object) -> HeldCall:
    base = dict(approval_id="apr_1", tenant_id="t", tool_name="run_sql", tool_args={"q": "drop table users"},
                agent_id="agent", user_id="u", session_id="s/1", reason="r", matched_rule_ids=["r1"],
                risk_score=0.912, expires_at="2030-01-01T00:00:00Z", required_approvals=1,
                dashboard_url="https://thoth.example")
    base.update(kw)
    return HeldCall(**base)  # type: ignore[arg-type]


def test_clean_makes_invisible_characters_visible_and_truncates() -> None:
    assert clean("a\u202eb\u200bc\x00") == "a\\u202eb\\u200bc\\u0000"
    assert clean("x" * 500, 10) == "x" * 10 + "… (+490 chars)"


def test_format_args_truncates_each_value_and_the_whole() -> None:
    text = format_args({"k": "v" * 1000, "list": list(range(100))}, 10_000)
    assert "v" * 301 not in text and "(+700 chars)" in text and "70 more items" in text
    short = format_args({f"k{i}": "x" * 200 for i in range(40)}, 500)
    assert len(short) < 600 and "truncated" in short


def test_slack_fields_cannot_format_mention_or_link() -> None:
    _, blocks = slack_request(_call(agent_id="*boss* <@U1> `x`", tool_name="<https://e.vil|ok>"), 1000)
    text = json.dumps(blocks)
    assert "<@U1>" not in text and "<https://e.vil" not in text and "&lt;@U1&gt;" in text
    assert "`*boss* &lt;@U1&gt; \\u02cbx\\u02cb`" in text  # inline code, backticks replaced
    assert "https://thoth.example/sessions/s%2F1" in text and "0.91" in text and "r1" in text


def test_email_subject_has_no_header_injection() -> None:
    subject, text, html = email_request(_call(agent_id="a\r\nBcc: x@evil"), 1000)
    assert "\n" not in subject and "\r" not in subject
    assert "<b>" not in email_request(_call(tool_args={"x": "<b>"}), 1000)[2].split("<pre>")[1]


def test_routes_pick_most_specific_and_two_person() -> None:
    cfg = parse({
        "slack": {"bot_token": "xoxb"},
        "channels": {"all": {"type": "slack", "channel": "C1"}, "acme": {"type": "slack", "channel": "C2"},
                     "bot": {"type": "slack", "channel": "C3"}, "rule": {"type": "slack", "channel": "C4"}},
        "routes": [{"channels": ["all"]}, {"tenant": "acme", "channels": ["acme"]},
                   {"tenant": "acme", "agent": "billing", "channels": ["bot"]}, {"rule": "wire", "channels": ["rule"]}],
        "two_person": [{"tools": ["wire_*"], "tenant": "acme"}],
    })
    names = lambda t, a, r: [c.name for c in cfg.channels_for(t, a, r)]  # noqa: E731
    assert names("other", "x", []) == ["all"]
    assert names("acme", "x", []) == ["acme"]
    assert names("acme", "billing", []) == ["bot"]
    assert names("acme", "billing", ["wire"]) == ["rule"]
    assert cfg.required_approvals("acme", "wire_transfer") == 2
    assert cfg.required_approvals("other", "wire_transfer") == 1


@pytest.mark.parametrize("doc, message", [
    ({"channels": {"x": {"type": "sms"}}}, "type must be one of"),
    ({"channels": {"x": {"type": "webhook", "url": "ftp://a", "secret": "s" * 20}}}, "http(s) URL"),
    ({"channels": {"x": {"type": "webhook", "url": "http://a", "secret": "short"}}}, "at least 16"),
    ({"channels": {"x": {"type": "slack", "channel": "C1"}}}, "needs slack.bot_token"),
    ({"routes": [{"channels": ["nope"]}]}, "unknown channel"),
    ({"slack": {"bot_token": "env:THOTH_TEST_SURELY_UNSET"}}, "is not set"),
])
def test_config_errors_are_clear(doc: dict[str, object], message: str) -> None:
    with pytest.raises(NotifyConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(doc)


def test_webhook_signature_roundtrip_and_refusals() -> None:
    body = b'{"a":1}'
    header = sign_webhook("s" * 20, body, 1_700_000_000)
    assert verify_webhook("s" * 20, header, body, now=1_700_000_010).startswith(header.split("v1=")[1][:8])
    for bad_header, bad_body, msg in ((header, b'{"a":2}', "invalid signature"), ("v1=abc", body, "malformed"),
                                      (None, body, "missing")):
        with pytest.raises(SignatureError, match=msg):
            verify_webhook("s" * 20, bad_header, bad_body, now=1_700_000_010)
    with pytest.raises(SignatureError, match="stale"):
        verify_webhook("s" * 20, header, body, now=1_700_001_000)

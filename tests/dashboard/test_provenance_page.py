"""The session page shows, for held and blocked calls of our SDK, where their arguments came from
and the task's plan (and the task itself when the opt-in sends it); nothing for allowed calls or
for published clients' calls. Over HTTP, and in Chromium."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from tests.dashboard.browser import browser, log_in, shot
from tests.support.dashboard import Agent, Server

__all__ = ["browser"]

POLICY = """
version: 1
tools:
  read_inbox: {tier: low, classification: read}
  send_email: {tier: low, classification: external}
  search: {tier: low, classification: read}
rules:
  - id: recipient-from-untrusted
    when: {tool: send_email, args: {to: {source: untrusted}}}
    action: block
    reason: a recipient named only by content the agent read
  - id: off-plan
    when: {in_plan: false, classification: external}
    action: step_up
    reason: the task's plan does not send mail
  - id: any-mail-to-evil
    when: {tool: send_email, args: {to: {domain: evil.example}}}
    action: block
    reason: a known bad domain
"""
SCOPE = ["read_inbox", "send_email", "search"]
HOSTILE = "<script>alert(1)</script>@evil.example"


def push_policy(server: Server) -> None:
    r = httpx.put(server.url + "/v1/policies", headers={"x-api-key": server.key("admin")},
                  json={"document": POLICY}, timeout=10)
    assert r.status_code == 200, r.text


def traffic(server: Server) -> tuple[Agent, Agent]:
    push_policy(server)
    ours = Agent(server, server.key("sdk"), agent_id="mail-bot", user_id="erin", scope=SCOPE, mode="progressive")
    task = {"id": "task-1", "plan": {"tools": ["read_inbox", "send_email"], "source": "tasks:reply"},
            "text": "Reply to Bob's last mail about the offsite"}
    ours.call("read_inbox", {"folder": "inbox"}, task=task, arg_sources={"folder": ["task"]})
    blocked = ours.call("send_email", {"to": HOSTILE, "body": "Sure, here it is"}, task=task,
                        arg_sources={"to": ["tool:read_inbox#1"], "body": []})
    assert blocked["decision"] == "BLOCK" and blocked["provenance"]["args"][0]["state"] == "untrusted"
    allowed = ours.call("send_email", {"to": "bob@corp.example", "body": "Thursday works"}, task=task,
                        arg_sources={"to": ["task", "tool:read_inbox#1"], "body": ["task"]})
    assert allowed["decision"] == "ALLOW"
    held = ours.call("send_email", {"to": "ann@corp.example", "body": "hi"},
                     task={"id": "task-2", "plan": {"tools": ["search"], "source": "intent"}},
                     arg_sources={"to": ["task"], "body": ["task"]})
    assert held["decision"] == "STEP_UP"
    # A published client: the same kind of call, blocked by a plain rule, no provenance.
    published = Agent(server, server.key("sdk"), agent_id="old-bot", user_id="finn", scope=SCOPE)
    assert published.call("send_email", {"to": "x@evil.example", "body": "b"})["decision"] == "BLOCK"
    time.sleep(0.3)  # the group-commit writer
    return ours, published


def blocked_id(c: Any, agent: Agent) -> str:
    import re

    page = c.get(f"/sessions/{agent.session_id}").text
    found = re.search(r'href="/violations/(vio_[A-Za-z0-9_]+)"', page)
    assert found is not None
    return found.group(1)


def test_session_page_shows_where_held_and_blocked_arguments_came_from(server: Server) -> None:
    ours, published = traffic(server)
    c = server.login()
    page = c.get(f"/sessions/{ours.session_id}").text
    assert page.count('<div class="provenance">') == 2  # the blocked and the held call, not the allowed one
    assert "Reply to Bob&#39;s last mail about the offsite" in page  # the opted-in task text
    assert "untrusted output only" in page and "read_inbox (call 1)" in page
    assert "seen nowhere (model-made)" in page  # the body
    assert "read_inbox, send_email" in page and "(tasks:reply)" in page
    assert "this call is outside it" in page and "send_email is not among the tools the task&#39;s plan" in page
    assert "appeared only in the output of read_inbox (call 1), untrusted" in page  # the reason
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    violation = c.get(f"/violations/{blocked_id(c, ours)}").text
    assert "Where the arguments came from" in violation and "read_inbox (call 1)" in violation
    queue = c.get("/approvals").text  # the held call, as the approver sees it
    assert queue.count('<div class="provenance">') >= 1 and "this call is outside it" in queue
    other = c.get(f"/sessions/{published.session_id}").text
    assert 'class="provenance"' not in other and "a known bad domain" in other


@pytest.mark.browser
def test_session_page_provenance_in_chromium(server: Server, browser: Any) -> None:
    ours, _ = traffic(server)
    page = log_in(browser, server.url, "admin", server.admin_password)
    page.goto(server.url + f"/sessions/{ours.session_id}")
    boxes = page.locator("ol.timeline li.call.d-block .provenance")
    assert boxes.count() == 1
    box = boxes.first
    assert box.is_visible()
    assert "Reply to Bob's last mail about the offsite" in box.locator(".task-text").inner_text()
    rows = box.locator("table.prov tbody tr")
    assert rows.count() == 2
    first = rows.nth(0).inner_text()
    assert HOSTILE in first and "untrusted output only" in first and "read_inbox (call 1)" in first
    assert rows.nth(0).get_attribute("class") == "st-untrusted"
    assert page.locator("ol.timeline li.call.d-step_up .provenance .off-plan").is_visible()
    assert page.locator("ol.timeline li.call.d-allow .provenance").count() == 0
    assert page.evaluate("() => window.__xss === undefined")
    shot(page, "session-provenance")

"""Real browser flows: log in, watch an instrumented agent's session appear, approve a step-up
while the SDK waits, edit a policy; a screenshot of every page lands in artifacts/screenshots/."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from tests.dashboard.browser import browser, log_in, shot
from tests.support.dashboard import Agent, Server

pytestmark = pytest.mark.browser
__all__ = ["browser"]


def governed_tools(server: Server, key: str, **settings: Any) -> dict[str, Any]:
    import thoth

    def lookup(order: str) -> str:
        return f"order {order}: shipped"

    def issue_refund(order: str, amount: int) -> str:
        ran.append(order)
        return f"refunded {amount}"

    return thoth.instrument_openai({"lookup": lookup, "issue_refund": issue_refund}, agent_id="refund-agent",
                                   approved_scope=["lookup"], tenant_id="default", api_key=key, api_url=server.url,
                                   user_id="dana", step_up_poll_interval_seconds=0.2, **settings)


ran: list[str] = []


def test_login_session_appears_approve_step_up_and_edit_policy(server: Server, browser: Any) -> None:
    import thoth

    ran.clear()  # the test runs once per database backend
    page = log_in(browser, server.url, "admin", server.admin_password)
    key = server.key("sdk")

    # an instrumented agent runs: its session shows up in the list and its timeline
    tools = governed_tools(server, key, enforcement="step_up")
    assert tools["lookup"]({"order": "A-1"}) == "order A-1: shipped"
    thoth.flush()
    page.goto(server.url + "/sessions?agent=refund-agent")
    page.wait_for_selector("table.list a.mono")
    page.click("table.list a.mono")
    page.wait_for_selector("ol.timeline li.call")
    assert "lookup" in page.inner_text("ol.timeline")
    assert f"via key {key.split('_')[1]}" in page.inner_text("ol.timeline li.call .sender")
    session_url = page.url

    # a step-up: the SDK call waits until someone approves in the browser
    result: dict[str, Any] = {}
    # a daemon: if the test fails while the call still waits for approval, pytest can still exit
    worker = threading.Thread(target=lambda: result.update(out=tools["issue_refund"]({"order": "A-1", "amount": 30})),
                              daemon=True)
    worker.start()
    page.goto(server.url + "/approvals")
    card = page.wait_for_selector("article.approval", timeout=15000)  # arrives by live polling
    assert "issue_refund" in card.inner_text()
    assert worker.is_alive() and not ran
    shot(page, "approvals")
    page.fill("article.approval input[name=reason]", "customer called, verified")
    page.click("article.approval button.approve")
    page.wait_for_selector("text=Approved: issue_refund")
    worker.join(20)
    assert result.get("out") == "refunded 30" and ran == ["A-1"]
    assert "customer called, verified" in page.inner_text("#approvals-live")
    # the approval shows its use and window (the live queue picks the use up on its own)
    row = page.wait_for_selector("tr:has(td.uses:text('1 / 1'))", timeout=10000)
    assert "spent" in row.inner_text() and "UTC" in row.inner_text()

    # the same refund again: a replay does not ride on the approval, it is held anew
    replay: dict[str, Any] = {}

    def refund_again() -> None:
        try:
            replay["out"] = tools["issue_refund"]({"order": "A-1", "amount": 30})
        except thoth.ThothPolicyViolation as exc:
            replay["blocked"] = exc.reason

    again = threading.Thread(target=refund_again, daemon=True)
    again.start()
    card = page.wait_for_selector("article.approval", timeout=15000)
    assert "issue_refund" in card.inner_text() and "1 time, within 600 s" in card.inner_text()
    assert again.is_alive() and ran == ["A-1"]
    page.click("article.approval button.deny")
    page.wait_for_selector("text=Denied: issue_refund")
    again.join(20)
    assert ran == ["A-1"] and replay == {"blocked": "denied by approver"}  # the refund did not run twice

    # the approval loop's records in the timeline are the server's own, not a key's
    page.goto(session_url)
    resolved = page.locator("ol.timeline li.call", has_text="APPROVAL_RESOLVED").first
    assert "via server" in resolved.inner_text()

    # edit the policy: validation as you type, then save a new version
    page.goto(server.url + "/policies")
    editor = page.locator("#policy-text")
    editor.fill("version: 1\nrules:\n  - id: r\n    action: nope\n    when: {tool: x}\n")
    page.wait_for_selector("#policy-errors .error-list >> text=line 4", timeout=10000)
    assert page.locator(".editor .hl .err").count() >= 1  # the bad line is marked in the editor
    editor.fill("version: 1\nname: refunds\nrules:\n  - id: no-big-refunds\n    when: {tool: issue_refund}\n"
                "    action: block\n    reason: refunds need finance\n")
    page.wait_for_selector("#policy-errors .valid", timeout=10000)
    page.click("form.simulate button")
    page.wait_for_selector("#simulation .sim", timeout=15000)
    shot(page, "policies")
    page.fill("input[name=comment]", "block refunds")
    page.click("#policy-form button.primary")
    page.wait_for_selector("text=Saved and activated version")
    assert "block refunds" in page.inner_text("aside.versions")


def test_screenshots_of_every_page(server: Server, browser: Any) -> None:
    agents = [Agent(server, server.key("sdk"), agent_id=name, user_id=user, mode=mode)
              for name, user, mode in (("billing-bot", "alice", "block"), ("support-bot", "bob", "step_up"),
                                       ("research-bot", "carol", "block"))]
    for i in range(6):
        for a in agents:
            a.call("search", {"q": f"quarterly report {i}", "limit": 10}, result="x" * (200 + i))
            a.call("read_invoice", {"invoice_id": 1000 + i})
    agents[0].call("wire_money", {"to": "DE89 3704 0044 0532 0130 00", "amount": 12000})
    agents[2].call("delete_records", {"table": "customers", "where": "1=1"})
    agents[1].enforce("issue_refund", {"order": "o-55", "amount": 80})
    time.sleep(0.3)
    page = log_in(browser, server.url, "admin", server.admin_password)
    for name, path in (("overview", "/"), ("sessions", "/sessions"), ("violations", "/violations"),
                       ("analytics", "/analytics"), ("settings", "/settings"), ("approvals", "/approvals")):
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        shot(page, name if name != "approvals" else "approvals-queue")
    page.goto(server.url + f"/sessions/{agents[0].session_id}")
    page.click("ol.timeline li.call.d-block details summary")
    shot(page, "session")
    page.goto(server.url + "/violations")
    page.click("table.list a.mono")
    page.wait_for_selector("dl.kv")
    shot(page, "violation")
    page.goto(server.url + "/policies")
    links = page.locator("ol.version-list a")
    if links.count():
        links.first.click()
        page.wait_for_selector("pre.diff")
        shot(page, "policy-version")
    ctx = browser.new_page()
    ctx.goto(server.url + "/login")
    shot(ctx, "login")

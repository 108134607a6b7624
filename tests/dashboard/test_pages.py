"""What the pages show after real traffic: sessions, timelines, violations, approvals, settings."""

from __future__ import annotations

import re
import threading
import time
import uuid

import httpx
from tests.support.dashboard import Agent, Server, csrf_of


def test_a_session_appears_with_its_timeline(server: Server) -> None:
    key = server.key("sdk")
    agent = Agent(server, key, agent_id="invoice-bot", user_id="bob")
    assert agent.call("search", {"q": "unpaid invoices"}, result="3 found")["decision"] == "ALLOW"
    assert agent.call("read_invoice", {"invoice_id": 17})["decision"] == "ALLOW"
    blocked = agent.call("wire_money", {"to": "acct-9", "amount": 5000})
    assert blocked["decision"] == "BLOCK"
    c = server.login()
    time.sleep(0.3)  # the group-commit writer acknowledges before our next read on another connection
    listing = c.get("/sessions", params={"agent": "invoice-bot"}).text
    assert agent.session_id in listing
    page = c.get(f"/sessions/{agent.session_id}").text
    # every call in order, with its decision, arguments, duration and result size
    assert page.index("search") < page.index("read_invoice") < page.index("wire_money")
    assert "unpaid invoices" in page and "acct-9" in page
    assert "12 ms" in page or "13 ms" in page  # duration_ms 12.5 from the POST event
    assert "7 B" in page  # result_size_bytes of "3 found"
    assert blocked["violation_id"] in page and all(rule in page for rule in blocked["matched_rule_ids"])
    assert blocked["matched_rule_ids"]
    assert page.count('class="badge d-allow"') == 2 and page.count('class="badge d-block"') == 1
    # each call shows the API key its events came with (recorded by the server: keys are thk_<id>_<secret>)
    assert page.count(f"via key {key.split('_')[1]}") == 3 and key.split("_", 2)[2] not in page  # the secret may hold '_'
    # filters
    assert agent.session_id in c.get("/sessions", params={"outcome": "blocked"}).text
    assert agent.session_id not in c.get("/sessions", params={"outcome": "clean"}).text
    assert agent.session_id in c.get("/sessions", params={"user": "bob", "since": "1h"}).text
    assert agent.session_id not in c.get("/sessions", params={"user": "carol"}).text
    assert agent.session_id in c.get("/sessions", params={"q": agent.session_id[:6]}).text


def test_violations_list_and_detail_by_id(server: Server) -> None:
    agent = Agent(server, server.key("sdk"), agent_id="ops-bot")
    d = agent.call("drop_table", {"table": "users"})
    c = server.login()
    time.sleep(0.3)
    listing = c.get("/violations", params={"agent": "ops-bot"}).text
    assert d["violation_id"] in listing and "drop_table" in listing
    by_id = c.get("/violations", params={"id": d["violation_id"]}, follow_redirects=True)
    assert by_id.status_code == 200
    assert "outside the agent" in by_id.text and '"table": "users"' in by_id.text.replace("&#34;", '"')
    assert agent.session_id in by_id.text
    assert d["violation_id"] not in c.get("/violations", params={"decision": "STEP_UP", "agent": "ops-bot"}).text


def test_long_session_timeline_is_paginated(server: Server) -> None:
    agent = Agent(server, server.key("sdk"), agent_id="chatty-bot")
    events = []
    for i in range(450):
        events.append(agent.event("TOOL_CALL_PRE", "search", {"i": i}))
        events.append(agent.event("TOOL_CALL_POST", "search", {"i": i}, duration_ms=1, result_size_bytes=10))
    for start in range(0, len(events), 100):
        agent.send(events[start:start + 100])
    c = server.login()
    first = c.get(f"/sessions/{agent.session_id}").text
    assert "900 events" in first
    assert '"i": 0' in first.replace("&#34;", '"') and '"i": 150' not in first.replace("&#34;", '"')
    later = re.search(r'href="\?after=(\d+)"', first)
    assert later
    second = c.get(f"/sessions/{agent.session_id}?after={later.group(1)}").text.replace("&#34;", '"')
    assert '"i": 100' in second and '"i": 99' not in second
    last = c.get(f"/sessions/{agent.session_id}?before=9223372036854775807").text.replace("&#34;", '"')
    assert '"i": 449' in last and "Later" not in last


def test_approve_a_step_up_and_the_waiting_call_continues(server: Server) -> None:
    agent = Agent(server, server.key("sdk"), agent_id="refund-bot", mode="step_up")
    d = agent.enforce("issue_refund", {"order": "o-77", "amount": 420})
    assert d["decision"] == "STEP_UP" and d["hold_token"]
    answer: dict[str, object] = {}

    def wait_like_the_sdk() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = agent.client.get(f"/v1/enforce/hold/{d['hold_token']}", params={"wait": 5})
            if r.json().get("resolved"):
                answer.update(r.json())
                return

    waiter = threading.Thread(target=wait_like_the_sdk)
    waiter.start()
    c = server.login()
    queue = c.get("/approvals").text
    assert "issue_refund" in queue and "o-77" in queue
    approval_id = re.search(r'data-approval="([^"]+)"', queue)
    assert approval_id
    token = csrf_of(queue)
    # the live endpoint answers 204 while nothing changed
    version = re.search(r'hx-get="/approvals/live\?v=([^"]+)"', queue)
    assert version
    assert c.get("/approvals/live?v=" + httpx.QueryParams({"v": version.group(1)})["v"]).status_code in (200, 204)
    r = c.post(f"/approvals/{approval_id.group(1)}/resolve",
               data={"decision": "approve", "reason": "customer verified", "csrf_token": token},
               headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Approved" in r.text
    waiter.join(35)
    assert answer.get("resolution") == "ALLOW"
    history = c.get("/approvals").text
    assert "customer verified" in history and "user:admin" in history
    # resolving twice changes nothing
    again = c.post(f"/approvals/{approval_id.group(1)}/resolve",
                   data={"decision": "deny", "csrf_token": token}, headers={"HX-Request": "true"})
    assert again.status_code == 200 and "Already approved" in again.text


def test_overview_and_analytics_count_recent_decisions(server: Server) -> None:
    agent = Agent(server, server.key("sdk"), agent_id=f"count-bot-{uuid.uuid4().hex[:4]}")
    for _ in range(3):
        agent.call("search", {"q": "x"})
    agent.call("format_disk", {"disk": "/dev/sda"})
    time.sleep(0.3)
    c = server.login()
    overview = c.get("/").text
    assert agent.agent_id in overview and "format_disk" in overview
    assert 'id="decisions-data"' in overview
    analytics = c.get("/analytics").text
    assert agent.agent_id in analytics


def test_settings_keys_show_once_and_revoke(server: Server) -> None:
    c = server.login()
    token = csrf_of(c.get("/settings").text)
    created = c.post("/settings/keys", data={"role": "viewer", "name": "monitor", "csrf_token": token}).text
    key = re.search(r"data-secret>([^<]+)<", created)
    assert key
    secret = key.group(1).strip()
    assert httpx.get(server.url + "/", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listing = c.get("/settings").text
    assert secret not in listing and "monitor" in listing
    key_id = re.search(r'/settings/keys/([0-9a-f]+)/revoke', listing.split("monitor")[0].split("<tr>")[-1] + listing.split("monitor")[1])
    assert key_id
    assert c.post(f"/settings/keys/{key_id.group(1)}/revoke", data={"csrf_token": token}).status_code == 200
    time.sleep(2.1)  # the server caches keys for cache_ttl seconds
    assert httpx.get(server.url + "/", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_notification_channels(server: Server) -> None:
    c = server.login()
    token = csrf_of(c.get("/settings").text)
    bad = c.post("/settings/channels", data={"kind": "webhook", "target": "javascript:alert(1)", "csrf_token": token})
    assert bad.status_code == 422
    legacy = c.post("/settings/channels", data={"kind": "slack_webhook", "target": "https://hooks.example/T1",
                                                "csrf_token": token})
    assert legacy.status_code == 422  # the notifier delivers slack, webhook and email only
    ok = c.post("/settings/channels", data={"kind": "webhook", "target": "https://hooks.example/T1",
                                            "secret": "a-webhook-secret-of-some-length", "csrf_token": token})
    assert ok.status_code == 200 and "https://hooks.example/T1" in ok.text
    assert "a-webhook-secret-of-some-length" not in ok.text and "secret set" in ok.text

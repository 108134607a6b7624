"""Policy page: validation with line numbers, saving versions, diffs, rollback, simulation."""

from __future__ import annotations

import html
import re
import time

from tests.support.dashboard import Agent, Server, csrf_of

STRICT = """version: 1
name: no-refunds
rules:
  - id: no-refunds
    when: {tool: "refund_*"}
    action: block
    reason: refunds go through the finance desk
"""


def test_validation_names_the_line(server: Server) -> None:
    c = server.login()
    token = csrf_of(c.get("/policies").text)
    bad = "version: 1\nrules:\n  - id: x\n    action: explode\n    when: {tool: a}\n"
    r = c.post("/policies/validate", data={"document": bad}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200
    assert "line 4" in r.text and "explode" in html.unescape(r.text)
    ok = c.post("/policies/validate", data={"document": STRICT}, headers={"X-CSRF-Token": token})
    assert "Valid policy" in ok.text
    # an invalid policy is never saved
    saved = c.post("/policies", data={"document": bad, "csrf_token": token})
    assert saved.status_code == 422 and "line 4" in saved.text


def test_simulate_save_diff_and_roll_back(server: Server) -> None:
    agent = Agent(server, server.key("sdk"), agent_id="refund-bot", scope=["refund_small", "lookup"])
    for i in range(3):
        assert agent.call("refund_small", {"order": f"o-{i}"})["decision"] == "ALLOW"
    agent.call("lookup", {"order": "o-1"})
    time.sleep(0.3)
    c = server.login()
    token = csrf_of(c.get("/policies").text)
    sim = c.post("/policies/simulate", data={"document": STRICT, "days": "7"}, headers={"X-CSRF-Token": token})
    assert sim.status_code == 200
    text = html.unescape(sim.text)
    assert "stricter on 3" in re.sub("<[^>]+>", "", text)
    assert "refund_small" in text and "finance desk" in text

    r = c.post("/policies", data={"document": STRICT, "comment": "finance asked", "csrf_token": token})
    assert r.status_code == 200 and "Saved and activated version" in r.text
    first = int(re.search(r"Saved and activated version (\d+)", r.text).group(1))  # type: ignore[union-attr]
    time.sleep(2.2)  # the server re-reads the active policy after cache_ttl
    assert agent.call("refund_small", {"order": "o-9"})["decision"] == "BLOCK"

    looser = STRICT.replace("action: block", "action: step_up")
    r = c.post("/policies", data={"document": looser, "comment": "step up instead", "csrf_token": token})
    second = int(re.search(r"Saved and activated version (\d+)", r.text).group(1))  # type: ignore[union-attr]
    diff = c.get(f"/policies/versions/{second}").text
    assert "-    action: block" in html.unescape(diff) and "+    action: step_up" in html.unescape(diff)

    r = c.post(f"/policies/versions/{first}/rollback", data={"csrf_token": token})
    assert r.status_code == 200 and f"version {first} is active again" in r.text
    active = server.store.active_policy("default")
    assert active is not None and active["document"] == STRICT and active["version"] > second

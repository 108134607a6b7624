"""Everything an agent sends is untrusted: plant script payloads in every field an agent (or a
user) controls, open every page in Chromium, and prove none of them runs or becomes markup."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from tests.dashboard.browser import browser, log_in
from tests.support.dashboard import Agent, Server, csrf_of

pytestmark = pytest.mark.browser
__all__ = ["browser"]

PAYLOADS = [
    "<script>window.__xss=1;alert(1)</script>",
    '"><img src=x onerror="window.__xss=2;alert(2)">',
    "'><svg onload=window.__xss=3>",
    "</script><script>window.__xss=4</script>",
    "javascript:window.__xss=5",
    "{{7*7}}{% raw %}",
    '<a href="javascript:window.__xss=6" id="xsslink">x</a>',
]
# Elements a payload would create if it were parsed as HTML.
PLANTED = ('img[src="x"], svg[onload], #xsslink, script:not([src]):not([type="application/json"]), '
           "[onerror], [onload]")


def plant(server: Server) -> list[str]:
    paths = []
    p = " ".join(PAYLOADS)
    agent = Agent(server, server.key("sdk"), agent_id=PAYLOADS[1], user_id=PAYLOADS[0],
                  session_id="s-" + PAYLOADS[2], scope=[PAYLOADS[0]])
    args = {PAYLOADS[0]: PAYLOADS[1], "nested": {"k": PAYLOADS[3], "list": PAYLOADS}, "n": PAYLOADS[5]}
    agent.call(PAYLOADS[0], args, result=p)  # in scope: allowed, with a result
    blocked = agent.call(PAYLOADS[1], args)  # out of scope: blocked, violation
    llm = agent.event("LLM_INVOCATION", PAYLOADS[4], None, model=PAYLOADS[6])
    llm["content"] = p
    other = agent.event(PAYLOADS[3], PAYLOADS[6], args)
    agent.send([llm, other])
    stepper = Agent(server, server.key("sdk"), agent_id=PAYLOADS[3], mode="step_up", session_id=PAYLOADS[6])
    stepper.enforce(PAYLOADS[4], args)  # a pending approval full of payloads
    paths += [f"/sessions/{httpx.URL('/x/' + agent.session_id).raw_path.decode()[3:]}",
              f"/violations/{blocked['violation_id']}"]
    return paths


def test_planted_payloads_never_execute(server: Server, browser: Any) -> None:
    extra = plant(server)
    admin = server.login()
    token = csrf_of(admin.get("/settings").text)
    admin.post("/settings/keys", data={"role": "viewer", "name": PAYLOADS[1], "csrf_token": token})
    admin.post("/settings/channels", data={"kind": "webhook", "target": "https://x.example/" + PAYLOADS[1],
                                           "secret": "0123456789abcdef", "agent": PAYLOADS[0], "rule": PAYLOADS[1],
                                           "csrf_token": token})
    admin.post("/policies", data={"document": "version: 1\nname: x\ndescription: " + repr(PAYLOADS[0]) + "\n",
                                  "comment": PAYLOADS[1], "csrf_token": token})
    time.sleep(0.3)
    page = log_in(browser, server.url, "admin", server.admin_password)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pages = ["/", "/?range=7d", "/sessions", "/violations", "/approvals", "/policies", "/policies/versions/1",
             "/analytics", "/settings", *extra]
    for path in pages:
        response = page.goto(server.url + path)
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")
        page.locator("details summary").evaluate_all("els => els.forEach(e => e.click())")
        assert page.evaluate("window.__xss") is None, path
        assert page.locator(PLANTED).count() == 0, path
    # the payloads are shown, as text
    page.goto(server.url + extra[0])
    assert PAYLOADS[0] in page.inner_text("main")
    page.goto(server.url + "/approvals")
    assert PAYLOADS[4] in page.inner_text("#approvals-live")
    assert dialogs == []

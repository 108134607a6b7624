"""One real `thoth serve` (SQLite) wired to a Slack stub, a webhook receiver and an SMTP sink.
The rig itself (Rig, notify_yaml, slack_headers, ...) lives in tests/support/notify.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.notify import HOOK_SECRET, SLACK_SECRET, Rig, notify_yaml
from tests.support.server import Server, start_server, stop_server
from tests.support.stubs import SlackStub, SmtpSink, WebhookReceiver


@pytest.fixture(scope="session")
def rig_parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, SlackStub, WebhookReceiver,
                                                                           SmtpSink]]:
    slack = SlackStub(fail_channels=("C_FAIL",))
    hook = WebhookReceiver(HOOK_SECRET, fail_first=2)
    smtp = SmtpSink()
    home = Path(tmp_path_factory.mktemp("approvals-home"))
    (home / "notify.yaml").write_text(notify_yaml(slack, hook, smtp))
    env = {"TEST_SLACK_BOT_TOKEN": "xoxb-test-token", "TEST_SLACK_SIGNING_SECRET": SLACK_SECRET,
           "TEST_HOOK_SECRET": HOOK_SECRET, "THOTH_HOLD_TIMEOUT_SECONDS": "60"}
    server = start_server(f"sqlite:///{home / 'thoth.db'}", home, env)
    yield server, slack, hook, smtp
    stop_server(server)
    slack.close()
    hook.close()
    smtp.close()


@pytest.fixture
def rig(rig_parts: tuple[Server, SlackStub, WebhookReceiver, SmtpSink]) -> Rig:
    return Rig(*rig_parts)

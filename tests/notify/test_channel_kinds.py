"""The channel kind contract: one registry, read by the config file, the Settings form and the notifier."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from thoth.server.notify import tenant_channels
from thoth.server.notify.channels import CHANNELS, Channel, ChannelKind, Sent, discover
from thoth.server.notify.channels.slack import SlackApp
from thoth.server.notify.channels.smtp import Mail
from thoth.server.notify.config import NotifyConfig, NotifyConfigError, parse
from thoth.server.notify.render import HeldCall


class Pager(ChannelKind):
    """A kind written by this test: what a new kind must provide, nothing more."""

    name = "pager"

    def section(self, raw: Any) -> str:
        return str((raw or {}).get("gateway", "https://pager.invalid"))

    def from_file(self, name: str, raw: dict[str, Any], where: str) -> Channel:
        if not str(raw.get("number", "")).isdigit():
            raise NotifyConfigError(f"{where}.number must be digits")
        return Channel(name, self.name, str(raw["number"]))

    def form_problem(self, target: str, secrets: Mapping[str, str]) -> str | None:
        return None if target.isdigit() else "A pager channel needs a number."

    def from_settings(self, name: str, target: str, secrets: Mapping[str, Any], config: NotifyConfig) -> Channel:
        return Channel(name, self.name, target)

    async def request(self, notifier: Any, channel: Channel, call: Any, approval: dict[str, Any]) -> Sent:
        return Sent(True, target={"number": channel.options})


def test_registry_holds_the_three_kinds_in_menu_order() -> None:
    # Other kinds may follow (a new kind is only its module): these three come first, in this order.
    assert list(CHANNELS)[:3] == ["slack", "webhook", "email"]
    assert all(isinstance(kind, ChannelKind) and kind.name == name for name, kind in CHANNELS.items())
    assert [kind.follows_up for kind in list(CHANNELS.values())[:3]] == [True, True, False]
    assert tuple(CHANNELS) == tenant_channels.KINDS  # the Settings form's menu


def test_defaults_of_the_kinds_sections_without_a_file() -> None:
    config = NotifyConfig()
    assert config.section("slack") == SlackApp() and config.section("email") == Mail()
    parsed = parse({"email": {"host": "mail.example", "port": 2525, "from": "t@example.com"}})
    assert parsed.section("email") == Mail(host="mail.example", port=2525, mail_from="t@example.com")
    with pytest.raises(NotifyConfigError, match="channels.email.host must be a string"):
        parse({"email": {"host": 25}})


def test_a_new_kind_is_read_by_config_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CHANNELS, "pager", Pager())
    config = parse({"pager": {"gateway": "https://gw.example"}, "channels": {"oncall": {"type": "pager", "number": "42"}},
                    "routes": [{"channels": ["oncall"]}]})
    assert config.channels_for("t", "a", []) == [Channel("oncall", "pager", "42")]
    assert config.section("pager") == "https://gw.example"
    with pytest.raises(NotifyConfigError, match="channels.oncall.number must be digits"):
        parse({"channels": {"oncall": {"type": "pager", "number": "x"}}})
    with pytest.raises(NotifyConfigError, match="type must be one of slack, webhook, email, (.*, )?pager$"):
        parse({"channels": {"x": {"type": "sms"}}})
    with pytest.raises(NotifyConfigError, match="type must be one of"):
        parse({"channels": {"x": {"type": ["slack"]}}})  # not a kind name at all: still a clear error
    assert tenant_channels.problem("pager", "12a") == "A pager channel needs a number."
    assert tenant_channels.problem("pager", "12") is None
    assert tenant_channels.problem("sms", "12") == f"Choose a channel kind: {', '.join(list(CHANNELS)[:-1])} or pager."


def _package(root: Path, modules: dict[str, str]) -> tuple[list[str], str]:
    name = f"kinds_{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for module, source in modules.items():
        (root / name / f"{module}.py").write_text(source)
    return [str(root / name)], name


PAGER_MODULE = """
from thoth.server.notify.channels.base import ChannelKind
from tests.notify.test_channel_kinds import Pager
class Beeper(Pager):
    name = "beeper"
    order = 0
KIND = Beeper()
"""


def test_discover_registers_every_module_of_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    path, name = _package(tmp_path, {"beeper": PAGER_MODULE, "base": "", "_helpers": "",
                                     "pager": "from tests.notify.test_channel_kinds import Pager\nKIND = Pager()\n"})
    found = discover(path, name)
    assert list(found) == ["beeper", "pager"]  # by `order`, then name; base and _helpers are not kinds
    path, name = _package(tmp_path, {"forgot": "X = 1\n"})
    with pytest.raises(TypeError, match="must define KIND"):
        discover(path, name)
    twice = "from tests.notify.test_channel_kinds import Pager\nKIND = Pager()\n"
    path, name = _package(tmp_path, {"one": twice, "two": twice})
    with pytest.raises(TypeError, match="'pager' is defined twice"):
        discover(path, name)


def _documented_example() -> str:
    """The Python block of docs/extending.md's "A notification channel" section."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "extending.md").read_text()
    section = doc.split("## A notification channel", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_example_kind_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/extending.md's log kind, dropped into a package as its one module, is found and delivers."""
    monkeypatch.syspath_prepend(str(tmp_path))
    path, package = _package(tmp_path, {"log": _documented_example()})
    found = discover(path, package)
    assert list(found) == ["log"]
    monkeypatch.setitem(CHANNELS, "log", found["log"])
    out = tmp_path / "holds.jsonl"
    config = parse({"channels": {"file": {"type": "log", "path": str(out)}}, "routes": [{"channels": ["file"]}]})
    [channel] = config.channels_for("t", "agent", [])
    with pytest.raises(NotifyConfigError, match="channels.file.path is required"):
        parse({"channels": {"file": {"type": "log"}}})
    assert tenant_channels.problem("log", "/etc/passwd") == "A log channel is configured in notify.yaml only."
    call = HeldCall(approval_id="apr_1", tenant_id="t", tool_name="drop_db", tool_args={}, agent_id="agent",
                    user_id="u", session_id="s", reason="", matched_rule_ids=[], risk_score=None, expires_at="",
                    required_approvals=1, dashboard_url="")
    sent = asyncio.run(found["log"].request(None, channel, call, {}))  # type: ignore[arg-type]
    done = asyncio.run(found["log"].outcome(None, channel, {}, call, {"status": "denied"}))  # type: ignore[arg-type]
    assert sent == Sent(True, target={"path": str(out)}) and done == (True, None)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{"event": "approval.requested", "approval_id": "apr_1", "tenant_id": "t", "tool_name": "drop_db",
                      "agent_id": "agent"}, {"event": "approval.resolved", "approval_id": "apr_1", "status": "denied"}]

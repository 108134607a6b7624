"""E-mail channel over SMTP (stdlib smtplib, run in a thread). Kind name: `email`.

The SMTP server and sender of e-mail channels from the dashboard's Settings come from notify.yaml's
`email:` section; a file channel names its own. E-mail only carries the request (no follow-up).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from thoth.server.notify.channels.base import Channel, ChannelKind, NotifyConfigError, Sent, file_secret, text
from thoth.server.notify.render import HeldCall, email_request

if TYPE_CHECKING:
    from thoth.server.notify.config import NotifyConfig
    from thoth.server.notify.service import Notifier

_ADDRESS = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")


@dataclass(frozen=True)
class Mail:
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    username: str = ""
    password: str = ""
    mail_from: str = "thoth@localhost"
    mail_to: tuple[str, ...] = ()


def recipients(target: str) -> list[str]:
    return [a.strip() for a in re.split(r"[,;\s]+", target) if a.strip()]


def send(mail: Mail, subject: str, text_: str, html_body: str) -> None:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = mail.mail_from
    msg["To"] = ", ".join(mail.mail_to)
    msg.set_content(text_)
    msg.add_alternative(html_body, subtype="html")
    with smtplib.SMTP(mail.host, mail.port, timeout=10) as smtp:
        if mail.starttls:
            smtp.starttls()
        if mail.username:
            smtp.login(mail.username, mail.password)
        smtp.send_message(msg)


def _server(raw: Mapping[str, Any], where: str) -> Mail:
    return Mail(host=text(raw, "host", where, "127.0.0.1"), port=int(raw.get("port", 25)),
                starttls=bool(raw.get("starttls", False)),
                username=file_secret(raw.get("username"), f"{where}.username"),
                password=file_secret(raw.get("password"), f"{where}.password"),
                mail_from=text(raw, "from", where, "thoth@localhost"))


class EmailKind(ChannelKind):
    name = "email"
    order = 3

    def section(self, raw: Any) -> Mail:
        """`email:` (host, port, from, starttls, username, password) for Settings channels."""
        if raw is None:
            return Mail()
        if not isinstance(raw, dict):
            raise NotifyConfigError("email must be a mapping (host, port, from, starttls, username, password)")
        return _server(raw, "channels.email")

    def from_file(self, name: str, raw: dict[str, Any], where: str) -> Channel:
        to = raw.get("to")
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to or not all(isinstance(t, str) for t in to):
            raise NotifyConfigError(f"{where}.to must be an address or a list of addresses")
        return Channel(name, self.name, dataclasses.replace(_server(raw, where), mail_to=tuple(to)))

    def form_problem(self, target: str, secrets: Mapping[str, str]) -> str | None:
        found = recipients(target)
        if not found or not all(_ADDRESS.match(a) for a in found) or len(found) > 50:
            return "An email channel needs one or more addresses, separated by commas."
        return None

    def stored_target(self, target: str) -> str:
        return ", ".join(recipients(target))

    def from_settings(self, name: str, target: str, secrets: Mapping[str, Any], config: NotifyConfig) -> Channel:
        server: Mail = config.section(self.name)
        return Channel(name, self.name, dataclasses.replace(server, mail_to=tuple(recipients(target))))

    async def request(self, notifier: Notifier, channel: Channel, call: HeldCall,
                      approval: dict[str, Any]) -> Sent:
        subject, text_, html_body = email_request(call, notifier.config.max_arg_chars)
        await asyncio.to_thread(send, channel.options, subject, text_, html_body)
        return Sent(True, target={"to": list(channel.options.mail_to)})


KIND = EmailKind()

"""E-mail channel over SMTP (stdlib smtplib, run in a thread)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from thoth.server.notify.config import Channel


def send(channel: Channel, subject: str, text: str, html_body: str) -> None:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = channel.mail_from
    msg["To"] = ", ".join(channel.mail_to)
    msg.set_content(text)
    msg.add_alternative(html_body, subtype="html")
    with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=10) as smtp:
        if channel.smtp_starttls:
            smtp.starttls()
        if channel.smtp_username:
            smtp.login(channel.smtp_username, channel.smtp_password)
        smtp.send_message(msg)

"""Slack channel: post the request with Approve / Deny buttons, then edit it to show the outcome.

Uses slack-sdk's WebClient (synchronous; run in a thread so the event loop never waits on Slack).
`base_url` points it at another Web API (our tests run a local stub of chat.postMessage/update).
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from thoth.server.notify.config import SlackApp


class DeliveryError(Exception):
    pass


class SlackSender:
    def __init__(self, app: SlackApp) -> None:
        base = app.base_url if app.base_url.endswith("/") else app.base_url + "/"
        self.client = WebClient(token=app.bot_token, base_url=base, timeout=10, retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2), RateLimitErrorRetryHandler(max_retry_count=2)])

    def post(self, channel: str, text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        """-> {"channel": id, "ts": message ts}, what chat.update needs later."""
        try:
            resp = self.client.chat_postMessage(channel=channel, text=text, blocks=blocks, unfurl_links=False,
                                                unfurl_media=False)
        except SlackApiError as exc:
            raise DeliveryError(f"Slack chat.postMessage failed: {exc.response.get('error', exc)}") from None
        except Exception as exc:  # network errors after slack-sdk's own retries
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None
        return {"channel": resp.get("channel") or channel, "ts": resp.get("ts")}

    def update(self, target: dict[str, Any], text: str, blocks: list[dict[str, Any]]) -> None:
        try:
            self.client.chat_update(channel=target["channel"], ts=target["ts"], text=text, blocks=blocks)
        except SlackApiError as exc:
            raise DeliveryError(f"Slack chat.update failed: {exc.response.get('error', exc)}") from None
        except Exception as exc:
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None

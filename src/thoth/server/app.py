"""`create_app(settings)`: one ASGI app serving the data plane, control plane, /docs and /metrics.

The data-plane paths are dispatched to raw ASGI handlers before any framework code runs;
everything else goes to the FastAPI control plane. `/` and the dashboard pages are left to
`thoth.server.dashboard` (if present, its `register(app, core)` is called).
"""

from __future__ import annotations

import gc
import importlib
import logging
from typing import Any

from thoth.server import dataplane, health
from thoth.server.controlplane import build
from thoth.server.core import Core
from thoth.server.db import is_unavailable
from thoth.server.settings import Settings

log = logging.getLogger("thoth.server")


class ThothApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.core = Core(settings)
        self.api = build(self.core)
        self._started = False
        try:
            dashboard = importlib.import_module("thoth.server.dashboard")
        except ModuleNotFoundError as exc:
            if exc.name != "thoth.server.dashboard":
                raise
        else:
            dashboard.register(self.api, self.core)
        from thoth.server import notify  # approval notifications: Slack, webhooks, e-mail

        self.notifier = notify.register(self.api, self.core)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            if not self._started:  # servers without lifespan support (tests with raw ASGI)
                await self._startup()
            path = scope["path"]
            if dataplane.is_data_plane(path):
                try:
                    await dataplane.handle(self.core, scope, receive, send)
                except Exception:
                    log.exception("data-plane request failed")
                    await dataplane.send_json(send, 500, dataplane.error_body("internal error; see server log"))
                return
            if path in health.PATHS:  # before anything that could wait for the database
                await health.handle(self.core, scope, send)
                return
            await self._control(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.api(scope, receive, send)

    async def _control(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Enforce the body limit before FastAPI buffers anything.
        limit = self.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await dataplane.send_json(send, 413, dataplane.error_body(
                        f"request body larger than {limit} bytes"))
                    return
        try:
            body = await dataplane.read_body(receive, limit)
        except dataplane.BodyTooLarge:
            await dataplane.send_json(send, 413, dataplane.error_body(f"request body larger than {limit} bytes"))
            return
        # PostgreSQL text cannot hold NUL characters: refuse them here, on every database, rather
        # than answer 500 from deep inside a query.
        if "\x00" in scope["path"]:
            await dataplane.send_json(send, 404, dataplane.error_body("not found"))
            return
        if b"\\u0000" in body or b"\x00" in body or b"%00" in scope.get("query_string", b""):
            await dataplane.send_json(send, 422, dataplane.error_body(
                "strings must not contain NUL characters (\\u0000)"))
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            # Read-your-writes: decisions answered by this process are committed before a read
            # (not before the metrics, which must stay readable during a database outage).
            if scope["path"] != "/metrics":
                await self.core.writer.settled()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            await dataplane.send_unavailable(send)  # the database is down: reads answer 503 too
            return
        try:
            await self.api(scope, replay, send)
        except Exception:
            log.exception("control-plane request failed")

    async def _startup(self) -> None:
        if not self._started:
            self._started = True
            self.core.start()
            self.notifier.start()
            # Each request allocates many short-lived objects; with the default gen-0 threshold
            # (700) the collector runs every few requests and its older-generation passes walk
            # the long-lived caches (session histories, baselines): ~20 % of enforce CPU measured.
            # Refcounting frees per-request garbage anyway; collect cycles less often, and never
            # re-scan what exists at startup.
            gc.freeze()
            gc.set_threshold(10_000, 50, 100)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.notifier.stop()
                await self.core.writer.drain()  # queued decisions and events are written first
                self.core.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings | None = None) -> ThothApp:
    return ThothApp(settings or Settings())

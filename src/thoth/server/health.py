"""Liveness (`/healthz`) and readiness (`/readyz`), answered before any other request handling.

- `/healthz`: the process serves HTTP. It never touches the database nor waits for the writer,
  so it answers at once during a database outage or partition: a supervisor must not restart
  a server that is only waiting for its database (a restart would not bring it back and would
  drop the decisions held for it).
- `/readyz`: the database answers a `SELECT 1` within the database timeout and the writer can
  commit; 503 (with Retry-After) otherwise. For load balancers and deploys: route traffic
  elsewhere, do not restart.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from thoth.server import dataplane, engine
from thoth.server.db import RETRY_AFTER

PATHS = frozenset({"/healthz", "/readyz"})


def liveness() -> dict[str, Any]:
    return {"status": "ok", "policy_engine": engine.HAVE_POLICY_ENGINE, "analytics": engine.HAVE_ANALYTICS}


async def readiness(core: Any) -> tuple[int, dict[str, Any]]:
    """(status, body): 200 when the database answers and the writer can commit."""
    backlog = core.writer.backlog
    try:
        # Bounded twice: the database's own timeouts, and this wait (a thread may outlive it).
        await asyncio.wait_for(core.read(core.db.ping), timeout=core.settings.db_timeout_seconds + 2)
    except Exception:
        return 503, {"status": "unavailable", "database": "unreachable", "write_backlog": backlog,
                     "message": dataplane.UNAVAILABLE_MESSAGE}
    if core.writer.down:
        return 503, {"status": "unavailable", "database": "ok", "writer": "retrying", "write_backlog": backlog,
                     "message": "the database answers but cannot be written yet; retry shortly"}
    return 200, {"status": "ready", "database": "ok", "writer": "ok", "write_backlog": backlog}


async def handle(core: Any, scope: dict[str, Any], send: Any) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        await dataplane.send_json(send, 405, dataplane.error_body("use GET"))
        return
    if scope["path"] == "/healthz":
        await dataplane.send_json(send, 200, orjson.dumps(liveness()))
        return
    status, body = await readiness(core)
    extra = [(b"retry-after", RETRY_AFTER.encode())] if status == 503 else None
    await dataplane.send_json(send, status, orjson.dumps(body), extra)

"""A real `thoth serve` for tests: the process plus a Store on its database (to mint keys) and
httpx clients. Re-exports the names tests used to import from tests/server/conftest.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from thoth.server.db import Database
from thoth.server.store import Store

from .pg import PG_URL, pg_available, pg_schema
from .ports import free_port
from .serve import SRC, start_serve, stop_process

__all__ = ["PG_URL", "SRC", "Server", "free_port", "pg_available", "pg_schema", "start_server", "start_servers",
           "stop_server", "tenant", "cli_verify", "scrape", "held"]


class Server:
    def __init__(self, url: str, home: Path, db_url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.home = home
        self.db_url = db_url
        self.proc = proc
        self.store = Store(Database(db_url))

    def key(self, tenant: str, role: str = "sdk") -> str:
        return str(self.store.create_key(tenant, role)["key"])

    def client(self, key: str | None = None, bearer: bool = False) -> httpx.Client:
        headers = {}
        if key:
            headers = {"Authorization": f"Bearer {key}"} if bearer else {"x-api-key": key}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def start_server(db_url: str, home: Path, env_extra: dict[str, str] | None = None) -> Server:
    """`thoth serve` on a free port with a 3 s hold timeout (the server suite's default)."""
    s = start_serve(db_url, home, env={"THOTH_HOLD_TIMEOUT_SECONDS": "3", **(env_extra or {})})
    return Server(s.url, home, db_url, s.proc)


def start_servers(db_url: str, home: Path, count: int, env_extra: dict[str, str] | None = None) -> list[Server]:
    """Several processes on one database, started side by side (each start costs seconds)."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: start_server(db_url, home, env_extra), range(count)))


def stop_server(server: Server) -> None:
    stop_process(server.proc)
    server.store.db.close()


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def cli_verify(server: Server, t: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "THOTH_HOME": str(server.home)}
    return subprocess.run([sys.executable, "-m", "thoth", "audit", "verify", "--tenant", t,
                           "--database-url", server.db_url], env=env, capture_output=True, text=True, timeout=60)


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    for family in ("thoth_decisions_total", "thoth_enforce_latency_seconds", "thoth_events_ingested_total",
                   "thoth_events_rejected_total", "thoth_holds_pending"):
        assert re.search(rf"^# TYPE {family} (counter|histogram|gauge)$", text, re.M), family
    return values


def held(values: dict[str, float], t: str) -> float:
    return values.get(f'thoth_tenant_holds_pending{{tenant_id="{t}"}}', 0.0)

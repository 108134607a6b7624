"""Real `thoth serve` processes on free ports, on SQLite and on the machine's PostgreSQL.

Every server-backed test runs twice (the `backend` fixture is parametrized); PostgreSQL runs use
a schema of their own, dropped at the end, and are skipped when no PostgreSQL answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from thoth.server.db import Database
from thoth.server.migrate import upgrade
from thoth.server.store import Store

PG_URL = os.environ.get("THOTH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SRC = str(Path(__file__).resolve().parents[2] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_available() -> bool:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=2).close()
        return True
    except Exception:
        return False


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
    port = free_port()
    env = {**os.environ, "THOTH_HOME": str(home), "PYTHONPATH": SRC, "THOTH_HOLD_TIMEOUT_SECONDS": "3",
           **(env_extra or {})}
    env.pop("THOTH_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "thoth", "serve", "--port", str(port), "--database-url", db_url],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise RuntimeError(f"server exited: {out.decode()} {err.decode()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return Server(url, home, db_url, proc)
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def start_servers(db_url: str, home: Path, count: int, env_extra: dict[str, str] | None = None) -> list[Server]:
    """Several processes on one database, started side by side (each start costs seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: start_server(db_url, home, env_extra), range(count)))


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
    server.store.db.close()


@contextlib.contextmanager
def pg_schema(prefix: str) -> Iterator[str]:
    """A database URL whose search_path is a fresh PostgreSQL schema, dropped afterwards
    (skips the test when PostgreSQL is not reachable)."""
    if not _pg_available():
        pytest.skip("PostgreSQL not reachable at " + PG_URL)
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    with pg_schema("thoth_test") as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'thoth.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    upgrade(backend)
    srv = start_server(backend, tmp_path_factory.mktemp("home"))
    yield srv
    stop_server(srv)


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"

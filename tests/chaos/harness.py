"""The parts of the chaos suite: killable servers, a PostgreSQL cluster of the test's own, a TCP
proxy that partitions, and the ledger that compares what clients were told with what was stored.

Servers are the real `thoth serve` (tests/support: `Server`, `start_serve`);
they log to a file instead of a pipe because a server that logs every failed write during an
outage would fill a pipe nobody reads and stall, which is not the fault under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.serve import start_serve
from tests.support.server import SRC, Server, free_port

from thoth.server.db import Database

DROP_ENV = ("THOTH_DATABASE_URL", "THOTH_API_URL", "THOTH_API_KEY")
SLACK = 1.0  # seconds a deadline may be overrun on this shared 2-core machine (scheduling, GC)


# Servers ---------------------------------------------------------------------------------------
def launch(db_url: str, home: Path, port: int | None = None, timeout: float = 40.0) -> Server:
    """`thoth serve` on `port` (or a free one); returns once /healthz answers."""
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "ab")  # noqa: SIM115 - the child keeps it
    try:
        s = start_serve(db_url, home, port=port, env={"THOTH_HOLD_TIMEOUT_SECONDS": "30"}, drop_env=DROP_ENV,
                        stdout=log, stderr=log, timeout=timeout, describe=lambda _: tail(home / "server.log"))
    finally:
        log.close()
    return Server(s.url, home, db_url, s.proc)


def kill9(server: Server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)


def relaunch(server: Server) -> Server:
    """Start again on the same port, database and THOTH_HOME (its journal holds what the killed one
    answered but had not yet stored)."""
    port = int(server.url.rsplit(":", 1)[1])
    for _ in range(100):
        try:
            return launch(server.db_url, server.home, port)
        except RuntimeError as exc:
            if "address" not in str(exc).lower():
                raise
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not become free")


def shutdown(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
    server.store.db.close()


def tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


def make_tenant() -> str:
    return f"chaos-{uuid.uuid4().hex[:8]}"


# PostgreSQL of the test's own ------------------------------------------------------------------
class Cluster:
    """A PostgreSQL cluster on its own port, made for one test module and dropped afterwards; the
    machine's shared cluster (5432) is never stopped. Debian's pg_createcluster/pg_ctlcluster run
    the server as the postgres user (initdb refuses root)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.name = f"thoth_chaos_{os.getpid()}_{self.port}"
        self.version = _pg_version()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create(self) -> None:
        drop_orphans(self.version)
        _run(["pg_createcluster", "-p", str(self.port), self.version, self.name, "--",
              "--auth=trust", "--no-sync"])
        # Small and quick: this cluster only ever holds one test's rows.
        _run(["pg_conftool", self.version, self.name, "set", "fsync", "off"])
        _run(["pg_conftool", self.version, self.name, "set", "shared_buffers", "16MB"])
        self.start()

    def start(self) -> None:
        _run(["pg_ctlcluster", self.version, self.name, "start"])

    def stop(self, mode: str = "fast") -> None:
        _run(["pg_ctlcluster", self.version, self.name, "stop", "-m", mode])

    def drop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _run(["pg_dropcluster", "--stop", self.version, self.name])


def drop_orphans(version: str) -> None:
    """Drop clusters left by a chaos run that was killed before its teardown (its pid is gone)."""
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, timeout=30).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != version or not fields[1].startswith("thoth_chaos_"):
            continue
        pid = int(fields[1].split("_")[2])
        if not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                _run(["pg_dropcluster", "--stop", version, fields[1]])


def cluster_tools() -> bool:
    return all(shutil.which(tool) for tool in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster",
                                               "pg_conftool")) and bool(_pg_version())


def _pg_version() -> str:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres")) if Path("/usr/lib/postgresql").exists() else []
    return versions[-1].parts[-3] if versions else ""


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


# A TCP proxy that can partition ----------------------------------------------------------------
class ProxyProcess:
    """tests/chaos/partition_proxy.py in a process of its own (forwarding in the test's process
    would compete for its GIL with the load and slow every commit tenfold): SIGUSR1 partitions,
    SIGUSR2 heals."""

    def __init__(self, upstream_port: int) -> None:
        script = Path(__file__).with_name("partition_proxy.py")
        self.proc = subprocess.Popen([sys.executable, str(script), str(upstream_port)], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def partition(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def heal(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


# Servers that misbehave ------------------------------------------------------------------------
DRIP_ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n"
               + b'{"decision":"ALLOW","reason":"' + b"x" * 160 + b'"}')


_BUSY_BODY = b'{"message":"busy, try again"}'
BUSY_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\n\r\n" % len(_BUSY_BODY) + _BUSY_BODY)


class FaultyServer:
    """A listening socket that reads each request and then `stall`s (says nothing), `drip`s a
    valid answer (its status line, then one byte every 0.3 s: a client whose timeout is per read
    never times out), or answers `busy` (503 with Retry-After: 1). Connections
    are closed after `give_up` s so a client without a deadline still ends (and its test fails on
    the time it took, not by hanging the suite)."""

    def __init__(self, mode: str, give_up: float = 12.0) -> None:
        self.mode = mode
        self.give_up = give_up
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        end = time.monotonic() + self.give_up
        conn.settimeout(self.give_up)
        try:
            while time.monotonic() < end:
                if not _read_request(conn):
                    return
                self.requests += 1
                if self.mode == "busy":
                    conn.sendall(BUSY_ANSWER)
                    continue
                if self.mode == "drip":  # the status line at once, then the rest a byte at a time:
                    first, rest = DRIP_ANSWER.split(b"\r\n", 1)  # every later read gets something in time
                    conn.sendall(first + b"\r\n")
                    for byte in rest:
                        if time.monotonic() > end:
                            return
                        time.sleep(0.3)
                        conn.sendall(bytes([byte]))
                while time.monotonic() < end:  # stall (or a drip that ran out): keep the socket open
                    time.sleep(0.1)
        except OSError:
            pass
        finally:
            conn.close()


def _read_request(conn: socket.socket) -> bool:
    """Read one request's head and Content-Length body; False when the client went away."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


# What the clients were told, and what the database holds ----------------------------------------
@dataclass
class Ledger:
    """Client-side truth of one fault run. Thread-safe enough for the suite: every update is one
    dict/set/Counter operation under the GIL, or under `lock`."""

    answered: dict[str, str] = field(default_factory=dict)  # decision_id -> the call's marker
    emitted: set[str] = field(default_factory=set)  # event ids handed to a client
    acked: set[str] = field(default_factory=set)  # event ids of batches answered 2xx
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport faults by kind
    fail_opens: int = 0
    longest: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def waited(self, seconds: float) -> None:
        if seconds > self.longest:
            self.longest = seconds


@dataclass
class Stored:
    decisions: int
    decision_ids: set[str]
    duplicated_decisions: int  # calls (markers) recorded more than once
    events: int
    event_ids: set[str]
    duplicated_events: int


def stored(db_url: str, tenant: str, marker_key: str = "q") -> Stored:
    """Count the tenant's rows. A decision's marker is its tool_args[marker_key] (one per call)."""
    db = Database(db_url)
    try:
        with db.read() as conn:
            decisions = conn.all("SELECT decision_id, tool_args FROM decisions WHERE tenant_id = ?", (tenant,))
            events = conn.all("SELECT event_id FROM events WHERE tenant_id = ?", (tenant,))
    finally:
        db.close()
    markers = Counter(_marker(row[1], marker_key) for row in decisions)
    ids = Counter(row[0] for row in events)
    return Stored(
        decisions=len(decisions), decision_ids={row[0] for row in decisions},
        duplicated_decisions=sum(n - 1 for m, n in markers.items() if m is not None and n > 1),
        events=len(events), event_ids=set(ids), duplicated_events=sum(n - 1 for n in ids.values() if n > 1),
    )


def _marker(tool_args: Any, key: str) -> str | None:
    try:
        args = json.loads(tool_args) if isinstance(tool_args, str) else tool_args
    except ValueError:
        return None
    if isinstance(args, dict):
        value = args.get(key)
        if value is None and isinstance(args.get("args"), list) and args["args"]:
            value = args["args"][0]
        return None if value is None else str(value)
    return None


def audit_verify(server: Server, tenant: str) -> tuple[int, dict[str, Any]]:
    """`thoth audit verify --tenant T` against the server's database: (exit code, its JSON)."""
    env = {**os.environ, "THOTH_HOME": str(server.home), "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-m", "thoth", "audit", "verify", "--tenant", tenant,
                          "--database-url", server.db_url], env=env, capture_output=True, text=True, timeout=60)
    try:
        return out.returncode, json.loads(out.stdout)
    except ValueError:
        return out.returncode, {"stdout": out.stdout[-500:], "stderr": out.stderr[-500:]}


def assert_nothing_lost(load: Ledger, load_db: Stored, sdk: Ledger, sdk_db: Stored, agents: Any,
                        verified: tuple[tuple[int, dict[str, Any]], ...], sdk_deadline: float) -> None:
    """What every fault run must leave behind, for the raw-HTTP load and the SDK agents alike:
    each answered decision and acknowledged event stored exactly once, every batch acknowledged,
    the agents flushed, both tenants' audit chains verified, no 5xx but 503, no request left
    hanging, the SDK within its deadline."""
    assert set(load.answered) <= load_db.decision_ids and load_db.duplicated_decisions == 0
    assert load.acked <= load_db.event_ids and load_db.duplicated_events == 0
    assert load.acked == load.emitted, "some batches were never taken"
    assert set(sdk.answered) <= sdk_db.decision_ids and sdk_db.duplicated_decisions == 0
    assert agents.flushed and agents.dropped == 0 and sdk_db.events == agents.events_emitted
    assert not agents.failures, agents.failures[:3]
    for code, report in verified:
        assert code == 0 and report["verified"] is True, (code, report)
    for ledger in (load, sdk):
        assert not [s for s in ledger.statuses if s >= 500 and s != 503], dict(ledger.statuses)
    assert load.errors["timeout"] == 0, f"{load.errors['timeout']} requests got no answer"
    assert sdk.longest <= sdk_deadline + SLACK


def five_xx(statuses: Counter[int]) -> dict[int, int]:
    return {code: n for code, n in sorted(statuses.items()) if code >= 500}

"""The decision journal: what makes write-behind decisions survive a killed server process.

A plain decision is answered before the group commit that stores it (thoth.server.writer), so
the answer does not wait for the database. Before it is answered, its record is appended to
this process's journal file (one `write` to the OS, a few microseconds; no fsync): a process
killed before the commit leaves the record in the file, and the next server to start on the
same THOTH_HOME stores it. Once every journaled decision is committed, the file is emptied.

Like SQLite's WAL with synchronous=NORMAL, this survives the death of the process, not of the
machine (the OS may not have written the page to disk before a power loss).

Each process has its own file and holds an exclusive lock on it while it lives; a file whose
lock can be taken belongs to a process that is gone, and is replayed then deleted. Replay skips
decisions already stored, so a decision committed just before the kill is not stored twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from thoth.server.store import DecisionRecord

log = logging.getLogger("thoth.server.journal")


class Journal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"decisions-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        # Locked under a name replay does not look at, then renamed: a worker starting next to
        # this one never takes the fresh file for a dead process's.
        hidden = directory / ("." + name)
        self._fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = directory / name
        os.rename(hidden, self.path)
        self.pending = 0  # journaled records not yet committed
        self._lines: list[bytes] = []

    def add(self, rec: DecisionRecord) -> None:
        """Buffer a record; `write` hands the buffer to the OS (before any of them is answered)."""
        self._lines.append(orjson.dumps((rec.row, rec.tenant_id, rec.session_id, rec.agent_id, rec.user_id,
                                         rec.decision, rec.risk_score, rec.decided_at)))
        self.pending += 1

    def write(self) -> None:
        # One write for all the decisions of a loop iteration: a write per decision cost ~5-8 us
        # of wall time each while SQLite's checkpoints kept the filesystem busy (measured).
        lines, self._lines = self._lines, []
        os.write(self._fd, b"\n".join(lines) + b"\n")

    def committed(self, count: int) -> None:
        """`count` journaled records were committed (or given up); empty the file when none is left."""
        self.pending -= count
        if self.pending <= 0:
            self.pending = 0
            os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """On a clean stop, after the writer drained: nothing left to replay unless something failed."""
        if self._fd < 0:
            return
        empty = self.pending == 0
        os.close(self._fd)  # releases the lock: a later start replays what is left
        self._fd = -1
        if empty:
            self.path.unlink(missing_ok=True)


def orphans(directory: Path) -> Iterator[tuple[Path, list[DecisionRecord]]]:
    """Journals of processes that are gone, each locked while the caller stores its records;
    the file is deleted when the caller moves on to the next one (so a failed replay is retried
    by the next start)."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("decisions-*.jsonl")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # replayed by another process starting at the same time
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live process's journal
                continue
            records = list(_parse(path.read_bytes()))
            yield path, records
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _parse(data: bytes) -> Iterator[DecisionRecord]:
    for line in data.splitlines():
        try:
            row, tenant, session, agent, user, decision, risk, ts = orjson.loads(line)
            yield DecisionRecord(tuple(row), tenant, session, agent, user, decision, risk, ts, None)
        except (TypeError, ValueError):  # a line torn by the kill (JSONDecodeError is a ValueError)
            log.warning("skipping an unreadable journal line (%d bytes)", len(line))


def replay(directory: Path, store: Any, db: Any) -> int:
    """Store the decisions of dead processes' journals that are not in the database yet."""
    total = 0
    for path, records in orphans(directory):
        stored = store.store_journaled(db, records) if records else 0
        if stored:
            log.warning("%s: stored %d answered decisions of a server that stopped before committing them",
                        path.name, stored)
        total += stored
    return total

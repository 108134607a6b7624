"""Where SQLite's and PostgreSQL's SQL differ, in one place.

The server's SQL is written once, in the dialect both engines share: `?` placeholders and the
standard `INSERT ... ON CONFLICT ... DO NOTHING / DO UPDATE SET x = excluded.x` upsert (SQLite
3.24+ and PostgreSQL 9.5+ spell it the same, so upserts need nothing here). What does differ is
a method or attribute of `Dialect`, chosen once per connection (`Connection.dialect`,
`WriteOps.dialect`): modules ask the dialect, they do not branch on the engine.

Differences of the drivers rather than of SQL (psycopg's pipeline mode, the watchdog that cuts
a silent PostgreSQL socket, SQLite's `BEGIN IMMEDIATE` and WAL checkpoints) stay with the code
that drives the connection: thoth.server.db and thoth.server.writer. The bulk insert of many
rows (`WriteOps.copy`) is a method of each write-operations class (thoth.server.writeops); the
SQL of PostgreSQL's is built here.

A new engine is a new `Dialect` subclass plus its connection (db.py) and write operations
(writeops.py): docs/extending.md, "A storage backend".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson


class Dialect:
    """SQLite's spelling; `PostgresDialect` overrides what PostgreSQL spells otherwise."""

    name = "sqlite"
    postgres = False
    # Row locks: SQLite's write transaction (BEGIN IMMEDIATE) already locks the whole database.
    for_update = ""

    def sql(self, sql: str) -> str:
        """The driver's placeholders: sqlite3 takes `?` as written."""
        return sql

    def ids_in(self, column: str, ids: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` is one of `ids`: the condition and its parameters."""
        return f"{column} IN ({', '.join('?' * len(ids))})", list(ids)

    def hour_bucket(self, column: str) -> str:
        """The whole hours since the epoch of a timestamp column (floored)."""
        return f"CAST({column} / 3600 AS INTEGER)"  # SQLite truncates: the same as floor for t >= 0

    def offset(self) -> str:
        """Rows after the first `?` (no limit)."""
        return "LIMIT -1 OFFSET ?"  # SQLite's OFFSET needs a LIMIT

    def xact_lock(self, name: str) -> tuple[str, tuple[Any, ...]] | None:
        """A statement that locks `name` until the transaction ends (across processes), or None
        when the write transaction already excludes every other writer (SQLite)."""
        return None

    def columns(self, conn: Any, table: str) -> set[str]:
        """The column names of a table."""
        return {r[1] for r in conn.all(f"PRAGMA table_info({table})")}


class PostgresDialect(Dialect):
    name = "postgresql"
    postgres = True
    # Held to the commit: the per-row lock that serialises writers across server processes.
    for_update = " FOR UPDATE"

    def sql(self, sql: str) -> str:
        return sql.replace("?", "%s")  # psycopg's placeholders (the server's SQL has no literal '?')

    def ids_in(self, column: str, ids: Sequence[Any]) -> tuple[str, list[Any]]:
        # The ids as one JSON parameter: psycopg adapts a list element by element in Python
        # (~0.7 us an id), orjson in ~5 ns. The caller plans it at every execution (prepare=False):
        # a plan cached while the table was small (a new database) kept scanning the whole table
        # for every batch until the next ANALYZE (2-4k events/s; 30k with this).
        return (f"{column} = ANY(ARRAY(SELECT json_array_elements_text(?::json)))",
                [orjson.dumps(list(ids)).decode()])

    def hour_bucket(self, column: str) -> str:
        return f"FLOOR({column} / 3600)"  # PostgreSQL rounds when casting a float to an integer

    def offset(self) -> str:
        return "OFFSET ?"

    def xact_lock(self, name: str) -> tuple[str, tuple[Any, ...]] | None:
        return "SELECT pg_advisory_xact_lock(hashtext(?))", (name,)

    def columns(self, conn: Any, table: str) -> set[str]:
        rows = conn.all("SELECT column_name FROM information_schema.columns"
                        " WHERE table_schema = current_schema() AND table_name = ?", (table,))
        return {r[0] for r in rows}

    @staticmethod
    def json_insert(table: str, columns: Sequence[str], types: Mapping[str, str]) -> str:
        """An INSERT of many rows sent as one JSON array of arrays (PostgresOps.copy says why),
        each value cast to its column's type (`types`: column -> type name, from the catalog)."""
        values = ", ".join(f"(r->>{i})::{types[c]}" for i, c in enumerate(columns))
        return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} FROM jsonb_array_elements(?::jsonb) AS r"

    # The column types json_insert casts to, from the catalog (without varchar(n)'s length: the
    # assignment then still refuses a value too long).
    COLUMN_TYPES = ("SELECT attname, atttypid::regtype::text FROM pg_attribute"
                    " WHERE attrelid = ?::regclass AND attnum > 0 AND NOT attisdropped")


SQLITE = Dialect()
POSTGRES = PostgresDialect()


def for_url(url: str) -> Dialect:
    """The dialect of a database URL (postgresql://... or sqlite:///...)."""
    return POSTGRES if url.startswith(("postgresql", "postgres:")) else SQLITE

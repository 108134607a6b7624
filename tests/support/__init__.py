"""Library code shared by the test folders and bench/ (fixtures stay in each folder's conftest.py).

- ports.py   `free_port`                                   (stdlib only)
- serve.py   start / wait for /healthz / stop `thoth serve` (stdlib only: loadable by path)
- pg.py      PG_URL and `pg_schema`, a PostgreSQL schema of a test's own
- server.py  `Server` (URL, home, database, store, keys, clients), `start_server`, `stop_server`, `tenant`
"""

"""`thoth audit export` and the offline verifier: an export checks out without the server's
dependencies, and every kind of tampering with the exported file is caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.bodies import event
from tests.support.server import SRC, Server, tenant

from thoth.audit.sign import Signer

SERVER_ONLY = ("starlette", "fastapi", "sqlalchemy", "alembic", "uvicorn", "msgspec", "orjson", "psycopg",
               "jinja2", "yaml", "thoth.server")

# Runs the verifier with the server's packages (and optionally cryptography) made unimportable,
# then reports which of them got imported anyway: the proof that an auditor needs none of them.
_ISOLATED = """
import importlib.abc, json, sys
blocked = tuple(json.loads(sys.argv[1]))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(blocked):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Block())
from thoth.audit.cli import main
from thoth.cli import main as thoth_main
argv = sys.argv[2:]
code = thoth_main(argv[1:]) if argv[0] == "thoth" else main(argv)
loaded = sorted(m for m in sys.modules if m.startswith(blocked))
print("LOADED=" + json.dumps(loaded), file=sys.stderr)
raise SystemExit(code)
"""


def isolated_verify(path: Path, *args: str, block: tuple[str, ...] = SERVER_ONLY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = SRC
    return subprocess.run([sys.executable, "-c", _ISOLATED, json.dumps(block), "verify", str(path), *args],
                          env=env, capture_output=True, text=True, timeout=60)


def export(server: Server, t: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "THOTH_HOME": str(server.home)}
    return subprocess.run([sys.executable, "-m", "thoth", "audit", "export", "--tenant", t, "--database-url",
                           server.db_url, "--out", str(out)], env=env, capture_output=True, text=True, timeout=60)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def write(path: Path, objs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def chain_with_events(server: Server, n: int = 6) -> str:
    t = tenant()
    with server.client(server.key(t)) as c:  # client events: hashed with their ingest key id
        assert c.post("/v1/events/batch", json=[event(t, content="zürich ✓ 🦉") for _ in range(n)]).json()["accepted"] == n
    return t


def test_export_verifies_offline_without_the_server(server: Server, tmp_path: Path) -> None:
    t = chain_with_events(server)
    out = tmp_path / "chain.jsonl"
    r = export(server, t, out)
    assert r.returncode == 0, r.stderr
    objs = lines(out)
    assert objs[0]["kind"] == "thoth-audit-export" and objs[0]["tenant_id"] == t
    assert [o["kind"] for o in objs[1:]] == ["event"] * 6 + ["head"]
    assert all(o["ingest_key_id"] for o in objs[1:-1])
    pub = Signer(server.home / "audit-signing-key.pem").public_key_hex
    assert objs[-1]["public_key"] == pub

    r = isolated_verify(out, "--public-key", pub)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["verified"] is True and result["records_checked"] == 6
    assert result["chain_head"] == objs[-1]["hash"] and result["public_key_source"] == "given"
    assert "LOADED=[]" in r.stderr  # none of the server's packages was imported
    # Same verdict as the server's own check of the database.
    with server.client(server.key(t, "viewer")) as v:
        online = v.get("/v1/audit/verify").json()
    assert online["verified"] is True and online["chain_head"] == result["chain_head"]


def test_tampering_with_an_export_is_caught(server: Server, tmp_path: Path) -> None:
    t = chain_with_events(server, 4)
    out = tmp_path / "chain.jsonl"
    assert export(server, t, out).returncode == 0
    pub = Signer(server.home / "audit-signing-key.pem").public_key_hex
    objs = lines(out)

    def breach(objs: list[dict[str, Any]], *args: str) -> dict[str, Any]:
        r = isolated_verify(write(tmp_path / "bad.jsonl", objs), *args)
        assert r.returncode == 1, r.stderr
        assert "is BROKEN" in r.stderr
        return dict(json.loads(r.stdout)["breach"])

    edited = [dict(o) for o in objs]
    assert "zürich" in edited[2]["body"]
    edited[2]["body"] = edited[2]["body"].replace("zürich", "zurich")
    assert breach(edited)["type"] == "edited_record"
    rekeyed = [dict(o) for o in objs]
    rekeyed[3]["ingest_key_id"] = "someone-else"
    assert breach(rekeyed)["type"] == "edited_record"
    dropped = objs[:2] + objs[3:]
    assert breach(dropped)["type"] == "missing_or_reordered"
    truncated = objs[:-2] + objs[-1:]
    assert breach(truncated)["type"] == "truncated_or_extended"
    unsigned = objs[:-1]
    assert breach(unsigned)["type"] == "unsigned_chain"
    # With the published key too: an edit is an edit.
    assert breach(edited, "--public-key", pub)["type"] == "edited_record"
    # A head signed by another key than the one given is refused.
    assert breach(objs, "--public-key", "ab" * 32)["type"] == "bad_head_signature"


def test_unusable_files_get_a_message_not_a_traceback(tmp_path: Path) -> None:
    cases = {"empty.jsonl": "", "notjson.jsonl": "{nope\n", "other.jsonl": '{"kind": "something"}\n',
             "badfield.jsonl": '{"kind": "thoth-audit-export", "version": 1, "tenant_id": "t"}\n'
                               '{"kind": "event", "chain_index": "0"}\n'}
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        r = isolated_verify(path)
        assert r.returncode == 2, (name, r.stderr)
        assert r.stderr.startswith("thoth: error: ") and "Traceback" not in r.stderr, r.stderr
    r = isolated_verify(tmp_path / "missing.jsonl")
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_signature_check_without_cryptography_says_what_to_install(server: Server, tmp_path: Path) -> None:
    t = chain_with_events(server, 2)
    out = tmp_path / "chain.jsonl"
    assert export(server, t, out).returncode == 0
    r = isolated_verify(out, block=(*SERVER_ONLY, "cryptography"))
    assert r.returncode == 2
    assert "needs the 'cryptography' package" in r.stderr and "thoth-governance[audit]" in r.stderr


def test_python_m_thoth_audit(server: Server, tmp_path: Path) -> None:
    t = chain_with_events(server, 3)
    out = tmp_path / "chain.jsonl"
    assert export(server, t, out).returncode == 0
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-m", "thoth.audit", "verify", str(out)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["records_checked"] == 3
    assert "key named in the export itself" in r.stderr  # no --public-key: the auditor is told


def test_hash_input_is_unchanged_by_the_move() -> None:
    """Hashes computed by thoth.server.audit before it moved to thoth.audit (ADR 0105's input:
    the body alone without a key id, body + "\\ningest_key_id=<id>" with one)."""
    from thoth.audit import GENESIS, link

    ev = {"event_id": "e1", "agent_id": "a1", "content": "zürich ✓", "metadata": {"b": [1, 2], "a": None}}
    body, plain = link(ev, "t", "2026-01-01T00:00:00Z", 0, GENESIS, None)
    assert body == ('{"agent_id":"a1","chain_index":0,"content":"zürich ✓","event_id":"e1",'
                    '"ingested_at":"2026-01-01T00:00:00Z","metadata":{"a":null,"b":[1,2]},'
                    f'"previous_hash":"{GENESIS}","tenant_id":"t"}}').encode()
    assert plain == "ae8243308000e0173836337f406f580a4fb1d001091f9461f9f6071fad21e311"
    assert link(ev, "t", "2026-01-01T00:00:00Z", 0, GENESIS, "key-1")[1] == (
        "943809d3b9fe3cfe7effc054bc5fc4ac9b26754b0847e58dcf9f2ff610d3718b")


def test_database_commands_without_the_server_say_so(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    for args in (["audit", "verify", "--tenant", "t"], ["audit", "export", "--tenant", "t"]):
        r = subprocess.run([sys.executable, "-c", _ISOLATED, json.dumps(SERVER_ONLY), "thoth", *args,
                            "--database-url", f"sqlite:///{tmp_path / 'x.db'}"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert "needs the 'server' extra" in r.stderr and "Traceback" not in r.stderr

"""Several server processes started together on one THOTH_HOME create the signing key once, and
none of them reads it half-written (seen in CI: a MalformedFraming PEM error at startup)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from thoth.audit.sign import Signer


def _public_key(path: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        out.put(Signer(Path(path)).public_key_hex)
    except Exception as exc:  # the failure is what the test reports
        out.put(f"error: {exc}")


def test_processes_starting_together_share_one_whole_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(15):
        path = tmp_path / str(round_) / "signing.pem"
        out = ctx.Queue()
        procs = [ctx.Process(target=_public_key, args=(str(path), out)) for _ in range(6)]
        for p in procs:
            p.start()
        keys = [out.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(30)
        assert len(set(keys)) == 1 and not keys[0].startswith("error"), keys
        assert [f.name for f in path.parent.iterdir()] == ["signing.pem"]  # no temporary file left

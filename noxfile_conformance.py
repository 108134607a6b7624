"""Nox sessions: the published Thoth clients against our `thoth serve` (docs/conformance.md).

Run alone with `nox -f noxfile_conformance.py`, or `import noxfile_conformance` from the
project's noxfile.py to register the same sessions there.

Our distribution (`thoth-governance`) also imports as `thoth`, so a published
client and our package cannot share a venv. Each session's venv holds only the published
client and the test tools; our server runs from a separate Python (see `_server_python`) and
the tests get its URL and keys through THOTH_CONFORMANCE_* variables.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import nox

ROOT = Path(__file__).resolve().parent
TESTS = ROOT / "tests" / "conformance"
SERVER_VENV = ROOT / ".nox" / "_thoth-server"
SERVER_EXTRAS = ".[server,postgres,policy]"

# The published clients the server must keep serving, one session each.
PUBLISHED_CLIENTS = {
    "conformance-aten": "aten-thoth==0.1.15",
    "conformance-atensec": "atensec-thoth==0.5.25",
}


def _server_helper() -> ModuleType:
    """tests/conformance/thoth_server.py (stdlib only), loaded without touching sys.path."""
    name = "thoth_conformance_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / "thoth_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _server_python(session: nox.Session, helper: ModuleType) -> str:
    """A Python that runs our server: THOTH_SERVER_PYTHON, nox's own, or a venv built here."""
    explicit = os.environ.get("THOTH_SERVER_PYTHON")
    if explicit:
        return explicit
    # scripts/test runs nox from .venv, where the project is installed with the server extras.
    if helper.serve_problem(sys.executable) is None:
        return sys.executable
    python = SERVER_VENV / "bin" / "python"
    if not python.exists():
        session.run("python", "-m", "venv", str(SERVER_VENV))
    if helper.serve_problem(str(python)) is not None:
        session.run(str(python), "-m", "pip", "install", "-q", "-e", SERVER_EXTRAS, external=True)
        problem = helper.serve_problem(str(python))
        if problem is not None:
            session.error(f"{SERVER_VENV} has {SERVER_EXTRAS} installed but cannot run the server: {problem}")
    return str(python)


def _run_conformance(session: nox.Session, requirement: str) -> None:
    session.chdir(ROOT)
    session.install(requirement, "pytest")
    helper = _server_helper()
    server = helper.start_server(_server_python(session, helper))
    session.log(f"thoth serve at {server.info.url} (tenant {server.info.tenant}, home {server.home})")
    env = {
        **server.info.env(),
        # Empty means unset to Python: our src/ must not shadow the published `thoth`.
        "PYTHONPATH": "",
        "THOTH_API_URL": server.info.url,
    }
    try:
        session.run("pytest", "-c", str(TESTS / "pytest.ini"), str(TESTS), *session.posargs, env=env)
    except BaseException:
        session.log(f"--- server log ---\n{server.log_tail()}")
        raise
    finally:
        server.stop()


def _register(name: str, requirement: str) -> None:
    def conformance(session: nox.Session) -> None:
        _run_conformance(session, requirement)

    conformance.__doc__ = f"Published client {requirement} against our `thoth serve`."
    nox.session(name=name, reuse_venv=True)(conformance)


for _name, _requirement in PUBLISHED_CLIENTS.items():
    _register(_name, _requirement)

"""One environment per agent framework: they cannot share one (crewai pins openai<3 and
pydantic<2.13, autogen-agentchat pins protobuf 5, `autogen` and old autogen-agentchat write the
same package directory).

Each session installs the SDK plus exactly one framework, runs tests/integrations/<name>/ and
then the framework's example script against a local `thoth serve` stand-in.

    nox                      # every framework (CI)
    nox -r -s langchain      # one framework, reusing its venv
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import nox

nox.options.reuse_existing_virtualenvs = True
# A missing Python 3.12 must fail the run, never skip the frameworks silently.
nox.options.error_on_missing_interpreters = True

PYTHON = "3.12"
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.23"]
# The example scripts need an LLM: they talk to tests/integrations/llm_stub.py (a loopback
# stand-in of the OpenAI/Anthropic HTTP APIs) and to a governance server started by
# tests/integrations/run_example.py.


def _registry() -> ModuleType:
    """src/thoth/integrations/registry.py (stdlib only): the one table of integrations."""
    path = Path(__file__).resolve().parent / "src" / "thoth" / "integrations" / "registry.py"
    spec = importlib.util.spec_from_file_location("thoth_integration_registry", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


INTEGRATIONS = _registry().INTEGRATIONS

QUIET_ENV = {
    # Frameworks that phone home by default: keep CI offline and quiet.
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "OTEL_SDK_DISABLED": "true",
    "ANONYMIZED_TELEMETRY": "false",
    "OPENAI_AGENTS_DISABLE_TRACING": "1",
    "AUTOGEN_USE_DOCKER": "False",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def _make_session(integration: Any) -> None:
    name, folder, examples = integration.name, integration.name, integration.examples
    requirements = [*integration.test_requirements]

    @nox.session(name=name, python=PYTHON)
    def _session(session: nox.Session) -> None:
        # the framework comes from the extra a user installs, so the extra is what is tested
        # (a row without an extra brings its framework in test_requirements)
        extras = ",".join(e for e in ("server", integration.extra) if e)
        session.install("-e", f".[{extras}]", *TEST_DEPS, *requirements)
        env = dict(QUIET_ENV)
        session.run("pytest", "-q", "-p", "no:cacheprovider", f"tests/integrations/{folder}", *session.posargs, env=env)
        for script in examples:
            session.run("python", "tests/integrations/run_example.py", script, env=env)

    _session.__doc__ = f"Tests and example for {name} " + (
        f"(the '{integration.extra}' extra)." if integration.extra else f"({integration.dist}, no extra).")


for _integration in INTEGRATIONS:
    _make_session(_integration)


@nox.session(name="mcp_proxy", python=PYTHON)
def mcp_proxy(session: nox.Session) -> None:
    """`thoth mcp proxy` (tests/mcp_proxy, about 1-2 min): real MCP servers of the official SDK over
    stdio and HTTP, and the npm MCP tools (server-everything, the conformance suite, the
    inspector CLI) installed by scripts/mcp_npm.sh into .cache/npm (skipped when npm is absent)."""
    session.install("-e", ".[server,policy,mcp]", *TEST_DEPS)
    session.run("bash", "scripts/mcp_npm.sh", external=True)
    session.run("pytest", "-q", "-p", "no:cacheprovider", "tests/mcp_proxy", *session.posargs, env=dict(QUIET_ENV))


# The published-client conformance sessions (conformance-aten, conformance-atensec).
sys.path.insert(0, str(Path(__file__).parent))
import noxfile_conformance  # noqa: E402,F401

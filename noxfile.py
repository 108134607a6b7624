"""One environment per agent framework: they cannot share one (crewai pins openai<3 and
pydantic<2.13, autogen-agentchat pins protobuf 5, `autogen` and old autogen-agentchat write the
same package directory).

Each session installs the SDK plus exactly one framework, runs tests/integrations/<name>/ and
then the framework's example script against a local `thoth serve` stand-in.

    nox                      # every framework (CI)
    nox -r -s langchain      # one framework, reusing its venv
"""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
# A missing Python 3.12 must fail the run, never skip the frameworks silently.
nox.options.error_on_missing_interpreters = True

PYTHON = "3.12"
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.23"]
# The example scripts need an LLM: they talk to tests/integrations/llm_stub.py (a loopback
# stand-in of the OpenAI/Anthropic HTTP APIs) and to a governance server started by
# tests/integrations/run_example.py.

# session name -> (pip requirements of the framework, test folder, example scripts)
FRAMEWORKS: dict[str, tuple[list[str], str, list[str]]] = {
    "langchain": (
        ["langchain>=1.0", "langchain-core>=1.0", "langchain-classic>=1.0", "langgraph>=1.0"],
        "langchain",
        ["examples/langchain_example.py"],
    ),
    "langgraph": (["langgraph>=1.0", "langchain-core>=1.0"], "langgraph", ["examples/langgraph_example.py"]),
    "openai": (["openai>=2.0"], "openai", ["examples/openai_example.py"]),
    "anthropic": (["anthropic>=0.70"], "anthropic", ["examples/anthropic_example.py"]),
    "autogen": (["autogen[openai]>=0.9,<1"], "autogen", ["examples/autogen_example.py"]),
}

# Not yet covered by tests here (adapters exist only where a test proves them): openai-agents,
# claude-agent-sdk, crewai; autogen-agentchat has an adapter (thoth.integrations.autogen) but no
# test session yet.

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


def _make_session(name: str, requirements: list[str], folder: str, examples: list[str]) -> None:
    @nox.session(name=name, python=PYTHON)
    def _session(session: nox.Session) -> None:
        session.install("-e", ".[server]", *TEST_DEPS, *requirements)
        env = dict(QUIET_ENV)
        session.run("pytest", "-q", "-p", "no:cacheprovider", f"tests/integrations/{folder}", *session.posargs, env=env)
        for script in examples:
            session.run("python", "tests/integrations/run_example.py", script, env=env)

    _session.__doc__ = f"Tests and example for {name} ({', '.join(requirements)})."


for _name, (_reqs, _folder, _examples) in FRAMEWORKS.items():
    _make_session(_name, _reqs, _folder, _examples)


# The published-client conformance sessions (conformance-aten, conformance-atensec).
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import noxfile_conformance  # noqa: E402,F401

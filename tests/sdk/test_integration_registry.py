"""The integration registry is the one table of frameworks: the extras in pyproject.toml (where a
row names one), the noxfile's sessions, the adapter modules, the test folders and the examples must all agree with it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from thoth.integrations.registry import INTEGRATIONS, Integration, for_agent, for_tool, load

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
NOT_FRAMEWORKS = {"policy", "cedar", "server", "postgres", "audit", "dev"}  # extras that are not frameworks


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_every_row_has_its_extra_module_tests_and_examples() -> None:
    for row in INTEGRATIONS:
        if row.extra is None:  # no extra: its test environment installs the framework
            assert row.dist in _names(list(row.test_requirements)), f"{row.name}: nothing installs {row.dist}"
        else:
            assert row.extra in EXTRAS, f"{row.name}: no extra '{row.extra}' in pyproject.toml"
            assert row.dist in _names(EXTRAS[row.extra]), f"{row.name}: the extra does not install {row.dist}"
        assert (ROOT / "src" / "thoth" / "integrations" / f"{row.module}.py").is_file(), row.module
        assert (ROOT / "tests" / "integrations" / row.name).is_dir(), f"no tests/integrations/{row.name}/"
        for example in row.examples:
            assert (ROOT / example).is_file(), example


def test_every_framework_extra_has_a_row() -> None:
    rows = {row.extra for row in INTEGRATIONS}
    assert set(EXTRAS) - NOT_FRAMEWORKS <= rows, "extras without an integration row"


def test_every_test_folder_has_a_row() -> None:
    rows = {row.name for row in INTEGRATIONS}
    folders = {p.name for p in (ROOT / "tests" / "integrations").iterdir() if any(p.glob("test_*.py"))}
    assert folders <= rows, f"test folders without a registry row: {folders - rows}"


def test_the_noxfile_has_one_session_per_row() -> None:
    nox = pytest.importorskip("nox")
    import importlib.util

    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    before = dict(nox.registry.get())
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    sessions = set(nox.registry.get())
    nox.registry._REGISTRY.clear()
    nox.registry._REGISTRY.update(before)
    assert {row.name for row in INTEGRATIONS} <= sessions
    # Besides one session per framework: the published clients' conformance and the MCP proxy's
    # own environment (neither is a framework adapter).
    others = {s for s in sessions if s.startswith("conformance")} | {"mcp_proxy"}
    assert sessions - others == {row.name for row in INTEGRATIONS}


def _fake(module: str, name: str) -> object:
    return type(name, (), {"__module__": module})()


def test_recognition_by_class_module() -> None:
    found = for_agent(_fake("langgraph.graph.state", "CompiledStateGraph"))
    assert found is not None and found.module == "langchain"
    assert for_agent(_fake("agents.agent", "Agent")).name == "openai_agents"  # type: ignore[union-attr]
    assert for_agent(_fake("agentsx.agent", "Agent")) is None
    base = type("BaseTool", (), {"__module__": "langchain_core.tools.base"})
    assert for_tool(type("T", (base,), {})()).name == "langchain"  # type: ignore[union-attr]
    assert for_tool(_fake("myapp.tools", "BaseTool")) is None


def test_a_module_that_cannot_load_says_what_to_install() -> None:
    with pytest.raises(RuntimeError, match=r"install the 'acme' extra: pip install '\.\[acme\]'"):
        load(Integration("acme", "no_such_adapter", "acme", "acme-agents"))
    with pytest.raises(RuntimeError, match="install acme-agents: pip install acme-agents"):
        load(Integration("acme", "no_such_adapter", None, "acme-agents"))

"""No import cycles in src/thoth.

Every module under src/thoth is parsed with `ast` (nothing is imported) and every import that
runs is an edge: top-level ones and those inside functions (a lazy import still ties the two
modules together; it only hides the cycle until the first call). Imports under
`if TYPE_CHECKING:` never run and are not edges. Neither are the implicit imports of parent
packages (`import thoth.server.db` also runs thoth/__init__ and thoth/server/__init__, but every
module would then form a cycle with its package). A package's `__init__` is an edge when it is
named: `import thoth`, `from thoth import instrument`, `from . import name` for a name that is
not a submodule. Imports by computed name (importlib.import_module(f"...")) are not seen.

Cycles anywhere else must be listed in ALLOWED (each strongly connected group of modules found
must lie inside one allowed group); it is empty, so any cycle in src/thoth fails. Keep it so.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
NON_SDK = ("thoth.server", "thoth.policy", "thoth.analytics")

# Groups of modules allowed to import one another, outside the SDK: none (issue 15 removed the last).
ALLOWED: list[frozenset[str]] = []


def module_names() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in sorted((SRC / "thoth").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: all but those in `if TYPE_CHECKING:` bodies."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _existing(name: str, modules: dict[str, Path]) -> str | None:
    """`name` or its longest prefix that is a module of ours (thoth.x.y.attr -> thoth.x.y)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(t for alias in node.names if (t := _existing(alias.name, modules)))
            continue
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        source = ".".join(p for p in (base if node.level else "", node.module or "") if p)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            target = submodule if submodule in modules else _existing(source, modules)
            if target:
                targets.add(target)
    targets.discard(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Groups of two or more modules that reach one another (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(frozenset(group))
    return groups


def a_cycle(graph: dict[str, set[str]], group: frozenset[str]) -> list[str]:
    """One shortest cycle through the group's first module, for the failure message."""
    start = min(group)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & group):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    return sorted(group)


def is_sdk(module: str) -> bool:
    return not any(module == p or module.startswith(p + ".") for p in NON_SDK)


def test_the_graph_sees_lazy_imports_and_package_inits() -> None:
    graph = import_graph()
    assert "thoth.http" in graph["thoth.emitter"]  # a top-level import
    assert "thoth.policy.local" in graph["thoth.components"]  # `from thoth.policy import local`, inside a function
    assert "thoth.emitter" in graph["thoth.components"]  # a function-level import
    assert "thoth.tracer" not in graph["thoth.integrations.generic"]  # only under TYPE_CHECKING
    assert "thoth.policy" in graph["thoth"] or "thoth.instrumentor" in graph["thoth"]  # __init__ re-exports


def test_package_init_named_for_a_name_is_an_edge(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.a import thing\n")
    (pkg / "a.py").write_text("from pkg import other\nfrom . import b\nthing = 1\n")
    (pkg / "b.py").write_text("def f():\n    import pkg.a\n")
    modules = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py"}
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg", "pkg.b"}, "pkg.b": {"pkg.a"}}
    assert strongly_connected(graph) == [frozenset(modules)]


def test_no_import_cycle_touches_the_sdk() -> None:
    graph = import_graph()
    bad = [group for group in strongly_connected(graph) if any(is_sdk(m) for m in group)]
    assert not bad, "import cycles in the SDK:\n" + "\n".join(" -> ".join(a_cycle(graph, g)) for g in bad)


def test_no_import_cycle_outside_allowed() -> None:
    graph = import_graph()
    new = [group for group in strongly_connected(graph) if not any(group <= allowed for allowed in ALLOWED)]
    assert not new, "import cycles not in ALLOWED:\n" + "\n".join(
        f"{sorted(g)}\n    e.g. {' -> '.join(a_cycle(graph, g))}" for g in new)

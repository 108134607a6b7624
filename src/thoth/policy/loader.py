"""Parse YAML (or take a dict) into plain Python data plus a map from paths to line numbers.

PyYAML's composed nodes carry start marks; we keep them per path so that validation errors can
name the line. Aliases are expanded with a node budget so that a "billion laughs" document is
refused instead of exhausting memory.
"""

from __future__ import annotations

from typing import Any

from thoth.policy.errors import PolicyIssue, PolicyValidationError

MAX_DOCUMENT_BYTES = 2_000_000
MAX_NODES = 200_000

Path = tuple[str | int, ...]


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Marks:
    """Line/column of each path in the source document (1-based), when known."""

    def __init__(self) -> None:
        self.by_path: dict[Path, tuple[int, int]] = {}

    def issue(self, path: Path, message: str) -> PolicyIssue:
        # The nearest enclosing path with a known position names the line.
        probe = path
        while probe not in self.by_path and probe:
            probe = probe[:-1]
        line, col = self.by_path.get(probe, (None, None))
        return PolicyIssue(format_path(path), message, line, col)


def load_document(source: str | bytes | dict[str, Any]) -> tuple[Any, Marks]:
    """YAML text (or an already-parsed mapping) -> (data, marks). Raises PolicyValidationError."""
    marks = Marks()
    if isinstance(source, dict):
        return source, marks
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyValidationError([PolicyIssue("", f"policy is not UTF-8 text: {exc}")]) from None
    if not isinstance(source, str):
        raise PolicyValidationError([PolicyIssue("", "policy must be YAML text or a mapping")])
    if len(source) > MAX_DOCUMENT_BYTES:
        raise PolicyValidationError([PolicyIssue("", f"policy is larger than {MAX_DOCUMENT_BYTES} bytes")])
    import yaml

    try:
        # libyaml's parser when PyYAML was built with it (same nodes and marks, ~5x faster).
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        nodes = list(yaml.compose_all(source, Loader=loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        text = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise PolicyValidationError([PolicyIssue("", f"YAML syntax error: {text}", line, col)]) from None
    except yaml.YAMLError as exc:
        raise PolicyValidationError([PolicyIssue("", f"YAML error: {exc}")]) from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise PolicyValidationError([PolicyIssue("", f"YAML error: {exc}")]) from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise PolicyValidationError([PolicyIssue("", "policy document is empty")])
    if len(nodes) > 1:
        line = nodes[1].start_mark.line + 1
        raise PolicyValidationError([PolicyIssue("", "expected one YAML document, found several", line)])
    budget = [MAX_NODES]
    constructor = yaml.SafeLoader("")
    try:
        data = _convert(nodes[0], (), marks, budget, 0, constructor)
    except _TooBig as exc:
        raise PolicyValidationError([PolicyIssue("", str(exc))]) from None
    except yaml.MarkedYAMLError as exc:  # e.g. a !!python/object tag: SafeLoader refuses it
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PolicyValidationError([PolicyIssue("", f"YAML error: {exc.problem or exc}", line)]) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise PolicyValidationError([PolicyIssue("", f"YAML error: {exc}")]) from None
    return data, marks


class _TooBig(Exception):
    pass


def _convert(node: Any, path: Path, marks: Marks, budget: list[int], depth: int, ctor: Any) -> Any:
    import yaml

    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(f"policy expands to more than {MAX_NODES} values (aliases?)")
    if depth > 100:
        raise _TooBig(f"policy is nested more than 100 levels deep (line {node.start_mark.line + 1})")
    marks.by_path.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ValueError(f"line {key_node.start_mark.line + 1}: merge keys (<<) are not supported")
            key = _convert(key_node, path, marks, budget, depth + 1, ctor)
            if not isinstance(key, str | int | float | bool) or key is None:
                key = str(key)
            if key in out:
                raise ValueError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            child = (*path, str(key))
            marks.by_path[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, child, marks, budget, depth + 1, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), marks, budget, depth + 1, ctor) for i, item in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)

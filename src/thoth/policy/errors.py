"""Validation errors that name the place: a line number (when the policy came from YAML) and a path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in a policy document. `path` is like `rules[3].when.args.amount.gt`."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        at = f"{self.path}: " if self.path else ""
        return f"{where}{at}{self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "message": self.message, "line": self.line, "column": self.column}


class PolicyValidationError(ValueError):
    """A policy document that cannot be activated. `.errors` lists every problem found."""

    def __init__(self, errors: list[PolicyIssue]) -> None:
        self.errors = errors
        summary = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid policy: {summary}{more}")


class PolicyEvaluationError(Exception):
    """Raised inside a condition when a value cannot be judged (e.g. NaN); the engine fails closed."""

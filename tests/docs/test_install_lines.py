"""The install lines a newcomer copies from the README and docs must install this project.

`aten-thoth` on the package index is another vendor's proprietary client (no server): our
distribution is `thoth-governance`, installed from a clone until a release exists.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md")), *sorted((ROOT / "examples").glob("*.py"))]
PUBLISHED_CLIENTS = ("aten-thoth", "atensec-thoth")
PIP_LINE = re.compile(r"pip install\s+([^\n`]+)")


def test_distribution_has_a_name_of_its_own() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "thoth-governance"
    assert project["name"] not in PUBLISHED_CLIENTS


def test_no_install_line_names_the_published_clients_for_our_package() -> None:
    wrong = []
    for path in DOCS:
        for match in PIP_LINE.finditer(path.read_text()):
            line = match.group(1)
            for name in PUBLISHED_CLIENTS:
                # a pinned published client (the conformance sessions) is meant; anything else is ours
                if re.search(rf"(?<![\w-]){name}(?![\w-])", line) and f"{name}==" not in line:
                    wrong.append(f"{path.relative_to(ROOT)}: pip install {line.strip()}")
    assert not wrong, "install lines that would fetch another vendor's package:\n" + "\n".join(wrong)


def test_extras_named_in_install_lines_exist() -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    unknown = []
    for path in DOCS:
        for match in PIP_LINE.finditer(path.read_text()):
            for group in re.findall(r"\.\[([\w,<>-]+)\]", match.group(1)):
                unknown += [f"{path.relative_to(ROOT)}: {e}" for e in group.split(",")
                            if e not in extras and not e.startswith("<")]
    assert not unknown, "install lines name extras pyproject.toml does not define:\n" + "\n".join(unknown)

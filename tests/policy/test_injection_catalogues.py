"""The evaluation catalogues (bench/catalogues/) compile with the prompt_injection pack, and the
InjecAgent one is exactly what its generator makes from tools.json (never edited by hand)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from thoth.policy import compile_policy

ROOT = Path(__file__).resolve().parents[2]
CATALOGUES = ROOT / "bench" / "catalogues"
PACK = ROOT / "src" / "thoth" / "policy" / "packs" / "prompt_injection.yaml"
TOOLS_JSON = next((p / "injecagent" / "tools.json" for p in (ROOT.parent / "shared" / "data",
                                                           ROOT.parents[1] / "shared" / "data")
                   if (p / "injecagent" / "tools.json").is_file()), None)


@pytest.mark.parametrize("name", ["agentdojo_workspace", "agentdojo_travel", "injecagent"])
def test_catalogue_compiles_with_the_pack(name: str) -> None:
    pack = yaml.safe_load(PACK.read_text())
    pack["tools"] = yaml.safe_load((CATALOGUES / f"{name}.yaml").read_text())["tools"]
    policy = compile_policy(yaml.safe_dump(pack))
    assert len(policy.rule_ids) >= 5
    assert policy.trusted <= set(pack["tools"])  # trust labels name catalogued tools only


@pytest.mark.skipif(TOOLS_JSON is None, reason="../shared/data/injecagent is not on this machine")
def test_injecagent_catalogue_is_generated(tmp_path: Path) -> None:
    script = CATALOGUES / "make_injecagent_catalogue.py"
    copy = tmp_path / "make_injecagent_catalogue.py"
    copy.write_text(script.read_text())  # writes beside itself: run a copy, compare outputs
    subprocess.run([sys.executable, str(copy), str(TOOLS_JSON)], check=True, capture_output=True)
    assert (tmp_path / "injecagent.yaml").read_text() == (CATALOGUES / "injecagent.yaml").read_text()
    tools = {t["name"] for t in json.loads(TOOLS_JSON.read_text())}
    assert set(yaml.safe_load((CATALOGUES / "injecagent.yaml").read_text())["tools"]) == tools


def test_generator_labels_by_verb_and_words() -> None:
    sys.path.insert(0, str(CATALOGUES))
    try:
        from make_injecagent_catalogue import label  # noqa: PLC0415
    finally:
        sys.path.remove(str(CATALOGUES))
    assert label({"tool": "ReadEmail", "description": "Read an email."}) == {"tier": "low", "classification": "read"}
    assert label({"tool": "ViewSavedPaymentMethods", "description": "View payment methods."})["tier"] == "high"
    assert label({"tool": "TransferFunds", "description": "Move money."})["classification"] == "external"
    assert label({"tool": "DeleteRepository", "description": "Delete a repo."})["classification"] == "delete"
    assert label({"tool": "Execute", "description": "Run a command."})["tier"] == "critical"
    assert label({"tool": "MoveItem", "description": "Move a file."}) == {"tier": "medium", "classification": "write"}

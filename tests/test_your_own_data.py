"""The README's "Your own data" block, run as written on a bank that is not the simulated one.

Harbor Federal (``tests/fixtures/harbor_bank``) has 14 tiles, 6 products, URL pages, its own profile
columns and a Feast prefix; its raw files are a GA4 export and parquet tables. The block goes from those
files to served ``/rank_tiles`` answers with one declaration and no code change. The only substitution
is the port (a free one instead of 3000).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clicks2intent.common.net import free_port

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- your own data: begin -->", "<!-- your own data: end -->"


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return block


def json_answers(stdout: str) -> list[dict]:
    """Every JSON object the block's curls printed (they follow each other without a newline)."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while (i := stdout.find("{", i)) >= 0:
        try:
            obj, end = decoder.raw_decode(stdout, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if isinstance(obj, dict):
            out.append(obj)
        i = end
    return out


def test_the_block_names_only_the_declared_bank() -> None:
    block = readme_block()
    world = yaml.safe_load((ROOT / "tests" / "fixtures" / "harbor_bank" / "world.yaml").read_text())
    tiles = set(
        re.findall(r'"candidate_tiles": \[([^\]]*)\]', block)[0].replace('"', "").replace(" ", "").split(",")
    )
    assert tiles <= set(world["tiles"])
    assert "C2I_WORLD" in block and "c2i ingest ga4" in block and "c2i serve" in block


@pytest.mark.slow
@pytest.mark.llm
def test_readme_your_own_data_runs_from_raw_files_to_served_answers(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "feature_repo", tmp_path / "feature_repo", ignore=shutil.ignore_patterns("data", "__pycache__")
    )
    shutil.copytree(
        ROOT / "tests" / "fixtures" / "harbor_bank", tmp_path / "tests" / "fixtures" / "harbor_bank"
    )
    port = free_port()
    script = readme_block().replace("3000", str(port))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("C2I_", "BENTOML_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    answers = json_answers(proc.stdout)
    rank = next(a for a in answers if "tiles" in a)
    intent = next(a for a in answers if "embedding" in a)
    candidates = {"travel_card", "kids_savings", "green_mortgage", "fraud_help"}
    assert [t["tile_id"] for t in rank["tiles"]] and {t["tile_id"] for t in rank["tiles"]} <= candidates
    assert len(rank["tiles"]) == 3 and rank["model"]["name"] == "harbor_tile_ranker_v1"
    # The raw URLs mapped through the declaration: every page readable, the in-flight session used.
    assert rank["intent"]["source"] == "session" and rank["intent"]["unknown_page_share"] == 0.0
    # A page the declaration does not know: no label, and the answer says why.
    assert intent["label"] is None and intent["confidence"] is None and intent["unknown_page_share"] == 1.0
    report = json.loads((tmp_path / "artifacts" / "reports" / "ablation.json").read_text())
    assert report["dataset"] == "harbor-federal"
    assert set(report["tile_ranking"]["classes"]) == set(
        yaml.safe_load((tmp_path / "tests" / "fixtures" / "harbor_bank" / "world.yaml").read_text())["tiles"]
    )
    assert "is consistent with" in proc.stdout  # c2i world check

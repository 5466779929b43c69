"""``c2i world propose`` and ``c2i world check``: a first declaration from a bank's data (the Harbor bank's
generated GA4 export and tables; a simulator data directory) parses and covers the pages; a check finds
a missing profile column, an uncastable one, an undeclared tile or product, too many unmatched pages."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from clicks2intent.cli import main
from clicks2intent.data.contract import validate_events
from clicks2intent.data.ingest import ingest_ga4
from clicks2intent.data.propose import check_world, propose_world
from clicks2intent.data.world import load_world, parse_world
from clicks2intent.errors import ArtifactError
from clicks2intent.names import columns as C

HARBOR = Path(__file__).resolve().parents[1] / "fixtures" / "harbor_bank"


def _make_bank() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_bank", HARBOR / "make_bank.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_bank"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harbor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("harbor")
    _make_bank().generate(out, customers=300, days=30, seed=3)
    return out


@pytest.fixture(scope="module")
def harbor_proposal(harbor_dir: Path) -> str:
    return propose_world(harbor_dir, name="harbor-draft")


def _parse(text: str):  # noqa: ANN202
    return parse_world(yaml.safe_load(text), "proposed.yaml")


def test_harbor_proposal_parses_and_covers_the_pages(harbor_dir: Path, harbor_proposal: str) -> None:
    hand = load_world(HARBOR / "world.yaml")
    draft = _parse(harbor_proposal)
    assert set(draft.tiles) == set(hand.tiles) and set(draft.products) == set(hand.products)
    assert dict(draft.profile) == dict(hand.profile)  # names and kinds from customers.parquet's schema
    assert draft.name == "harbor-draft" and draft.app_page_types == ()
    # Sub-paths come before their section's catch-all (first match wins).
    order = list(draft.page_types)
    assert order.index("mortgages_green_mortgage") < order.index("mortgages")
    assert draft.page_patterns["mortgages"] == ("/mortgages", "/mortgages/*")
    assert draft.tile_pages["green_mortgage"] == ("mortgages_green_mortgage",)
    assert draft.tile_pages["fraud_help"] == ("help_fraud",)
    assert draft.funnel.search == ("search",)
    assert (draft.funnel.application_start, draft.funnel.application_form) == ("apply_start", "apply_details")
    assert "cards_travel_card" in draft.funnel.product and "home" not in draft.funnel.product
    # Every guess is marked for review (the tiles' pages, the funnel, the horizon).
    lines = harbor_proposal.splitlines()
    funnel = lines[lines.index("funnel:") :]
    for key, where in (("  green_mortgage:", lines), ("  search:", funnel), ("  product:", funnel)):
        line = next(ln for ln in where if ln.startswith(key))
        assert "# check:" in line, line
    for key in ("  application_start:", "  application_form:", "conversion_horizon_days:"):
        assert "# check:" in next(ln for ln in lines if ln.startswith(key))
    assert "Left to <OOV>:" in harbor_proposal
    # The same events, mapped through the draft: few page views left unmatched.
    result = ingest_ga4([harbor_dir / "ga4"], draft)
    assert result.report.validation.page_mapping["oov_share"] < 0.01


def test_proposal_keeps_pii_out(harbor_proposal: str) -> None:
    assert "@" not in harbor_proposal and "example.com" not in harbor_proposal
    assert "?" not in harbor_proposal.replace("# check:", "")  # no query string became a pattern


def test_simulator_proposal_parses_with_no_oov(tmp_path: Path) -> None:
    data = tmp_path / "sim"
    assert main(["simulate", "--out", str(data), "--customers", "300"]) == 0
    (data / "world.yaml").unlink()  # propose from the data alone
    draft = _parse(propose_world(data))
    again = parse_world(yaml.safe_load(propose_world(data)), "again.yaml")
    events = pd.read_parquet(data / "events.parquet")
    result = validate_events(events, world=draft)
    assert result.report.page_mapping["n_oov"] == 0
    assert set(draft.app_page_types) == set(events.loc[events[C.CHANNEL] == "app", C.PAGE_TYPE])
    assert draft.tile_pages["security_center"] == ("security_center",)
    assert draft.digest == again.digest  # deterministic


def test_propose_needs_the_task_logs(tmp_path: Path, harbor_dir: Path) -> None:
    shutil.copytree(harbor_dir / "ga4", tmp_path / "ga4")
    shutil.copy(harbor_dir / "customers.parquet", tmp_path)
    with pytest.raises(ArtifactError, match=r"tile_impressions not found .*tile_impressions\.parquet"):
        propose_world(tmp_path)


def test_check_passes_on_the_hand_written_declaration(
    harbor_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["world", "check", str(HARBOR / "world.yaml"), "--data", str(harbor_dir)]) == 0
    out = capsys.readouterr().out
    assert "error:" not in out and "is consistent with" in out
    assert "app_pages not checked" in out  # the export holds web page views only


def _copy(harbor_dir: Path, dest: Path) -> Path:
    shutil.copytree(harbor_dir, dest)
    return dest


def test_check_finds_a_missing_profile_column_and_an_undeclared_tile(
    tmp_path: Path, harbor_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _copy(harbor_dir, tmp_path / "data")
    pq.write_table(pq.read_table(data / "customers.parquet").drop(["region"]), data / "customers.parquet")
    tiles = pd.read_parquet(data / "tile_impressions.parquet")
    tiles.loc[tiles.index[:3], C.CLICKED_TILE] = "pet_insurance"
    tiles.to_parquet(data / "tile_impressions.parquet", index=False)
    assert main(["world", "check", str(HARBOR / "world.yaml"), "--data", str(data)]) == 2
    errors = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2, errors
    assert "profile column 'region' (string)" in errors[0] and "is missing" in errors[0]
    assert "clicked_tile_id value 'pet_insurance'" in errors[1] and "not declared" in errors[1]


def test_check_finds_uncastable_columns_undeclared_products_and_unmatched_pages(
    tmp_path: Path, harbor_dir: Path
) -> None:
    data = _copy(harbor_dir, tmp_path / "data")
    customers = pd.read_parquet(data / "customers.parquet")
    customers["months_as_member"] = "many"
    customers.to_parquet(data / "customers.parquet", index=False)
    conv = pd.read_parquet(data / "conversions.parquet")
    conv.loc[conv.index[0], C.CONVERSION_PRODUCT] = "pension"
    conv.to_parquet(data / "conversions.parquet", index=False)
    hand = load_world(HARBOR / "world.yaml")
    strict = parse_world({**hand.to_dict(), "max_oov_share": 0.001}, "strict.yaml")
    check = check_world(strict, data)
    assert not check.ok and len(check.errors) == 3, check.errors
    assert "'months_as_member' of type string does not cast to int" in check.errors[0]
    assert "product value 'pension'" in check.errors[1]
    assert "unmatched" in check.errors[2] and "rule max_oov_share 0%" in check.errors[2]


def test_a_world_that_does_not_parse_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "world.yaml"
    bad.write_text((HARBOR / "world.yaml").read_text().replace("risk_score: float", "risk_score: decimal"))
    assert main(["world", "check", str(bad), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "profile.risk_score" in err and "decimal" in err


def test_make_bank_is_deterministic(tmp_path: Path) -> None:
    bank = _make_bank()
    for name in ("a", "b"):
        bank.generate(tmp_path / name, customers=40, days=8, seed=5)
    bank.generate(tmp_path / "c", customers=40, days=8, seed=6)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all(
        (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files
    )
    assert (tmp_path / "a" / "customers.parquet").read_bytes() != (
        tmp_path / "c" / "customers.parquet"
    ).read_bytes()

"""The simulator: deterministic, documented marginals, every file's columns, no PII, no truth leaks."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from clicks2intent.cli.data import register
from clicks2intent.data import simulator as sim
from clicks2intent.data.contract import EVENT_SCHEMA, validate_events
from clicks2intent.names import columns as C

N_CUSTOMERS = 600  # ~30k events: a second or two


@pytest.fixture(scope="module")
def result() -> sim.SimulationResult:
    return sim.simulate(sim.SimulatorConfig(n_customers=N_CUSTOMERS, seed=7))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, result: sim.SimulationResult) -> dict[str, Path]:
    return sim.write_simulation(result, tmp_path_factory.mktemp("sim"))


def _digest(paths: dict[str, Path]) -> dict[str, str]:
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in paths.items()}


def test_same_seed_gives_identical_files(tmp_path: Path, written: dict[str, Path]) -> None:
    again = sim.write_simulation(
        sim.simulate(sim.SimulatorConfig(n_customers=N_CUSTOMERS, seed=7)), tmp_path / "a"
    )
    assert _digest(again) == _digest(written)


def test_other_seed_gives_other_data(result: sim.SimulationResult) -> None:
    other = sim.simulate(sim.SimulatorConfig(n_customers=N_CUSTOMERS, seed=8))
    assert not other.events[C.PAGE_TYPE].equals(result.events[C.PAGE_TYPE])


def test_every_file_has_its_columns(written: dict[str, Path]) -> None:
    expected = {
        "identity_links": [C.VISITOR_ID, C.CUSTOMER_ID, C.LINKED_AT, C.LINK_METHOD],
        "customers": [
            C.CUSTOMER_ID,
            C.EVENT_TIMESTAMP,
            "tenure_months",
            "age",
            "app_sessions_30d",
            "balance_band",
            "n_products",
        ]
        + [f"has_{p}" for p in C.PRODUCTS],  # fmt: skip
        "tile_impressions": [C.IMPRESSION_ID, C.CUSTOMER_ID, C.EVENT_TIMESTAMP, C.CLICKED_TILE],
        "conversions": [C.SESSION_ID, C.VISITOR_ID, C.EVENT_TIMESTAMP, C.CONVERSION_PRODUCT, "converted_at"],
        "session_truth": [C.SESSION_ID, C.TRUE_INTENT],
    }
    assert pq.read_schema(written["events"]).remove_metadata() == EVENT_SCHEMA
    for name, cols in expected.items():
        frame = pd.read_parquet(written[name])
        assert set(cols) <= set(frame.columns), name
        assert len(frame) > 0, name
        for col in frame.columns:
            if "timestamp" in col or col.endswith("_at"):
                assert str(frame[col].dtype) == "datetime64[us, UTC]", (name, col)
    params = json.loads(written["params"].read_text())
    assert params["config"]["seed"] == 7 and params["config"]["n_customers"] == N_CUSTOMERS


def test_written_events_pass_the_contract(written: dict[str, Path]) -> None:
    events = pd.read_parquet(written["events"])
    report = validate_events(events, known_page_types=sim.PAGE_TYPES).report
    assert report.n_rejected == 0 and report.n_repaired == 0 and report.pii_redactions == {}


def test_vocabularies_and_referential_integrity(result: sim.SimulationResult) -> None:
    ev = result.events
    assert set(ev[C.PAGE_TYPE]) <= set(sim.PAGE_TYPES)
    assert set(ev[C.CHANNEL]) == {"web", "app"}
    web, app = ev[ev[C.CHANNEL] == "web"], ev[ev[C.CHANNEL] == "app"]
    # Web events are anonymous (visitor only), app events authenticated (customer only).
    assert web[C.CUSTOMER_ID].isna().all() and web[C.VISITOR_ID].notna().all()
    assert app[C.VISITOR_ID].isna().all() and app[C.CUSTOMER_ID].notna().all()
    assert set(app[C.PAGE_TYPE]) <= set(sim.APP_PAGES) and set(web[C.PAGE_TYPE]) <= set(sim.WEB_PAGES)
    assert ev[C.SEARCH_QUERY].notna().eq(ev[C.PAGE_TYPE] == "search").all()
    assert (ev[C.DWELL_SECONDS].dropna() >= 1).all()
    assert set(result.tile_impressions[C.CLICKED_TILE]) <= set(C.TILES) | {C.NO_CLICK}
    assert set(result.conversions[C.CONVERSION_PRODUCT]) <= set(C.PRODUCTS) | {C.NO_CONVERSION}
    # Every app_home view is an impression; every web session has one conversion row.
    assert len(result.tile_impressions) == int((ev[C.PAGE_TYPE] == "app_home").sum())
    assert set(result.conversions[C.SESSION_ID]) == set(web[C.SESSION_ID])
    assert result.conversions[C.SESSION_ID].is_unique
    customers = set(result.customers[C.CUSTOMER_ID])
    assert set(result.tile_impressions[C.CUSTOMER_ID]) <= customers
    assert set(result.identity_links[C.CUSTOMER_ID]) <= customers
    assert set(result.identity_links[C.VISITOR_ID]) <= set(web[C.VISITOR_ID])
    assert result.identity_links[C.VISITOR_ID].is_unique
    assert set(result.session_truth[C.SESSION_ID]) == set(ev[C.SESSION_ID])


def test_times_are_consistent(result: sim.SimulationResult) -> None:
    params = result.params
    start, end = pd.Timestamp(params["window_start"]), pd.Timestamp(params["window_end"])
    ev = result.events
    assert ev[C.EVENT_TIMESTAMP].min() >= start and ev[C.EVENT_TIMESTAMP].max() < end + pd.Timedelta(days=1)
    # Within a session, consecutive events are one dwell apart; the last dwell is unknown.
    gap = ev.groupby(C.SESSION_ID)[C.EVENT_TIMESTAMP].diff().dt.total_seconds().shift(-1)
    last = ev[C.SESSION_ID] != ev[C.SESSION_ID].shift(-1)
    assert ev.loc[last, C.DWELL_SECONDS].isna().all()
    assert np.allclose(gap[~last], ev.loc[~last, C.DWELL_SECONDS], atol=1e-3)
    conv = result.conversions.dropna(subset=["converted_at"])
    delay = (conv["converted_at"] - conv[C.EVENT_TIMESTAMP]).dt.total_seconds() / 86_400
    assert (delay >= 0).all() and (delay <= sim.SimulatorConfig().conversion_horizon_days).all()
    assert (
        result.conversions["converted_at"].isna() == (result.conversions[C.CONVERSION_PRODUCT] == "none")
    ).all()


def test_documented_marginals(result: sim.SimulationResult) -> None:
    s = result.stats
    assert 0.20 <= s["link_rate_customer_visitors"] <= 0.36
    assert 0.22 <= s["prospect_share_seen"] <= 0.42
    assert 0.15 <= s["click_rate"] <= 0.45
    assert 0.01 <= s["conversion_rate"] <= 0.10
    assert 2.0 <= s["web_sessions_per_visitor"] <= 8.0
    assert 3.0 <= s["web_events_per_session"] <= 12.0
    assert 40 <= len(result.events) / N_CUSTOMERS <= 80  # ~0.5–1.5M events for 20k customers
    # Prospects are never linked; most visitors are never linked at all.
    truth_owner = result.session_truth.set_index(C.SESSION_ID)["is_prospect"]
    web = result.events[result.events[C.CHANNEL] == "web"]
    prospect_visitors = set(web.loc[web[C.SESSION_ID].map(truth_owner), C.VISITOR_ID])
    assert not prospect_visitors & set(result.identity_links[C.VISITOR_ID])
    assert s["link_rate_all_visitors"] < 0.5


def test_intent_drives_pages_and_outcomes(result: sim.SimulationResult) -> None:
    """The hidden intent is recoverable from the pages (more so late in the session) and drives conversions."""
    ev = result.events.merge(result.session_truth[[C.SESSION_ID, C.TRUE_INTENT]], on=C.SESSION_ID)
    mort = ev[ev[C.TRUE_INTENT] == "mortgage"]
    others = ev[(ev[C.TRUE_INTENT] != "mortgage") & (ev[C.CHANNEL] == "web")]
    share = lambda d: d[C.PAGE_TYPE].isin(["product_mortgage", "mortgage_calculator"]).mean()  # noqa: E731
    assert share(mort) > 4 * share(others)
    pos = ev.groupby(C.SESSION_ID).cumcount()
    funnel_page = ev.apply(lambda r: r[C.PAGE_TYPE] in sim.FUNNELS.get(r[C.TRUE_INTENT], ()), axis=1)
    need = ev[C.TRUE_INTENT].isin(list(sim.FUNNELS))
    assert funnel_page[need & (pos >= 3)].mean() > funnel_page[need & (pos == 0)].mean() + 0.1
    conv = result.conversions.merge(result.session_truth[[C.SESSION_ID, C.TRUE_INTENT]], on=C.SESSION_ID)
    rate = (conv[C.CONVERSION_PRODUCT] != "none").groupby(conv[C.TRUE_INTENT].isin(C.PRODUCTS)).mean()
    assert rate[True] > 2 * rate[False]
    hit = conv[(conv[C.CONVERSION_PRODUCT] != "none") & conv[C.TRUE_INTENT].isin(C.PRODUCTS)]
    assert (hit[C.CONVERSION_PRODUCT] == hit[C.TRUE_INTENT]).mean() > 0.7


def _need_tile_shares(res: sim.SimulationResult) -> tuple[float, float]:
    """(share of clicks during an active need that hit its tile, share of all clicks that did so)."""
    imp = res.tile_impressions.sort_values(C.EVENT_TIMESTAMP)
    needs = res.needs[~res.needs["is_prospect"]].rename(columns={"person_id": C.CUSTOMER_ID})
    m = pd.merge_asof(
        imp,
        needs.sort_values("need_start"),
        left_on=C.EVENT_TIMESTAMP,
        right_on="need_start",
        by=C.CUSTOMER_ID,
    )
    active = m["need_end"] >= m[C.EVENT_TIMESTAMP]
    hit = m[C.CLICKED_TILE] == m[C.TRUE_INTENT].map(sim.INTENT_TILE)
    clicked = m[C.CLICKED_TILE] != C.NO_CLICK
    return float(hit[active & clicked].mean()), float((hit & active).sum() / clicked.sum())


def test_need_boosts_tile_clicks_without_dominating() -> None:
    """Customers click their current need's tile more, yet most clicks come from the baseline affinity."""
    default = _need_tile_shares(sim.simulate(sim.SimulatorConfig(n_customers=400, seed=3)))
    off = _need_tile_shares(sim.simulate(sim.SimulatorConfig(n_customers=400, seed=3, tile_need_boost=0.0)))
    assert default[0] > 3 * off[0]
    assert 0.05 < default[1] < 0.3


_PII_PATTERNS = {
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[a-z]{2,}", re.I),
    "digits": re.compile(r"\d(?:[ ().+-]*\d){5,}"),  # any 6+ digit run, however separated
}
_ID_COLUMNS = {C.SESSION_ID, C.VISITOR_ID, C.CUSTOMER_ID, C.IMPRESSION_ID, "true_owner_id", "person_id"}


def test_no_pii_survives_into_any_output_file(tmp_path: Path) -> None:
    cfg = sim.SimulatorConfig(n_customers=300, seed=11, pii_rate=0.5)
    result = sim.simulate(cfg)
    assert sum(result.validation["pii_redactions"].values()) > 20  # PII really was seeded
    paths = sim.write_simulation(result, tmp_path)
    pool_values = [v for _, v, _ in sim.pii_pool(cfg)]  # exactly what the generator may paste
    scanned = 0
    for name, path in paths.items():
        if path.suffix == ".json":
            text = path.read_text()
            assert not any(p.search(text) for p in (_PII_PATTERNS["email"],)), name
            continue
        frame = pd.read_parquet(path)
        for col in frame.columns:
            if frame[col].dtype != object:
                continue
            values = frame[col].dropna().astype(str).unique()
            scanned += len(values)
            for v in values:
                if col not in _ID_COLUMNS:
                    assert not _PII_PATTERNS["email"].search(v), (name, col, v)
                    assert not _PII_PATTERNS["digits"].search(v), (name, col, v)
    assert scanned > 100
    queries = pd.read_parquet(paths["events"])[C.SEARCH_QUERY].dropna()
    assert queries.str.contains("<EMAIL>|<CARD>|<SSN>|<PHONE>|<ACCOUNT>").mean() > 0.3
    joined = "\n".join(queries.unique())
    assert not [v for v in pool_values if v in joined]


def test_truth_never_appears_outside_truth(written: dict[str, Path], result: sim.SimulationResult) -> None:
    truth_cols = {C.TRUE_INTENT, "true_owner_id", "is_prospect", "need_active"}
    for name, path in written.items():
        if "truth" in path.parts:
            continue
        if path.suffix == ".parquet":
            cols = set(pq.read_schema(path).names)
            assert not cols & truth_cols, name
    assert list(result.events.columns) == list(C.EVENT_COLUMNS)
    # Ids carry no label: session ids follow start time, visitor ids are a random permutation.
    web = result.events[result.events[C.CHANNEL] == "web"].drop_duplicates(C.SESSION_ID)
    web = web.merge(result.session_truth, on=C.SESSION_ID)
    num = web[C.VISITOR_ID].str[1:].astype(int)
    assert abs(np.corrcoef(num, web["is_prospect"].astype(float))[0, 1]) < 0.1


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="link_rate"):
        sim.SimulatorConfig(link_rate=1.5)
    with pytest.raises(ValueError, match="n_customers"):
        sim.SimulatorConfig(n_customers=0)


def test_cli_simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))  # what ``c2i`` registers

    def main(argv: list[str]) -> int:
        args = parser.parse_args(argv)
        return int(args.func(args))

    assert main(["simulate", "--out", str(tmp_path), "--customers", "150", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "events/s" in printed and "link rate" in printed
    for rel in sim.OUTPUT_FILES.values():
        assert (tmp_path / rel).exists(), rel
    assert (tmp_path / "truth" / "params.json").exists()

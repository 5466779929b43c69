"""GA4 BigQuery export → contract events and identity links (``c2i ingest ga4``), on rows written from
the documented export schema (tests/data/ga4/ga4_export.py): sessions, visitors, customers and links,
the dwell and search rules, PII in no output, every row accounted for, bad input as one error line."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clicks2intent.cli import main
from clicks2intent.data import ingest
from clicks2intent.data.ingest import GA4_LINK_METHOD, ga4_files, ga4_session_id, ingest_ga4
from clicks2intent.data.world import load_world, parse_world
from clicks2intent.errors import ContractError
from clicks2intent.names import columns as C

HERE = Path(__file__).resolve().parent
WORLD = HERE.parents[0] / "fixtures" / "harbor_bank" / "world.yaml"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HERE / "ga4" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


G = _load("ga4_export")


def _write_mixed(d: Path) -> Path:
    """Day 1 as NDJSON, day 2 as gzipped NDJSON, the intraday table as nested parquet."""
    files = G.harbor_export()
    G.write_ndjson(files["events_20250301"], d / "events_20250301.json")
    G.write_ndjson(files["events_20250302"], d / "events_20250302.json.gz", gz=True)
    G.write_parquet(files["events_intraday_20250303"], d / "events_intraday_20250303.parquet")
    return d


@pytest.fixture(scope="module")
def world():  # noqa: ANN201
    return load_world(WORLD)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, world):  # noqa: ANN001, ANN201
    d = _write_mixed(tmp_path_factory.mktemp("export"))
    out = tmp_path_factory.mktemp("data")
    return ingest_ga4([d], world, out), out


def test_sessions_pages_dwell_and_search(ingested) -> None:  # noqa: ANN001
    result, _ = ingested
    ev = result.events
    got = {
        sid: [
            (r.page_type, None if pd.isna(r.dwell_seconds) else r.dwell_seconds, r.search_query)
            for r in g.itertuples()
        ]
        for sid, g in ev.groupby(C.SESSION_ID, sort=False)
    }
    assert got == G.EXPECTED["sessions_pages"]
    assert result.report.search_terms_unattached == G.EXPECTED["search_terms_unattached"]
    # The session id is user_pseudo_id + ga_session_id: the same ga_session_id on two users stays two sessions.
    assert ga4_session_id("1111111111.1740819600", G.T0) in got
    assert set(ev.loc[ev[C.PAGE_TYPE].str.startswith("app_"), C.CHANNEL]) == {"app"}
    assert set(ev.loc[~ev[C.PAGE_TYPE].str.startswith("app_"), C.CHANNEL]) == {"web"}
    assert ev[C.EVENT_TIMESTAMP].min() == pd.Timestamp(G.T0, unit="s", tz="UTC")


def test_visitors_customers_and_links(ingested) -> None:  # noqa: ANN001
    result, _ = ingested
    ev, links, rep = result.events, result.identity_links, result.report
    assert rep.n_sessions == ev[C.SESSION_ID].nunique() == G.EXPECTED["sessions"]
    assert rep.n_visitors == G.EXPECTED["visitors"]
    assert set(ev[C.CUSTOMER_ID].dropna()) == G.EXPECTED["customers"] and rep.n_customers == 2
    got = {
        (r.visitor_id, r.customer_id, int(r.linked_at.timestamp()))
        for r in links.itertuples()  # linked_at: the first row with both ids
    }
    assert got == G.EXPECTED["links"]
    assert set(links[C.LINK_METHOD]) == {GA4_LINK_METHOD}
    assert rep.n_links == 3 and rep.n_linked_visitors == 3
    # Before signing in, the same session's page view has no customer id.
    b1 = ev[ev[C.SESSION_ID] == f"2222222222.1740823200:{G.T0 + 3600}"]
    assert b1[C.CUSTOMER_ID].tolist() == [None, "hf-c0042", "hf-c0042"]
    assert rep.user_ids_dropped == G.EXPECTED["user_ids_dropped"]


def test_no_pii_in_any_output(ingested) -> None:  # noqa: ANN001
    result, out = ingested
    texts = [result.report.to_text(), json.dumps(result.report.to_dict(), default=str)]
    for name in ("events.parquet", "identity_links.parquet"):
        frame = pq.read_table(out / name).to_pandas()
        for col in frame.columns:
            texts += [str(v) for v in frame[col].dropna()]
    texts.append((out / "world.yaml").read_text())
    leaks = [t for t in texts for m in G.PII_MARKERS if m in t]
    assert not leaks, leaks[:5]
    assert "<CARD>" in set(result.events[C.SEARCH_QUERY].dropna().str.replace("travel card ", ""))
    assert result.report.validation.pii_redactions.get("<QUERY>") == 1  # the search engine referrer
    assert ("/profile/<EMAIL>/settings", 1) in [
        tuple(t) for t in result.report.validation.page_mapping["top_unmatched"]
    ]


def test_every_row_is_accounted_for(ingested) -> None:  # noqa: ANN001
    result, _ = ingested
    rep = result.report
    assert rep.n_rows == sum(rep.event_names.values()) == G.EXPECTED["rows"]
    assert rep.event_names["page_view"] == G.EXPECTED["page_views"] == rep.n_page_views
    assert rep.n_screen_views == G.EXPECTED["screen_views"]
    v = rep.validation
    assert v.n_input == rep.n_page_views + rep.n_screen_views
    assert v.n_valid == len(result.events) == G.EXPECTED["valid_events"]
    assert v.n_valid + v.n_rejected == v.n_input
    assert dict(result.rejected["rule"].value_counts()) == G.EXPECTED["rejected"]
    text = rep.to_text()
    for name, n in rep.event_names.items():
        assert f"{name} {n:,} → " in text  # every event name is listed with what it became
    assert rep.role("scroll").startswith("dwell_seconds") and rep.role("login") == "counted only"
    assert rep.dwell_from_engagement + rep.dwell_from_gap + rep.dwell_null == v.n_input


def test_every_reader_agrees(tmp_path: Path, world, ingested, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Nested parquet, NDJSON with INT64 as strings (BigQuery) or numbers (Arrow's reader), NDJSON mixing
    both (the row reader), small batches (sessions span batches and files): the same events."""
    files = G.harbor_export()
    for name, rows in files.items():
        G.write_parquet(rows, tmp_path / "pq" / f"{name}.parquet")
        G.write_ndjson(rows, tmp_path / "strings" / f"{name}.ndjson")
        G.write_ndjson(rows, tmp_path / "numbers" / f"{name}.jsonl", ints="numbers")
        G.write_ndjson(rows, tmp_path / "mixed" / f"{name}.json", ints="mixed")
    expected = ingested[0].events
    for d in ("pq", "strings", "numbers", "mixed"):
        pd.testing.assert_frame_equal(ingest_ga4([tmp_path / d], world, batch_rows=4).events, expected)
    monkeypatch.setattr(ingest, "_read_ga4_json_arrow", lambda path: None)  # row by row, small batches
    pd.testing.assert_frame_equal(ingest_ga4([tmp_path / "strings"], world, batch_rows=5).events, expected)


def test_intraday_table_superseded_and_outputs_skipped(tmp_path: Path) -> None:
    names = ("events_20250301.json", "events_intraday_20250301.json", "events_intraday_20250302.json")
    for name in (*names, "events.parquet", "identity_links.parquet", "notes.txt"):  # ingest's own outputs
        (tmp_path / name).write_text("")
    files, skipped = ga4_files([tmp_path])
    assert [f.name for f in skipped] == ["events_intraday_20250301.json"]
    assert [f.name for f in files] == ["events_20250301.json", "events_intraday_20250302.json"]


def test_too_many_unmatched_pages_is_an_error(tmp_path: Path, world) -> None:  # noqa: ANN001
    strict = parse_world({**world.to_dict(), "max_oov_share": 0.05}, "strict.yaml")
    with pytest.raises(ContractError, match=r"page_type: 17\.6% of events match no page type.*max_oov_share"):
        ingest_ga4([_write_mixed(tmp_path / "in")], strict, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written


def test_cli_writes_the_data_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write_mixed(tmp_path / "export")
    out = tmp_path / "data"
    assert main(["ingest", "ga4", str(src), "--world", str(WORLD), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "31 rows read" in printed and "8 sessions" in printed and "linked visitors 3" in printed
    assert "page_view 16 → events" in printed and "unmatched (17.6%)" in printed
    assert load_world(out / "world.yaml").digest == load_world(WORLD).digest
    assert len(pd.read_parquet(out / "events.parquet")) == 17


def _row(**fields: object) -> str:
    base = G._bigquery_json(G.event("page_view", 1_740_819_600_000_000, "1.2", 1, {"page_location": "/"}))
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (
            _row(event_name=...) + "\n",
            ".json",
            r"line 1: missing field 'event_name': rule 'ga4_required_field'",
        ),
        (
            _row() + "\n" + _row(event_timestamp=...) + "\n",
            ".ndjson",
            r"line 2: missing field 'event_timestamp': rule 'ga4_required_field'",
        ),
        (
            _row(event_timestamp="2025-03-01T09:00:00Z") + "\n",
            ".jsonl",
            r"line 1: event_timestamp '2025-03-01T09:00:00Z' is not an integer: rule 'ga4_timestamp_micros'",
        ),
        ('[{"event_name": "page_view"}]\n', ".json", r"line 1: a list, not an event record: rule 'ga4_row'"),
        (
            "session_id,event_timestamp\ns1,2025\n",
            ".json",
            r"line 1: not a JSON object .*rule 'readable_file'",
        ),
        (
            b"PAR1 not really parquet",
            ".parquet",
            r"cannot be read as a GA4 parquet export: rule 'readable_file'",
        ),
        (b"\x1f\x8b\x08\x00broken", ".json.gz", r"cannot be read .*: rule 'readable_file'"),
        ("x", ".csv", r"unsupported GA4 export file type '.csv': rule 'readable_file'"),
    ],
)
def test_bad_input_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, suffix: str, message: str
) -> None:
    path = tmp_path / f"events_20250301{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code = main(["ingest", "ga4", str(path), "--world", str(WORLD), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(path) in err, err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_parquet_without_event_name_names_the_field(tmp_path: Path, world) -> None:  # noqa: ANN001
    path = tmp_path / "events_20250301.parquet"
    pd.DataFrame({"session_id": ["s1"], "event_timestamp": [1]}).to_parquet(path)
    with pytest.raises(ContractError, match=r"missing field 'event_name': rule 'ga4_required_field'"):
        ingest_ga4([path], world)


def test_no_page_view_is_an_error(tmp_path: Path, world) -> None:  # noqa: ANN001
    rows = [G.event("session_start", 1_740_819_600_000_000, "1.2", 1)]
    path = G.write_ndjson(rows, tmp_path / "events_20250301.json")
    with pytest.raises(ContractError, match=r"no page_view or screen_view event in 1 rows .*session_start"):
        ingest_ga4([path], world)


def test_harbor_bank_export_lines_up_with_its_tables(tmp_path: Path, world) -> None:  # noqa: ANN001
    """The generated Harbor bank (tests/fixtures/harbor_bank/make_bank.py): its conversions name exactly the
    sessions the ingest derives, at their last page view; its tables hold the declared columns and classes."""
    spec = importlib.util.spec_from_file_location("make_bank", WORLD.parent / "make_bank.py")
    assert spec and spec.loader
    bank = importlib.util.module_from_spec(spec)
    sys.modules["make_bank"] = bank  # its dataclass looks its module up
    spec.loader.exec_module(bank)
    bank.generate(tmp_path, customers=120, days=20, seed=1)
    assert (tmp_path / "ga4").is_dir() and any(
        p.name.startswith("events_intraday_") for p in (tmp_path / "ga4").iterdir()
    )
    result = ingest_ga4([tmp_path / "ga4"], world, tmp_path)
    ev = result.events
    assert (
        result.report.validation.n_rejected == 0 and result.report.validation.page_mapping["oov_share"] < 0.05
    )
    ends = ev.groupby(C.SESSION_ID)[C.EVENT_TIMESTAMP].max()
    conv = pd.read_parquet(tmp_path / "conversions.parquet")
    assert set(conv[C.SESSION_ID]) == set(ends.index)
    assert (
        conv.set_index(C.SESSION_ID)[C.EVENT_TIMESTAMP] == ends.reindex(conv[C.SESSION_ID]).to_numpy()
    ).all()
    assert set(conv[C.CONVERSION_PRODUCT]) <= {*world.products, C.NO_CONVERSION}
    customers = pd.read_parquet(tmp_path / "customers.parquet")
    assert list(customers.columns) == [C.CUSTOMER_ID, C.EVENT_TIMESTAMP, *world.profile]
    tiles = pd.read_parquet(tmp_path / "tile_impressions.parquet")
    assert set(tiles[C.CLICKED_TILE]) <= {*world.tiles, C.NO_CLICK}
    # A minority of visitors ever signs in; their user_id is a customer id of the customer table.
    links = result.identity_links
    assert 0 < links[C.VISITOR_ID].nunique() < 0.5 * ev[C.VISITOR_ID].nunique()
    assert set(links[C.CUSTOMER_ID]) <= set(customers[C.CUSTOMER_ID])
    assert result.report.validation.pii_redactions  # PII pasted into searches and URLs was found and scrubbed

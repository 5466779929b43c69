"""MSNBC reader: categories, order, counts and the documented synthetic clock, on the shared real file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clicks2intent.cli.data import register
from clicks2intent.data import ingest
from clicks2intent.data.contract import EVENT_SCHEMA
from clicks2intent.names import columns as C

MSNBC = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "real"
    / "msnbc"
    / "msnbc990928_sessions_000001-060000.seq"
)
LIMIT = 3000

pytestmark = pytest.mark.skipif(not MSNBC.exists(), reason=f"shared MSNBC file not found at {MSNBC}")


def _sequences(n: int) -> list[list[int]]:
    """The first ``n`` sequences, parsed independently of the reader (header is 7 lines)."""
    lines = MSNBC.read_text().splitlines()
    return [[int(t) for t in line.split()] for line in lines[7 : 7 + n]]


@pytest.fixture(scope="module")
def result():  # noqa: ANN201
    return ingest.ingest_msnbc(MSNBC, limit=LIMIT)


def test_counts_categories_and_order(result) -> None:  # noqa: ANN001
    seqs = _sequences(LIMIT)
    long = [k for k, s in enumerate(seqs) if len(s) > 2000]  # line 2,140 of the file holds 7,033 views
    ev = result.events
    assert result.report.n_input == sum(len(s) for s in seqs)
    assert result.report.n_rejected == sum(len(seqs[k]) for k in long) > 0
    assert [p.rule for p in result.report.problems] == ["absurd_session_length"]
    assert result.report.n_repaired == 0
    assert ev[C.SESSION_ID].nunique() == LIMIT - len(long) == result.report.n_sessions
    assert set(ev[C.PAGE_TYPE]) <= set(ingest.MSNBC_CATEGORIES)
    # Every session's pages, in order, are its line's category numbers.
    by_session = ev.groupby(C.SESSION_ID, sort=True)[C.PAGE_TYPE].agg(list)
    names = {i + 1: name for i, name in enumerate(ingest.MSNBC_CATEGORIES)}
    for k in (0, 1, 2, 3, 500, long[0] + 1, LIMIT - 1):
        assert by_session[f"msnbc-{k + 1:07d}"] == [names[c] for c in seqs[k]], k
    assert f"msnbc-{long[0] + 1:07d}" not in by_session.index
    assert by_session.index[0] == "msnbc-0000001" and by_session.index[-1] == f"msnbc-{LIMIT:07d}"
    assert by_session.iloc[2] == ["tech", "news", "news", "local", "news", "news", "news", "tech", "tech"]


def test_contract_and_missing_modalities(result) -> None:  # noqa: ANN001
    ev = result.events
    assert list(ev.columns) == list(C.EVENT_COLUMNS)
    assert (ev[C.CHANNEL] == "web").all()
    for col in (C.CUSTOMER_ID, C.DWELL_SECONDS, C.SEARCH_QUERY, C.DEVICE, C.REFERRER):
        assert ev[col].isna().all(), col
    assert (ev[C.VISITOR_ID].str.replace("msnbc-v", "msnbc-") == ev[C.SESSION_ID]).all()
    assert set(result.report.missing_optional_columns) >= {C.DWELL_SECONDS, C.SEARCH_QUERY}
    import pyarrow as pa

    pa.Table.from_pandas(ev, schema=EVENT_SCHEMA, preserve_index=False)  # fits the on-disk schema


def test_synthetic_clock(result) -> None:  # noqa: ANN001
    ev = result.events
    day = pd.Timestamp("1999-09-28", tz="UTC")
    gaps = ev.groupby(C.SESSION_ID)[C.EVENT_TIMESTAMP].diff().dropna().dt.total_seconds()
    assert (gaps == ingest.MSNBC_EVENT_GAP_S).all()
    starts = ev.groupby(C.SESSION_ID)[C.EVENT_TIMESTAMP].min()
    assert starts.iloc[0] == day
    assert starts.is_monotonic_increasing  # line order is arrival order
    n = LIMIT - 1
    assert starts.iloc[-1] == day + pd.Timedelta(seconds=n * 86_400 // ingest.MSNBC_TOTAL_SESSIONS)
    # A prefix read and a longer read put the same session at the same time.
    small = ingest.read_msnbc(MSNBC, limit=10)
    pd.testing.assert_frame_equal(small, ev[ev[C.SESSION_ID] <= "msnbc-0000010"].reset_index(drop=True))


def test_long_session_limit_is_a_parameter() -> None:
    seqs = _sequences(LIMIT)
    res = ingest.ingest_msnbc(MSNBC, limit=LIMIT, max_session_events=max(len(s) for s in seqs))
    assert res.report.n_rejected == 0 and res.events[C.SESSION_ID].nunique() == LIMIT
    strict = ingest.ingest_msnbc(MSNBC, limit=LIMIT, max_session_events=100)
    assert strict.report.n_rejected == sum(len(s) for s in seqs if len(s) > 100)


def test_bad_file_names_the_line_and_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.seq"
    header = MSNBC.read_text().splitlines()[:7]
    bad.write_text("\n".join(header + ["1 2", "3 18"]) + "\n")
    with pytest.raises(ingest.MsnbcFormatError, match=r"line 9.*msnbc_category_code"):
        ingest.read_msnbc(bad)
    bad.write_text("no header\n1 2\n")
    with pytest.raises(ingest.MsnbcFormatError, match="msnbc_header"):
        ingest.read_msnbc(bad)


def test_cli_ingest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))  # what ``c2i`` registers

    def main(argv: list[str]) -> int:
        args = parser.parse_args(argv)
        return int(args.func(args))

    out = tmp_path / "msnbc.parquet"
    assert main(["ingest", "msnbc", str(MSNBC), "--out", str(out), "--limit", "200"]) == 0
    assert "200 sessions" in capsys.readouterr().out
    back = pd.read_parquet(out)
    assert back[C.SESSION_ID].nunique() == 200 and str(back[C.EVENT_TIMESTAMP].dtype) == "datetime64[us, UTC]"

"""The clickstream contract: a table of good and bad inputs, each with its outcome and rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clicks2intent.cli import main
from clicks2intent.data.contract import (
    EVENT_SCHEMA,
    ContractError,
    read_events,
    validate_events,
    write_events,
)
from clicks2intent.names import columns as C

NOW = pd.Timestamp("2026-06-01", tz="UTC")


def _one(**overrides: object) -> pd.DataFrame:
    row = {
        C.SESSION_ID: "s1",
        C.EVENT_TIMESTAMP: "2026-03-01T10:00:00Z",
        C.PAGE_TYPE: "home",
        C.DWELL_SECONDS: "12.5",
        C.CHANNEL: "web",
    }
    row.update(overrides)
    return pd.DataFrame([row])


@pytest.mark.parametrize(
    ("overrides", "rule", "column"),
    [
        ({C.SESSION_ID: ""}, "empty_session_id", C.SESSION_ID),
        ({C.SESSION_ID: None}, "empty_session_id", C.SESSION_ID),
        ({C.EVENT_TIMESTAMP: "yesterday-ish"}, "unparseable_timestamp", C.EVENT_TIMESTAMP),
        ({C.EVENT_TIMESTAMP: "1970-01-01T00:00:00Z"}, "implausible_timestamp", C.EVENT_TIMESTAMP),
        ({C.EVENT_TIMESTAMP: "2031-01-01T00:00:00Z"}, "implausible_timestamp", C.EVENT_TIMESTAMP),
        ({C.PAGE_TYPE: "  "}, "empty_page_type", C.PAGE_TYPE),
        ({C.DWELL_SECONDS: "-3"}, "negative_dwell", C.DWELL_SECONDS),
        ({C.DWELL_SECONDS: "long"}, "non_numeric_dwell", C.DWELL_SECONDS),
        ({C.CHANNEL: "fax"}, "unknown_channel", C.CHANNEL),
    ],
)
def test_bad_rows_are_rejected_with_their_rule(overrides: dict, rule: str, column: str) -> None:
    good = _one(**{C.SESSION_ID: "ok"})
    result = validate_events(pd.concat([good, _one(**overrides)], ignore_index=True), now=NOW)
    assert result.report.n_input == 2
    assert result.report.n_valid == 1 and result.report.n_rejected == 1
    assert result.rejected.to_dict("records") == [{"row": 1, "rule": rule, "column": column}]
    (problem,) = [p for p in result.report.problems if p.action == "rejected"]
    assert (problem.rule, problem.column, problem.example_rows) == (rule, column, [1])


def test_missing_required_column_names_it() -> None:
    with pytest.raises(ContractError, match="page_type.*required_column"):
        validate_events(_one().drop(columns=[C.PAGE_TYPE]), now=NOW)


def test_absurd_session_length_rejects_the_whole_session() -> None:
    long = pd.concat([_one(**{C.SESSION_ID: "bot"})] * 5 + [_one()], ignore_index=True)
    result = validate_events(long, max_session_events=4, now=NOW)
    assert result.report.n_rejected == 5 and result.report.n_valid == 1
    assert set(result.rejected["rule"]) == {"absurd_session_length"}


def test_repairs_are_counted_not_hidden() -> None:
    df = pd.concat(
        [
            _one(**{C.PAGE_TYPE: "brand_new_page"}),
            _one(**{C.EVENT_TIMESTAMP: "2026-03-01 10:05:00", C.DWELL_SECONDS: None}),
            _one(**{C.SEARCH_QUERY: "email me at a.b@c.com"}),
        ],
        ignore_index=True,
    )
    result = validate_events(df, known_page_types={"home"}, now=NOW)
    ev = result.events
    assert result.report.n_rejected == 0 and result.report.n_repaired == 3
    assert C.OOV_PAGE_TYPE in set(ev[C.PAGE_TYPE])
    assert ev[C.DWELL_SECONDS].isna().sum() == 1  # missing dwell stays null
    assert ev[C.SEARCH_QUERY].dropna().tolist() == ["email me at <EMAIL>"]
    assert result.report.pii_redactions == {"<EMAIL>": 1}
    rules = {p.rule for p in result.report.problems}
    assert rules == {"unknown_page_type", "naive_timestamp", "pii_in_search_query"}


def test_clean_events_follow_the_schema_and_are_sorted(tiny_events: pd.DataFrame, tmp_path: Path) -> None:
    shuffled = tiny_events.sample(frac=1.0, random_state=0)
    result = validate_events(shuffled, now=NOW)
    assert result.report.n_valid == len(tiny_events) and result.report.n_sessions == 3
    ev = result.events
    assert list(ev.columns) == list(C.EVENT_COLUMNS)
    assert ev[C.SESSION_ID].is_monotonic_increasing
    path = write_events(ev, tmp_path / "events.parquet")
    assert pq.read_schema(path).equals(EVENT_SCHEMA)
    again = read_events(path, now=NOW)
    pd.testing.assert_frame_equal(again, ev)


def test_optional_columns_may_be_absent() -> None:
    df = _one().drop(columns=[C.DWELL_SECONDS, C.CHANNEL])
    result = validate_events(df, now=NOW)
    assert result.report.n_valid == 1
    assert set(result.report.missing_optional_columns) >= {C.DWELL_SECONDS, C.CHANNEL, C.SEARCH_QUERY}


def test_read_events_refuses_partial_data(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    pd.concat([_one(), _one(**{C.DWELL_SECONDS: "-1"})]).to_csv(path, index=False)
    with pytest.raises(ContractError, match="1 row\\(s\\) rejected"):
        read_events(path)


def test_validate_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    _one().to_csv(good, index=False)
    pd.concat([_one(), _one(**{C.CHANNEL: "fax"})]).to_csv(bad, index=False)
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(bad), "--rejects", str(tmp_path / "rej.csv")]) == 1
    out = capsys.readouterr().out
    assert "rejected 1 row(s): column 'channel' rule 'unknown_channel'" in out
    assert pd.read_csv(tmp_path / "rej.csv")["rule"].tolist() == ["unknown_channel"]
    assert main(["validate", str(tmp_path / "missing.parquet")]) == 2

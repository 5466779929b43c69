"""Bounded memory, same results: validation chunk by chunk and the simulator writing its events as it goes.

``validate_chunks`` must give what one ``validate_events`` call gives (events in the contract's order,
rejected rows at their input positions, one report), whatever the chunk boundaries, sessions cut across
chunks included; ``generate`` must write the files ``write_simulation(simulate(config))`` writes, byte
for byte (checked here with many chunks; with more than one parquet row group by hand, on 1.1M events).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clicks2intent.data.contract as K
import clicks2intent.data.simulator as sim
from clicks2intent.names import columns as C

NOW = pd.Timestamp("2026-06-01", tz="UTC")


def _messy(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """Raw events with every kind of problem, in no particular order, as strings (a CSV's view)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        s = int(rng.integers(0, 60))
        ts = pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(seconds=int(rng.integers(0, 86_400)))
        row = {
            C.SESSION_ID: f" s{s:03d} " if i % 7 else f"s{s:03d}",
            C.EVENT_TIMESTAMP: ts.isoformat() if i % 11 else ts.strftime("%Y-%m-%d %H:%M:%S"),  # naive
            C.PAGE_TYPE: ["home", "search", "rates", "", "product_mortgage"][i % 5],
            C.VISITOR_ID: f"v{s % 9}",
            C.CHANNEL: ["web", "WEB", "app", "tv"][i % 4] if i % 3 else "web",
            C.DWELL_SECONDS: ["12.5", "", "-3", "abc", "40"][i % 5],
            C.SEARCH_QUERY: ["mortgage rates", "call me 212-555-0199", None, "card 4111 1111 1111 1111"][
                i % 4
            ],
        }
        if i % 97 == 5:
            row[C.EVENT_TIMESTAMP] = "yesterday PST"
        if i % 89 == 3:
            row[C.SESSION_ID] = "bad id\twith tab"
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.loc[frame[C.SESSION_ID].str.strip() == "s007", C.SESSION_ID] = "s007"  # one long session
    return frame


def _chunks(frame: pd.DataFrame, size: int):
    for lo in range(0, len(frame), size):
        yield frame.iloc[lo : lo + size].reset_index(drop=True), np.arange(lo, min(lo + size, len(frame)))


@pytest.mark.parametrize("size", [1, 37, 250, 10_000])
def test_chunks_validate_like_the_whole_input(size: int) -> None:
    raw = _messy()
    kwargs = {"known_page_types": ["home", "search", "rates"], "max_session_events": 12, "now": NOW}
    whole = K.validate_events(raw, **kwargs)
    sizes = K._as_clean_strings(raw[C.SESSION_ID]).value_counts()
    parts = K.validate_chunks(_chunks(raw, size), session_sizes=sizes, **kwargs)
    assert whole.report.n_rejected > 0 and any(
        p.rule == "absurd_session_length" for p in whole.report.problems
    )
    pd.testing.assert_frame_equal(parts.events, whole.events)
    pd.testing.assert_frame_equal(parts.rejected.reset_index(drop=True), whole.rejected, check_dtype=False)
    got, want = parts.report.to_dict(), whole.report.to_dict()
    key = lambda p: (p["rule"], p["column"], p["action"])  # noqa: E731 - rules in the order first met
    assert sorted(got.pop("problems"), key=key) == sorted(want.pop("problems"), key=key)
    assert got == want
    counts_only = K.validate_chunks(_chunks(raw, size), keep_events=False, session_sizes=sizes, **kwargs)
    assert counts_only.report.n_sessions == whole.report.n_sessions and counts_only.events.empty


def test_a_large_parquet_file_is_validated_in_chunks_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _messy(900, seed=2)
    path = tmp_path / "raw.parquet"
    raw.to_parquet(path)
    whole = K.validate_file(path, max_session_events=12, out_path=tmp_path / "whole.parquet")
    monkeypatch.setattr(K, "CHUNK_ROWS", 100)
    assert K._chunked(path)
    parts = K.validate_file(path, max_session_events=12, out_path=tmp_path / "parts.parquet")
    assert parts.report.n_input == 900 and parts.report.n_valid == whole.report.n_valid
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "parts.parquet"), pd.read_parquet(tmp_path / "whole.parquet")
    )
    pd.testing.assert_frame_equal(parts.rejected.reset_index(drop=True), whole.rejected, check_dtype=False)
    with pytest.raises(K.ContractError, match="rejected"):
        K.read_events(path, max_session_events=12)


def test_generate_writes_the_files_of_simulate_chunk_by_chunk(tmp_path: Path) -> None:
    cfg = sim.SimulatorConfig(n_customers=300, seed=3)
    whole = sim.simulate(cfg)
    want = sim.write_simulation(whole, tmp_path / "whole")
    result, got = sim.generate(cfg, tmp_path / "chunks", chunk_events=1_500)
    assert result.events is None and result.stats["n_events"] == len(whole.events)
    for name in sim.OUTPUT_FILES:
        assert got[name].read_bytes() == want[name].read_bytes(), name
    assert result.validation == whole.validation
    assert sim.summary(result).splitlines()[0].split()[1] == f"{len(whole.events):,}"


def test_event_chunks_hold_whole_sessions_in_id_order() -> None:
    cfg = sim.SimulatorConfig(n_customers=200, seed=9)
    run = sim._draw(cfg)
    chunks = list(sim._event_chunks(run.ev, run.ids, 700))
    rows = np.concatenate(chunks)
    assert len(rows) == len(run.ev.ev_sess) and len(np.unique(rows)) == len(rows)
    first_rank = [int(run.ids.sess_rank[run.ev.ev_sess[c]].min()) for c in chunks]
    last_rank = [int(run.ids.sess_rank[run.ev.ev_sess[c]].max()) for c in chunks]
    assert all(
        last < nxt for last, nxt in zip(last_rank, first_rank[1:], strict=False)
    )  # id order, no overlap
    assert all((np.diff(c) > 0).all() for c in chunks)  # each chunk in the raw frame's order
    assert max(len(c) for c in chunks) <= 700 + cfg.max_web_events

"""MSNBC proxies: prefixes and targets by hand, baseline features, prefix events; a tiny real run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clicks2intent.evaluation.msnbc import (
    COUNT_PREFIX,
    LAST_PAGE,
    LATER_CATEGORY,
    NEXT_CATEGORY,
    PREFIX_ID,
    PREFIX_LENGTH,
    baseline_features,
    group_of_msnbc,
    make_examples,
    prefix_events,
    sessions_from_events,
)
from clicks2intent.names import columns as C

CATS = ["a", "b", "c", "d"]
T0 = pd.Timestamp("1999-09-28", tz="UTC")


@pytest.fixture
def sessions():
    seqs = {"msnbc-01": "a", "msnbc-02": "ab", "msnbc-03": "aabcd", "msnbc-04": "abab"}
    rows = [
        (sid, T0 + pd.Timedelta(seconds=30 * k + 1000 * i), page, "web")
        for i, (sid, s) in enumerate(seqs.items())
        for k, page in enumerate(s)
    ]
    events = pd.DataFrame(rows, columns=[C.SESSION_ID, C.EVENT_TIMESTAMP, C.PAGE_TYPE, C.CHANNEL])
    return sessions_from_events(events.sample(frac=1.0, random_state=0))  # order must not matter


def test_sessions_in_file_order(sessions) -> None:
    assert sessions.ids == ["msnbc-01", "msnbc-02", "msnbc-03", "msnbc-04"]
    assert sessions.categories == CATS
    assert [s.tolist() for s in sessions.sequences] == [[0], [0, 1], [0, 0, 1, 2, 3], [0, 1, 0, 1]]


def test_next_category_examples(sessions) -> None:
    ex = make_examples(sessions.ids, sessions.sequences, NEXT_CATEGORY, np.random.default_rng(0))
    assert ex[C.SESSION_ID].tolist() == [
        "msnbc-02",
        "msnbc-03",
        "msnbc-04",
    ]  # single-page sessions have no next
    for _, r in ex.iterrows():
        seq = sessions.sequences[r["position"]]
        assert 1 <= r["k"] <= len(seq) - 1 and r["target_code"] == seq[r["k"]]


def test_later_category_targets_by_hand(sessions) -> None:
    ids, seqs = sessions.ids, sessions.sequences
    seen = {}
    for seed in range(30):  # cover every cut of the 5-event session
        ex = make_examples(ids, seqs, LATER_CATEGORY, np.random.default_rng(seed), min_prefix=3)
        assert set(ex[C.SESSION_ID]) == {"msnbc-03", "msnbc-04"}  # sessions of >= 3 events
        for _, r in ex.iterrows():
            seen[(r[C.SESSION_ID], r["k"])] = r["target_code"]
    # aabcd: prefix aab -> first new is c; aabc -> d; aabcd -> none. abab: aba -> b was seen -> none
    assert seen[("msnbc-03", 3)] == 2 and seen[("msnbc-03", 4)] == 3 and seen[("msnbc-03", 5)] == -1
    assert seen[("msnbc-04", 3)] == -1 and seen[("msnbc-04", 4)] == -1


def test_every_prefix_examples(sessions) -> None:
    ex = make_examples(
        sessions.ids, sessions.sequences, NEXT_CATEGORY, np.random.default_rng(0), prefixes="every"
    )
    # ab: k=1; aabcd: k=1..4; abab: k=1..3 — each with the event after the cut as target
    assert list(zip(ex[C.SESSION_ID], ex["k"], strict=True)) == [
        ("msnbc-02", 1),
        *[("msnbc-03", k) for k in range(1, 5)],
        *[("msnbc-04", k) for k in range(1, 4)],
    ]
    assert ex["target_code"].tolist() == [1, 0, 1, 2, 3, 1, 0, 1]
    later = make_examples(sessions.ids, sessions.sequences, LATER_CATEGORY, np.random.default_rng(0),
                          min_prefix=3, prefixes="every")  # fmt: skip
    assert later["target_code"].tolist() == [2, 3, -1, -1, -1]  # aab->c, aabc->d, aabcd, aba, abab->none
    capped = make_examples(sessions.ids, sessions.sequences, NEXT_CATEGORY, np.random.default_rng(0),
                           prefixes="every", max_per_session=2)  # fmt: skip
    assert capped.groupby(C.SESSION_ID).size().to_dict() == {"msnbc-02": 1, "msnbc-03": 2, "msnbc-04": 2}
    assert capped.groupby(C.SESSION_ID)["k"].is_monotonic_increasing.all()
    with pytest.raises(Exception, match="prefixes"):
        make_examples(
            sessions.ids, sessions.sequences, NEXT_CATEGORY, np.random.default_rng(0), prefixes="all"
        )


def test_baseline_features_and_prefix_events(sessions) -> None:
    ex = pd.DataFrame({C.SESSION_ID: ["msnbc-03"], "position": [2], "k": [3]})
    ex[PREFIX_ID] = "msnbc-03#3"
    feats = baseline_features(ex, dict(zip(sessions.ids, sessions.sequences, strict=True)), CATS)
    assert feats[[COUNT_PREFIX + c for c in CATS]].iloc[0].tolist() == [2.0, 1.0, 0.0, 0.0]
    assert feats[LAST_PAGE].iloc[0] == "b" and feats[PREFIX_LENGTH].iloc[0] == 3.0
    ev = prefix_events(ex, sessions)
    assert ev[C.PAGE_TYPE].tolist() == ["a", "a", "b"] and set(ev[C.SESSION_ID]) == {"msnbc-03#3"}
    assert ev[C.EVENT_TIMESTAMP].is_monotonic_increasing
    assert group_of_msnbc(C.EMBEDDING) == "embedding" and group_of_msnbc(C.INTENT_LABEL) == "labels"
    assert group_of_msnbc(LAST_PAGE) == "baseline"


@pytest.mark.slow
def test_tiny_real_msnbc_run(msnbc_path, tmp_path) -> None:
    from clicks2intent.evaluation.ablation import AblationConfig
    from clicks2intent.evaluation.msnbc import MsnbcRun, run_msnbc
    from clicks2intent.evaluation.reports import validate_report, write_report

    run = MsnbcRun(
        path=str(msnbc_path), limit=1500, work_dir=str(tmp_path / "work"), encoder_epochs=1, encoder_max_steps=5,
        n_label_clusters=4,
    )  # fmt: skip
    report = run_msnbc(run, AblationConfig(n_estimators=10, n_jobs=1, n_boot=20))
    validate_report(report)
    assert report["dataset"] == "msnbc"
    tile, conv = report["tile_ranking"], report["conversion"]
    assert tile["proxy"] == NEXT_CATEGORY and conv["proxy"] == LATER_CATEGORY
    assert "none" in conv["classes"] and "none" not in tile["classes"]
    assert tile["labels"]["source"].startswith("proxy")
    assert set(tile["variants"]["embedding"]["features"]) >= {C.EMBEDDING, LAST_PAGE, PREFIX_LENGTH}
    assert tile["bootstrap_unit"].startswith("group")  # every prefix: test sessions are resampled whole
    assert tile["n_test"] > int(
        tile["bootstrap_unit"].split("(")[1].split()[0]
    )  # more prefixes than sessions
    paths = write_report(report, tmp_path / "reports", "ablation_msnbc")
    assert paths["json"].name == "ablation_msnbc.json" and paths["md"].is_file()

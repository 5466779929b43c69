"""The MSNBC encoder protocol: every prefix and its target by hand, vectorised features, the command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clicks2intent.evaluation.encoder_probe import MsnbcProtocol, all_prefixes, prefix_features
from clicks2intent.evaluation.msnbc import sessions_from_events
from clicks2intent.names import columns as C

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
    return sessions_from_events(events.sample(frac=1.0, random_state=0))


def test_every_prefix_with_the_next_page_as_target(sessions) -> None:
    ex = all_prefixes(sessions, 0, 4)
    expected = [
        (pos, k, int(seq[k])) for pos, seq in enumerate(sessions.sequences) for k in range(1, len(seq))
    ]
    assert list(ex.itertuples(index=False, name=None)) == expected
    assert all_prefixes(sessions, 3, 4)["position"].tolist() == [3, 3, 3]  # only the sessions asked for


def test_prefix_features_match_a_by_hand_count(sessions) -> None:
    ex = all_prefixes(sessions, 0, 4)
    feats = prefix_features(sessions, ex, n_last=3)
    n = len(sessions.categories)
    for row, (pos, k, _) in zip(feats, ex.itertuples(index=False, name=None), strict=True):
        prefix = sessions.sequences[pos][:k]
        assert row[:n].tolist() == np.bincount(prefix, minlength=n).tolist()
        for j in range(3):
            expected = np.zeros(n)
            if k > j:
                expected[prefix[-1 - j]] = 1
            assert row[n * (1 + j) : n * (2 + j)].tolist() == expected.tolist()
        assert row[-1] == k


def test_protocol_rejects_a_bad_split() -> None:
    from clicks2intent.errors import ConfigError

    with pytest.raises(ConfigError, match="train_fraction"):
        MsnbcProtocol(train_fraction=1.0)


@pytest.mark.slow
def test_encoder_report_msnbc_command(msnbc_path, tmp_path, capsys) -> None:
    from clicks2intent.cli import main as cli_main

    out = tmp_path / "reports"
    args = ["encoder-report", "--dataset", "msnbc", str(msnbc_path), "--msnbc-limit", "800", "--msnbc-epochs", "1",
            "--max-train-rows", "600", "--max-test-rows", "300", "--n-boot", "20", "--out", str(out)]  # fmt: skip
    assert cli_main(args) == 0
    report = json.loads((out / "encoder_quality.json").read_text())
    part = report["msnbc"]
    assert part["encoder_saw_test_sessions"] is False and part["n_train_sessions"] == round(
        0.7 * part["n_sessions"]
    )
    assert part["n_train"] == 600 and part["n_test"] == 300
    assert [r["name"] for r in part["results"]] == [
        "baseline", "baseline+last3", "baseline+embedding", "embedding", "baseline (logistic)"
    ]  # fmt: skip
    for key in ("baseline_plus_embedding_minus_baseline", "embedding_minus_baseline", "last3_minus_baseline"):
        d = part[key]["log_loss"]
        assert d["ci95_low"] <= d["diff"] <= d["ci95_high"]
    md = (out / "encoder_quality.md").read_text()
    assert md.splitlines()[2].startswith("On real MSNBC sessions")
    assert (out / "encoder_quality_msnbc.png").stat().st_size > 0
    # The second run reuses the encoder trained for this split (no retraining, same figures).
    assert cli_main(args) == 0
    again = json.loads((out / "encoder_quality.json").read_text())["msnbc"]
    assert again["results"] == part["results"]
    capsys.readouterr()
    assert cli_main(["encoder-report", "--dataset", "msnbc", "--out", str(out)]) == 2
    assert "needs the .seq PATH" in capsys.readouterr().err

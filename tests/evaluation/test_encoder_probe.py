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
        "baseline", "baseline+last3", "baseline+embedding", "baseline+next", "baseline+last3+embedding",
        "embedding", "baseline (logistic)",
    ]  # fmt: skip
    n_cat = len(part["classes"])
    widths = {r["name"]: r["n_features"] for r in part["results"]}
    assert widths["baseline+next"] == widths["baseline"] + n_cat  # log P(next page) per category
    assert (
        widths["baseline+embedding"]
        == widths["baseline"] + report["msnbc_encoder"]["config"]["embedding_dim"]
    )
    for key in ("baseline_plus_embedding_minus_baseline", "embedding_minus_baseline", "last3_minus_baseline",
                "baseline_plus_next_minus_baseline", "embedding_minus_last3", "next_minus_last3"):  # fmt: skip
        d = part[key]["log_loss"]
        assert d["ci95_low"] <= d["diff"] <= d["ci95_high"]
    md = (out / "encoder_quality.md").read_text()
    assert md.splitlines()[2].startswith("On real MSNBC sessions")
    # The hand-made order features' row beside the embedding's, printed in every run.
    printed = capsys.readouterr().out
    assert "| + 2nd/3rd-last pages (hand-made) |" in printed and "| + embedding |" in printed
    assert "| embedding − hand-made |" in printed
    assert (out / "encoder_quality_msnbc.png").stat().st_size > 0
    # The second run reuses the encoder trained for this split (no retraining, same figures).
    assert cli_main(args) == 0
    again = json.loads((out / "encoder_quality.json").read_text())["msnbc"]
    assert again["results"] == part["results"]
    capsys.readouterr()
    assert cli_main(["encoder-report", "--dataset", "msnbc", "--out", str(out)]) == 2
    assert "needs the .seq PATH" in capsys.readouterr().err


def test_served_features_are_the_vector_and_its_next_page_head_in_category_order() -> None:
    import torch

    from clicks2intent.encoder.embed import SessionEmbedder
    from clicks2intent.encoder.model import EncoderConfig
    from clicks2intent.encoder.train import TrainConfig, train_encoder
    from clicks2intent.evaluation.encoder_probe import served_features

    rng = np.random.default_rng(0)
    pages = ["a", "b", "c", "d"]
    rows = [
        (f"s{s:03d}", T0 + pd.Timedelta(seconds=30 * k + 1000 * s), str(rng.choice(pages)), "web")
        for s in range(60)
        for k in range(int(rng.integers(1, 6)))
    ]
    events = pd.DataFrame(rows, columns=[C.SESSION_ID, C.EVENT_TIMESTAMP, C.PAGE_TYPE, C.CHANNEL])
    cfg = EncoderConfig(
        d_model=16, n_heads=2, n_layers=1, d_ff=32, embedding_dim=8, max_len=8, query_buckets=64
    )
    embedder = SessionEmbedder(
        train_encoder(events, cfg, TrainConfig(max_steps=2, batch_size=16), progress=False).checkpoint
    )
    published = np.stack(embedder.embed_events(events)[C.EMBEDDING].to_numpy())
    categories = ["d", "a", "zzz", "c", "b"]  # another order, and one category the encoder never saw
    vector, logp = served_features(embedder, published, categories)
    np.testing.assert_array_equal(vector, published)
    m = embedder.model
    with torch.no_grad():
        ref = torch.log_softmax(
            m.next_page_logits(torch.from_numpy(vector))[:, m.n_special :].double(), -1
        ).numpy()
    tokens = embedder.vocabularies[C.PAGE_TYPE].tokens
    for j, c in enumerate(categories):
        want = ref[:, tokens.index(c)] if c in tokens else ref.min(axis=1)
        np.testing.assert_allclose(logp[:, j], want, rtol=1e-5, atol=1e-6)


def test_order_table_puts_the_hand_made_row_beside_the_embedding() -> None:
    from clicks2intent.evaluation.encoder_probe import order_table

    d = {"diff": -0.01, "ci95_low": -0.02, "ci95_high": -0.005}
    part = {k: {"log_loss": d, "macro_recall_at_1": d} for k in ("last3_minus_baseline",
            "baseline_plus_embedding_minus_baseline", "embedding_minus_last3")}  # fmt: skip
    lines = order_table(part)
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "+ 2nd/3rd-last pages (hand-made)", "+ embedding", "embedding − hand-made"
    ]  # fmt: skip
    assert "-0.0100 [-0.0200, -0.0050]" in lines[2]

"""Labelling through the CLI against the fault server: every session accounted for, cache on re-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clicks2intent.cli import main
from clicks2intent.intent.labelling import LABEL_COLUMNS, MARGIN_MODEL, RULE_MODEL, label_messages, shortlist
from clicks2intent.intent.taxonomy import OTHER_ID, Label, Taxonomy
from clicks2intent.names import columns as C

TOPIC_OF = {
    f"s{k:03d}": t
    for k, t in enumerate(t for t in ("mortgage", "credit_card", "savings", "security") for _ in range(3))
}


def _taxonomy(path: Path) -> Path:
    labels = [
        Label("mortgage", "Mortgage", "Home loans and rates.", []),
        Label("credit_card", "Credit card", "Choosing or applying for a card.", []),
        Label("savings", "Savings", "Savings accounts and rates.", []),
        Label("security", "Security", "Fraud and account security.", []),
        Label(OTHER_ID, "Other", "Anything else.", []),
    ]
    return Taxonomy(version=1, status="draft", labels=labels, model="m").save(path)


@pytest.fixture
def setup(events_path: Path, tmp_path: Path) -> tuple[Path, Path]:
    return events_path, _taxonomy(tmp_path / "taxonomy.yaml")


def _label(tmp_path: Path, server: Any, events: Path, tax: Path, *extra: str) -> int:
    return main(
        [
            "taxonomy",
            "label",
            "--events",
            str(events),
            "--taxonomy",
            str(tax),
            "--sample",
            "0",
            "--out",
            str(tmp_path / "llm_labels.parquet"),
            "--base-url",
            server.base_url,
            "--model",
            server.model,
            "--cache",
            str(tmp_path / "cache.sqlite"),
            "--timeout",
            "0.3",
            "--backoff",
            "0.01",
            "--max-retries",
            "3",
            *extra,
        ]
    )


def test_every_session_ends_labelled_or_failed_with_a_reason(
    setup: tuple[Path, Path], fault_server: Any, tmp_path: Path
) -> None:
    events, tax = setup
    fault_server.plan.faults = {
        "s000": ["429", "500", "timeout"],
        "s004": ["malformed"],
        "s007": ["offmenu", "offmenu"],
        "s005": ["offmenu*"],
        "s008": ["500*"],
    }
    assert _label(tmp_path, fault_server, events, tax) == 0
    out = tmp_path / "llm_labels.parquet"
    labels = pd.read_parquet(out)
    assert tuple(pq.read_schema(out).names) == LABEL_COLUMNS
    web = [f"s{k:03d}" for k in range(12)] + ["nochan"]
    assert sorted(labels[C.SESSION_ID]) == sorted(web)  # app session excluded, none lost
    failed = labels.set_index(C.SESSION_ID).query("status == 'failed'")
    assert sorted(failed.index) == ["s005", "s008"]
    assert "invalid answer" in failed.loc["s005", "error"] and "HTTP 500" in failed.loc["s008", "error"]
    assert failed["label_id"].isna().all()
    ok = labels[labels["status"] == "ok"].set_index(C.SESSION_ID)
    assert ok["error"].isna().all() and set(ok["label_id"]) <= {
        "mortgage",
        "credit_card",
        "savings",
        "security",
        OTHER_ID,
    }
    for sid, topic in TOPIC_OF.items():
        if sid in ok.index:
            assert ok.loc[sid, "label_id"] == topic
    assert (labels[C.TAXONOMY_VERSION] == "v1").all() and (labels["model"] == fault_server.model).all()
    assert labels["prompt_sha256"].str.fullmatch(r"[0-9a-f]{64}").all() and labels["prompt_sha256"].is_unique
    report = json.loads((tmp_path / "llm_labels.report.json").read_text())
    assert report["n_sessions"] == 13 and report["n_failed"] == 2 and report["sessions_per_s"] > 0

    n_before = fault_server.n_requests
    assert _label(tmp_path, fault_server, events, tax) == 0  # re-run: all from the cache
    assert fault_server.n_requests == n_before
    pd.testing.assert_frame_equal(labels, pd.read_parquet(out))
    rerun = json.loads((tmp_path / "llm_labels.report.json").read_text())["ledger"]
    assert rerun["api_calls"] == 0 and rerun["cache_hits"] == 13


def test_edited_taxonomy_labels_carry_their_own_version(
    setup: tuple[Path, Path], fault_server: Any, tmp_path: Path
) -> None:
    events, tax_path = setup
    text = tax_path.read_text().replace("name: Savings\n", "name: Saving money\n")
    tax_path.write_text(text)
    assert _label(tmp_path, fault_server, events, tax_path) == 0
    versions = pd.read_parquet(tmp_path / "llm_labels.parquet")[C.TAXONOMY_VERSION].unique()
    assert len(versions) == 1 and versions[0].startswith("v1+edit.")
    assert _label(tmp_path, fault_server, events, tax_path, "--require-approved") == 2


def test_prompt_lists_labels_before_the_session() -> None:
    tax = Taxonomy(
        version=1, status="draft", labels=[Label("a_b", "A b", "Desc.", []), Label(OTHER_ID, "O", "", [])]
    )
    user = label_messages(tax, "channel web; 1 page: x")[-1]["content"]
    assert user.index("- a_b: A b. Desc.") < user.index(
        "Visit: channel web; 1 page: x"
    )  # shared prefix first


def test_shortlist_offers_related_labels_and_skips_sessions_with_one_option(
    events_path: Path, fault_server: Any, tmp_path: Path
) -> None:
    tax = Taxonomy(
        version=4,
        status="approved",
        labels=[
            Label("mortgage", "Mortgage", "Home loans; typical pages: mortgages, mortgage rates.", []),
            Label("credit_card", "Credit card", "Typical pages: credit cards, card compare.", []),
            Label("savings", "Savings", "Typical pages: savings accounts.", []),
            Label(OTHER_ID, "Other", "Anything else.", []),
        ],
        generation={"generic_pages": ["home"]},
    ).save(tmp_path / "taxonomy.yaml")
    assert _label(tmp_path, fault_server, events_path, tax, "--shortlist", "on", "--sure-ratio", "0") == 0
    labels = pd.read_parquet(tmp_path / "llm_labels.parquet").set_index(C.SESSION_ID)
    for sid, topic in TOPIC_OF.items():
        expected = OTHER_ID if topic == "security" else topic  # no security label: nothing relates
        assert labels.loc[sid, "label_id"] == expected, sid
    # Savings visits relate to two labels ("rates" is in the mortgage label too): only they need the
    # model. Every other session has a single related label (or none: "other") and no call is made.
    savings = ["s006", "s007", "s008"]
    assert (labels.loc[savings, "model"] == fault_server.model).all()
    assert (labels.drop(index=savings)["model"] == RULE_MODEL).all()
    enums = [
        r["response_format"]["json_schema"]["schema"]["properties"]["label_id"]["enum"]
        for r in fault_server.plan.requests
    ]
    assert enums == [["savings", "mortgage"]] * 3
    report = json.loads((tmp_path / "llm_labels.report.json").read_text())
    assert report["n_single_option"] == 10 and report["shortlist_k"] == 4
    assert (labels[C.TAXONOMY_VERSION] == "v4").all()
    # With the default sure ratio, "savings" outscores "mortgage" (two of its words against one) by
    # enough that the rule decides: no call at all, and the provenance says so.
    fault_server.plan.requests.clear()
    assert _label(tmp_path, fault_server, events_path, tax, "--shortlist", "on") == 0
    again = pd.read_parquet(tmp_path / "llm_labels.parquet").set_index(C.SESSION_ID)
    assert (again["label_id"] == labels["label_id"]).all()
    assert (again.loc[savings, "model"] == MARGIN_MODEL).all() and not fault_server.plan.requests
    report = json.loads((tmp_path / "llm_labels.report.json").read_text())
    assert report["n_rule_sure"] == 3 and report["n_llm"] == 0


def test_shortlist_ranks_by_shared_rare_words() -> None:
    tax = Taxonomy(
        version=1,
        status="draft",
        labels=[
            Label("auto_loan", "Auto loan", "Typical pages: auto loan calculator.", []),
            Label("personal_loan", "Personal loan", "Typical pages: product personal loan.", []),
            Label("mortgage", "Mortgage", "Typical pages: mortgage calculator.", []),
            Label(OTHER_ID, "Other", "", []),
        ],
    )
    assert shortlist(["auto loan calculator"], tax) == [
        "auto_loan",
        "personal_loan",
        "mortgage",
    ]  # ties: taxonomy order
    assert shortlist(["auto loan calculator"], tax, k=1) == ["auto_loan"]
    assert shortlist(["branch locator"], tax) == [] and shortlist([], tax) == []

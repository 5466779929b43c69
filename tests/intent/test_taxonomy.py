"""Taxonomy: summaries, name merging, review bound, the generate loop, the file's edit/approval rules."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from clicks2intent.cli import main
from clicks2intent.errors import ConfigError
from clicks2intent.intent.llm.client import LLMClient, LLMSettings
from clicks2intent.intent.summaries import (
    common_prefixes,
    generic_pages,
    session_phrases,
    summarize_session,
    summarize_sessions,
    web_session_ids,
)
from clicks2intent.intent.taxonomy import (
    OTHER_ID,
    OTHER_NAME,
    STATUS_APPROVED,
    STATUS_DRAFT,
    Candidate,
    Label,
    Taxonomy,
    TaxonomyConfig,
    generate_taxonomy,
    grounded_options,
    intent_review,
    merge_proposal,
    name_tokens,
    render_review,
    review_candidates,
)
from clicks2intent.names import columns as C


def test_summary_is_compact_scrubbed_and_deterministic() -> None:
    text = summarize_session(
        ["home", "mortgage_rates", "mortgage_rates", "mortgage_calculator"],
        [4.0, 30.0, 65.0, None],
        [None, "rates for 4111 1111 1111 1111", "rates for 4111 1111 1111 1111", None],
        "web",
    )
    assert (
        text
        == 'channel web; 4 pages: home 4s > mortgage rates x2 95s > mortgage calculator; searches: "rates for <CARD>"'
    )
    long = summarize_session([f"p{i}" for i in range(30)], [None] * 30, [None] * 30, None)
    assert "(+20 more)" in long and long.startswith("30 pages: p0 > p1 > p2 > (+20 more) > p23")


def test_summaries_keep_web_and_unknown_channel_only(events: pd.DataFrame) -> None:
    s = summarize_sessions(events)
    assert "app001" not in set(s[C.SESSION_ID]) and "nochan" in set(s[C.SESSION_ID])
    assert web_session_ids(events) == sorted(s[C.SESSION_ID])
    shuffled = events.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(s, summarize_sessions(shuffled))  # order of rows in the file is irrelevant
    no_channel = events.drop(columns=[C.CHANNEL])
    assert len(summarize_sessions(no_channel)) == events[C.SESSION_ID].nunique()
    with pytest.raises(ValueError, match="page_type"):
        summarize_sessions(events.drop(columns=[C.PAGE_TYPE]))


def test_generic_pages_are_the_navigation_of_most_sessions(events: pd.DataFrame) -> None:
    assert generic_pages(events, max_share=0.5) == {"home"}  # in 12 of 13 web sessions
    assert "mortgages" in generic_pages(events, max_share=0.15)  # 4 of 13 sessions > 15 %
    with pytest.raises(ValueError, match="max_share"):
        generic_pages(events, max_share=0)


def test_site_map_prefixes_are_stripped_from_phrases() -> None:
    pages = ["product_mortgage", "product_savings", "product_auto_loan", "apply_start", "apply_form", "home"]
    prefixes = common_prefixes(pages)
    assert prefixes == {"product"}  # "apply" starts only two page names
    phrases = session_phrases(
        ["home", "product_mortgage", "mortgage_calculator", "product_mortgage", "apply_start"],
        [None, "Fixed rate 4111 1111 1111 1111", None, None, None],
        generic={"home"},
        prefixes=prefixes,
    )
    assert phrases == ["mortgage", "mortgage calculator", "apply start", "fixed rate <card>"]


def test_names_merge_by_meaning_not_spelling() -> None:
    assert name_tokens("Comparing credit cards") == name_tokens("Credit card comparison")
    cands: list[Candidate] = []
    for sid, name in enumerate(
        ["Compare credit cards", "Credit card comparison", "Mortgage rates", "Mortage rates", "Auto loan"]
    ):
        merge_proposal(cands, f"s{sid}", name, "d", threshold=0.5)
    assert [(c.name, c.support) for c in cands] == [
        ("Compare credit cards", 2),
        ("Mortgage rates", 2),
        ("Auto loan", 1),
    ]
    merge_proposal(cands, "s9", "Unknown", "d", threshold=0.5)  # no information: not a candidate
    assert sum(c.support for c in cands) == 5


def test_review_bounds_the_label_count() -> None:
    cands: list[Candidate] = []
    names = (
        ["Mortgage rates"] * 5 + ["Mortgage calculator"] * 1 + ["Savings account"] * 4 + ["Credit cards"] * 3
    )
    names += ["Travel insurance"] * 1 + ["Auto loan"] * 2
    for i, n in enumerate(names):
        merge_proposal(cands, f"s{i}", n, "d", threshold=0.5)
    kept, what = review_candidates(cands, TaxonomyConfig(max_labels=3, min_support=2))
    assert [c.name for c in kept] == ["Mortgage rates", "Savings account", "Credit cards"]
    assert "Mortgage calculator -> Mortgage rates" in what["folded"]
    assert "Travel insurance" in what["dropped"] and kept[0].support == 6


def _client(server: Any, tmp_path: Path) -> LLMClient:
    return LLMClient(
        LLMSettings(
            model=server.model,
            base_url=server.base_url,
            api_key="t",
            backoff_s=0.01,
            timeout_s=0.5,
            cache_path=tmp_path / "cache.sqlite",
        )
    )


def test_free_proposals_feed_candidates_back_and_survive_faults(
    events: pd.DataFrame, fault_server: Any, tmp_path: Path
) -> None:
    fault_server.plan.faults = {"s001": ["500", "malformed"], "s002": ["offmenu*"]}
    summaries = summarize_sessions(events)
    config = TaxonomyConfig(n_sessions=12, minibatch_size=4, max_labels=4, min_support=1, proposal="free")
    with _client(fault_server, tmp_path) as client:
        tax = generate_taxonomy(summaries, client, config, progress=False)
    g = tax.generation
    assert g["n_sessions"] == 12 and g["n_minibatches"] == 3
    assert g["proposals_failed"] == int("s002" in _sampled(summaries, config))
    assert g["proposals_ok"] + g["proposals_failed"] == 12
    assert len(tax.labels) <= config.max_labels + 1 and tax.labels[-1].id == OTHER_ID
    names = {lab.name for lab in tax.labels}
    assert any("Mortgage" in n for n in names) and any("Savings" in n for n in names)
    # update rounds: the second minibatch's prompts list the names found in the first
    user_msgs = [r["messages"][-1]["content"] for r in fault_server.plan.requests]
    assert "Goals named so far" not in user_msgs[0] and any("Goals named so far" in m for m in user_msgs[4:])
    assert sum(g["support"].values()) == 12 and "propose_free" in tax.prompts


def test_grounded_proposals_choose_among_salient_phrases(
    events: pd.DataFrame, fault_server: Any, tmp_path: Path
) -> None:
    fault_server.plan.faults = {"s001": ["500", "malformed"], "s002": ["offmenu*"]}
    summaries = summarize_sessions(events, generic={"home"})
    assert summaries.set_index(C.SESSION_ID).loc["s000", "phrases"] == [
        "mortgages",
        "mortgage rates",
        "mortgage help s000",
    ]
    config = TaxonomyConfig(n_sessions=13, minibatch_size=4, max_labels=4, min_support=1)
    with _client(fault_server, tmp_path) as client:
        tax = generate_taxonomy(summaries, client, config, progress=False)
    g = tax.generation
    assert g["proposals_forced"] == 1  # "nochan" has a single salient page: no call needed
    assert g["proposals_failed"] == 1 and g["failure_reasons"] == {
        "invalid answer: $.interest: 'wire money to mars' is not one of the allowed values": 1
    }
    assert g["proposals_ok"] + g["proposals_failed"] + g["proposals_forced"] == 13
    assert tax.labels[-1].name == OTHER_NAME
    assert sorted(lab.name for lab in tax.labels[:-1]) == [
        "Credit cards",
        "Fraud help",
        "Mortgages",
        "Savings accounts",
    ]
    mortgage = next(lab for lab in tax.labels if lab.name == "Mortgages")
    assert mortgage.description == "Visits mainly about mortgages; typical pages and searches: mortgages."
    for req in fault_server.plan.requests:  # every answer was constrained to the visit's own phrases
        options = req["response_format"]["json_schema"]["schema"]["properties"]["interest"]["enum"]
        assert set(options) <= set(
            req["messages"][-1]["content"].split("interest: ")[1].rstrip("?").split(", ")
        )


def test_grounded_options_offer_related_existing_goals() -> None:
    cands: list[Candidate] = []
    merge_proposal(cands, "a", "Product mortgage", "", 0.5)
    merge_proposal(cands, "b", "Report fraud", "", 0.5)
    assert grounded_options(["mortgage calculator", "rates"], cands, 12) == [
        "mortgage calculator",
        "rates",
        "product mortgage",
    ]
    assert grounded_options([], cands, 12) == []


def test_a_presampled_frame_keeps_its_order_as_minibatches(
    events: pd.DataFrame, fault_server: Any, tmp_path: Path
) -> None:
    summaries = summarize_sessions(events, generic={"home"}).iloc[::-1]  # reversed: s011 first
    config = TaxonomyConfig(n_sessions=50, minibatch_size=2, proposal="free")
    with _client(fault_server, tmp_path) as client:
        generate_taxonomy(summaries, client, config, progress=False)
    first = fault_server.plan.requests[0]["messages"][-1]["content"]
    assert "s011" in first or "s010" in first  # the first minibatch is the frame's first two rows


def _sampled(summaries: pd.DataFrame, config: TaxonomyConfig) -> list[str]:
    from clicks2intent.intent.taxonomy import sample_ids

    return sample_ids(summaries[C.SESSION_ID].tolist(), config.n_sessions, config.random_state)


def _tax() -> Taxonomy:
    return Taxonomy(
        version=2,
        status="draft",
        labels=[
            Label("mortgage", "Mortgage", "Home loans.", ["s000"]),
            Label(OTHER_ID, "Other", "None.", []),
        ],
        model="m",
        prompts={"propose": "ab" * 32},
    )


def test_file_round_trip_edit_detection_and_approval(tmp_path: Path) -> None:
    path = _tax().save(tmp_path / "taxonomy.yaml")
    tax = Taxonomy.load(path)
    assert not tax.edited and tax.version_string == "v2"
    raw = yaml.safe_load(path.read_text())
    assert list(raw)[:2] == ["version", "status"] and raw["labels"][0]["examples"] == ["s000"]
    raw["labels"][0]["name"] = "Home buying"  # a reviewer edits a name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    edited = Taxonomy.load(path)
    assert edited.edited and edited.version_string.startswith("v2+edit.")
    main(
        [
            "taxonomy",
            "review",
            "--taxonomy",
            str(path),
            "--approve",
            "--approver",
            "pm",
            "--out",
            str(tmp_path / "r.md"),
        ]
    )
    approved = Taxonomy.load(path)
    assert approved.status == STATUS_APPROVED and approved.version == 3 and not approved.edited
    assert approved.labels[0].name == "Home buying" and approved.approved_by == "pm"


@pytest.mark.parametrize(
    ("patch", "error"),
    [
        ({"status": "final"}, "taxonomy.status"),
        ({"version": 0}, "taxonomy.version"),
        ({"labels": [{"id": "Bad Id", "name": "x"}]}, r"labels\[0\].id"),
        ({"labels": [{"id": "a", "name": "x"}, {"id": "a", "name": "y"}]}, "duplicate id"),
        ({"labels": []}, "at least one label"),
    ],
)
def test_bad_taxonomy_file_names_field_and_rule(tmp_path: Path, patch: dict, error: str) -> None:
    raw = _tax().to_dict() | patch
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=error):
        Taxonomy.load(path)


def test_review_markdown_shows_frequencies_and_examples(events: pd.DataFrame) -> None:
    tax = _tax()
    labels = pd.DataFrame(
        {
            C.SESSION_ID: ["s000", "s001", "s002"],
            "label_id": ["mortgage", "mortgage", None],
            "status": ["ok", "ok", "failed"],
        }
    )
    md = render_review(tax, summarize_sessions(events), labels)
    assert "| `mortgage` | Mortgage | Home loans. | 2 | 100.0% |" in md
    assert "LLM labels (3 sessions, 1 failed)" in md and "`s000`: channel web; 3 pages: home" in md


def test_generate_cli_respects_an_approved_file(
    events_path: Path, fault_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ev_path = events_path
    out = tmp_path / "taxonomy.yaml"
    common = [
        "--events",
        str(ev_path),
        "--out",
        str(out),
        "--sessions",
        "8",
        "--minibatch",
        "4",
        "--base-url",
        fault_server.base_url,
        "--model",
        fault_server.model,
        "--cache",
        str(tmp_path / "c.sqlite"),
    ]
    assert main(["taxonomy", "generate", *common]) == 0
    first = Taxonomy.load(out)
    assert first.version == 1 and first.status == "draft" and first.model == fault_server.model
    assert main(["taxonomy", "generate", *common]) == 0  # an untouched draft is replaced by a new version
    assert Taxonomy.load(out).version == 2
    main(["taxonomy", "review", "--taxonomy", str(out), "--approve"])
    before = out.read_text()
    assert main(["taxonomy", "generate", *common]) == 2  # approved: refused without --force
    err = capsys.readouterr().err  # one line on stderr, no traceback
    assert out.read_text() == before and "not replacing" in err and "Traceback" not in err
    assert main(["taxonomy", "generate", *common, "--force"]) == 0
    assert Taxonomy.load(out).version == 3 and (tmp_path / "taxonomy.v2.bak.yaml").read_text() == before
    assert (
        Counter(r["messages"][-1]["content"].startswith("Visit:") for r in fault_server.plan.requests)[True]
        == 8
    )


def _cand(name: str, n: int = 1) -> Candidate:
    return Candidate(
        tokens=set(name_tokens(name)), names=Counter({name: n}), sessions=[f"x{i}" for i in range(n)]
    )


def test_intent_review_rejects_steps_merges_parts_and_adds_keywords() -> None:
    """Intents, not pages: the application form is on every product's path (a step, rejected), the
    mortgage calculator is part of the mortgage goal (merged), and a never-proposed search that comes
    with savings visits becomes a savings keyword."""
    sessions: list[list[str]] = []
    for product, part in (("mortgage", "mortgage calculator"), ("savings", "cd rates"), ("credit card", "")):
        for i in range(20):
            s = [product] + ([part] if part and i % 2 == 0 else []) + (["apply form"] if i % 3 == 0 else [])
            sessions.append(s)
    sessions += [["about"]] * 40  # browsing with nothing salient: lowers the base rates, as in real logs
    cands = [_cand("Mortgage", 3), _cand("Savings", 2), _cand("Credit card", 2), _cand("Apply form", 2)]
    cands.append(_cand("Mortgage calculator", 1))
    kept, notes = intent_review(cands, sessions, TaxonomyConfig())
    assert [c.name for c in kept] == ["Mortgage", "Savings", "Credit card"]
    assert any(n.startswith("Apply form") for n in notes["rejected_steps"])
    assert notes["merged_parts"] == ["Mortgage calculator -> Mortgage (100% of its sessions)"]
    assert "mortgage calculator" in {k.lower() for k in kept[0].names}
    assert "cd rates -> Savings" in notes["keywords_added"]
    assert kept[0].name == "Mortgage"  # keywords never become the display name


def test_duplicate_label_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"labels\[1\].name: duplicate name"):
        Taxonomy(1, STATUS_DRAFT, [Label("a", "Savings", ""), Label("b", "savings ", "")])


def test_a_hand_edit_of_keywords_is_versioned(tmp_path: Path) -> None:
    """Keywords steer the labeller, so a person's edit of them gives labels their own version string."""
    path = Taxonomy(2, STATUS_DRAFT, [Label("mortgage", "Mortgage", "Home loans.", [], ["mortgage"])]).save(
        tmp_path / "t.yaml"
    )
    raw = yaml.safe_load(path.read_text())
    assert Taxonomy.load(path).version_string == "v2"
    raw["labels"][0]["keywords"].append("home equity loan")
    path.write_text(yaml.safe_dump(raw))
    edited = Taxonomy.load(path)
    assert edited.edited and edited.version_string.startswith("v2+edit.")
    assert edited.labels[0].keywords == ["mortgage", "home equity loan"]


def test_steps_on_a_goals_own_path_do_not_reject_the_goal() -> None:
    """Each product is seen with the form, the start page and contact (3 steps): the hubs go first, so
    the products stay; a lift from a handful of shared sessions makes no partner."""
    sessions: list[list[str]] = []
    for product in ("mortgage", "savings", "credit card", "auto loan"):
        for i in range(30):
            s = [product, "apply start"] + (["apply form"] if i % 2 else []) + (["contact"] if i % 3 else [])
            sessions.append(s)
    sessions += [["mortgage", "careers"], ["savings", "careers"], ["auto loan", "careers"], ["careers"]]
    sessions += [["about"]] * 200
    cands = [_cand(n, 2) for n in ("Mortgage", "Savings", "Credit card", "Auto loan")]
    cands += [_cand("Apply start", 3), _cand("Apply form", 2), _cand("Contact", 2), _cand("Careers", 2)]
    kept, notes = intent_review(cands, sessions, TaxonomyConfig(merge_share=0.9))
    assert [c.name for c in kept] == ["Mortgage", "Savings", "Credit card", "Auto loan", "Careers"]
    assert {s.split(" (")[0] for s in notes["rejected_steps"]} == {"Apply start", "Apply form", "Contact"}
    assert notes["step_phrases"] == ["apply form", "apply start", "contact"]


def test_review_keeps_frequent_goals_over_the_cap_and_merges_near_duplicates() -> None:
    """The cap merges a near-duplicate pair first and drops only a seldom-seen candidate; frequent
    goals stay up to hard_max_labels, however few proposals the sample gave them."""
    goals = ["Mortgage", "Savings", "Credit card", "Auto loan", "Personal loan", "Investing", "Retirement"]
    cands = [_cand(g, 5) for g in goals] + [_cand("Business banking", 1), _cand("Mortgages", 2)]
    cands.append(_cand("Careers", 3))
    for c in cands:
        c.seen_share = 0.002 if c.name == "Careers" else 0.08
    config = TaxonomyConfig(max_labels=6, hard_max_labels=8)
    kept, what = review_candidates(cands, config)
    names = [c.name for c in kept]
    assert "Business banking" in names and len(kept) == 8  # frequent, though proposed once
    assert "Mortgages -> Mortgage" in what["folded"] and "Careers" in what["dropped"]
    strict = review_candidates([_cand(g, 5) for g in goals], TaxonomyConfig(max_labels=6, hard_max_labels=6))
    assert len(strict[0]) == 6  # beyond the hard bound even a frequent goal goes


def _topic_client_summaries(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(first sample without any savings session, pool of every session)."""
    pool = summarize_sessions(events, generic={"home"})
    first = pool[~pool["summary"].str.contains("savings")].reset_index(drop=True)
    return first, pool


@pytest.mark.parametrize("rounds", [0, 3])
def test_a_goal_only_uncovered_sessions_show_is_proposed_in_coverage_rounds(
    make_session_events: Any, fault_server: Any, tmp_path: Path, rounds: int
) -> None:
    """TnT-LLM's update step aimed at what the taxonomy misses: the first sample has no savings visit;
    the pool's savings visits match no label, so coverage rounds ask them, and savings becomes a label."""
    first, pool = _topic_client_summaries(make_session_events(n_per_topic=6))
    config = TaxonomyConfig(n_sessions=len(first), minibatch_size=6, coverage_rounds=rounds, coverage_batch=4)
    with _client(fault_server, tmp_path) as client:
        tax = generate_taxonomy(first, client, config, progress=False, pool=pool)
    names = {lab.name for lab in tax.labels}
    g = tax.generation
    if rounds == 0:
        assert "Savings accounts" not in names and "coverage" not in g
        return
    assert "Savings accounts" in names
    assert g["coverage"][0] < g["coverage"][-1] and g["coverage_sessions"] >= 1
    asked = [r["messages"][-1]["content"] for r in fault_server.plan.requests[-g["coverage_sessions"] :]]
    assert all("savings" in m for m in asked)  # only the uncovered sessions were asked


def test_display_names_keep_a_topic_and_drop_a_site_map_prefix() -> None:
    from clicks2intent.intent.taxonomy import _display_names

    topic = [_cand(n) for n in ("Auto loan", "Auto loan calculator", "Auto loan rates")]
    assert _display_names(topic[:1], topic) == {0: "Auto loan"}
    family = [_cand(n) for n in ("Product mortgage", "Product savings", "Product credit card")]
    assert _display_names(family[:1], family) == {0: "Mortgage"}
    goal = _cand("Mortgage calculator", 3)
    goal.names["Mortgage"] += 1
    assert _display_names([goal], [goal], Counter({"mortgage": 40, "mortgage calculator": 20})) == {
        0: "Mortgage"
    }


def test_the_general_form_of_one_goals_name_becomes_its_keyword() -> None:
    """The model named the mortgage goal after its calculator: the product page "mortgage" (seen
    without the calculator most of the time) is that goal's keyword and its display name; "loan",
    the general form of two goals, is nobody's."""
    from clicks2intent.intent.taxonomy import _display_names

    sessions = [["mortgage"]] * 12 + [["mortgage", "mortgage calculator"]] * 3 + [["mortgage calculator"]] * 3
    sessions += (
        [["loan", "auto loan"]] * 3 + [["loan", "personal loan"]] * 3 + [["loan"]] * 6 + [["about"]] * 60
    )
    cands = [_cand("Mortgage calculator", 4), _cand("Auto loan", 2), _cand("Personal loan", 2)]
    kept, notes = intent_review(cands, sessions, TaxonomyConfig())
    assert "mortgage -> Mortgage calculator (general form)" in notes["keywords_added"]
    assert not any(k.startswith("loan ->") for k in notes["keywords_added"])
    seen = Counter(p for s in sessions for p in set(s))
    assert _display_names(kept, kept, seen)[0] == "Mortgage"


def test_a_goal_seen_with_a_few_other_goals_is_no_step() -> None:
    """Sessions mix a need with other pages: business banking is seen with three other goals above
    chance. A step is on the path of a good share of all goals (the form: all sixteen)."""
    goals = [f"goal {w}" for w in "abcdefghijklmno"] + ["business banking"]
    sessions: list[list[str]] = []
    for g in goals:
        for i in range(40):
            sessions.append([g] + (["apply form"] if i % 2 else []))
    for i, other in enumerate(["goal a", "goal b", "goal c"] * 10):
        sessions[-1 - i] = ["business banking", other]
    sessions += [["about"]] * 400
    cands = [_cand(g.capitalize(), 2) for g in goals] + [_cand("Apply form", 2)]
    kept, notes = intent_review(cands, sessions, TaxonomyConfig())
    assert [s.split(" (")[0] for s in notes["rejected_steps"]] == ["Apply form"]
    assert "Business banking" in [c.name for c in kept]


def test_grounded_proposals_of_two_pages_merge_only_when_spellings_of_one(
    fault_server: Any, tmp_path: Path
) -> None:
    """Two pages sharing words are two things until their sessions say otherwise (parts merge by
    co-occurrence): the personal loan's calculator is not the auto loan calculator; a typo is merged."""
    pages = ["auto loan calculator", "loan calculator", "auto loan calculator", "loan calculator"]
    pages += ["auto loan calculatr", "mortgage", "mortgage"]
    summaries = pd.DataFrame(
        {
            C.SESSION_ID: [f"s{i}" for i in range(len(pages))],
            "summary": [f"channel web; 2 pages: home > {p}" for p in pages],
            "phrases": [[p] for p in pages],
        }
    )
    config = TaxonomyConfig(n_sessions=len(pages), min_support=1, coverage_rounds=0)
    with _client(fault_server, tmp_path) as client:
        tax = generate_taxonomy(
            summaries, client, config, progress=False, session_phrases=[[p] for p in pages]
        )
    support = tax.generation["support"]
    assert support["auto_loan_calculator"] == 3 and support["loan_calculator"] == 2, support

"""The word-match reference rule: table semantics, ties, no-hit sessions, bad tables."""

from __future__ import annotations

import pandas as pd
import pytest

from clicks2intent.data.simulator import RULE_KEYWORDS
from clicks2intent.data.world import World
from clicks2intent.errors import ConfigError
from clicks2intent.intent.rules import RULE_OTHER, WordMatchRule, words
from clicks2intent.names import columns as C


def test_words_split_page_names_and_queries():
    assert words("product_mortgage") == ["product", "mortgage"]
    assert words("30 Year-Fixed") == ["30", "year", "fixed"]
    assert words(None) == [] and words(float("nan")) == []


def test_most_hits_wins_ties_go_to_the_earlier_entry_and_no_hit_is_other():
    rule = WordMatchRule({"mortgage": ["mortgage", "refinance"], "savings": ["savings"]}).fit()
    assert (
        rule.predict_session(["home", "savings_calculator", "product_mortgage"], ["refinance"]) == "mortgage"
    )
    assert rule.predict_session(["product_savings", "product_mortgage"]) == "mortgage"  # tie: table order
    assert rule.predict_session(["home", "login"], [None]) == RULE_OTHER
    assert rule.labels_ == ["mortgage", "savings", RULE_OTHER]


def test_the_worlds_table_reads_a_bank_session(sim_world: World):
    """The table is the bank's (its world's keywords); the library holds none of its own."""
    rule = WordMatchRule(sim_world.rule_keywords())
    assert rule.predict_session(["home", "security_center"], ["lost card"]) == "fraud_security"
    assert rule.predict_session(["product_credit_card", "compare_cards"]) == "credit_card"
    assert set(rule.fit().table_) == set(RULE_KEYWORDS)
    with pytest.raises(TypeError):
        WordMatchRule()  # type: ignore[call-arg]  # no default table


def test_predict_over_events_one_label_per_session(sim_world: World):
    ev = pd.DataFrame(
        {
            C.SESSION_ID: ["b", "b", "a", "c"],
            C.PAGE_TYPE: ["home", "product_auto_loan", "search", "login"],
            C.SEARCH_QUERY: [None, None, "roth ira", None],
        }
    )
    table = sim_world.rule_keywords()
    got = WordMatchRule(table).fit().predict(ev)
    assert got.to_dict() == {"a": "retirement", "b": "auto_loan", "c": RULE_OTHER}
    assert WordMatchRule(table).predict(ev.drop(columns=[C.SEARCH_QUERY]), session_ids=["a"]).to_dict() == {
        "a": RULE_OTHER
    }


@pytest.mark.parametrize("table", [{}, {"x": []}, {"x": ["__"]}])
def test_bad_tables_are_config_errors(table):
    with pytest.raises(ConfigError, match="WordMatchRule.keywords"):
        WordMatchRule(table).fit()

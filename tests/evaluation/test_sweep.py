"""The link-rate sweep: its spec, its guard, and the property it rests on (links are the last draw)."""

from __future__ import annotations

import pandas as pd
import pytest

from clicks2intent.data import simulator as sim
from clicks2intent.errors import ConfigError
from clicks2intent.evaluation.sweep import SweepRun, parse_sweep, sweep_markdown
from clicks2intent.names import columns as C


def test_parse_and_check_the_spec() -> None:
    assert parse_sweep("link_rate=0.1,0.28, 0.5") == ("link_rate", (0.1, 0.28, 0.5))
    for bad in ("link_rate", "link_rate=", "=0.1", "link_rate=a,b"):
        with pytest.raises(ConfigError, match="PARAMETER=V1"):
            parse_sweep(bad)
    with pytest.raises(ConfigError, match="not sweepable"):
        SweepRun(parameter="tile_research_boost").check()
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        SweepRun(values=(0.1, 1.5)).check()


def test_only_the_links_change_with_the_link_rate() -> None:
    """Why one encoder and one set of labels serve every value: events and task logs are identical."""
    low = sim.simulate(sim.SimulatorConfig(n_customers=300, seed=4, link_rate=0.1))
    high = sim.simulate(sim.SimulatorConfig(n_customers=300, seed=4, link_rate=0.8))
    pd.testing.assert_frame_equal(low.events, high.events)
    pd.testing.assert_frame_equal(low.tile_impressions, high.tile_impressions)
    pd.testing.assert_frame_equal(low.conversions, high.conversions)
    assert len(high.identity_links) > 3 * len(low.identity_links)
    assert set(low.identity_links[C.VISITOR_ID]) != set(high.identity_links[C.VISITOR_ID])


def test_markdown_lists_every_point() -> None:
    point = {
        "value": 0.28, "n_links": 10, "n_test": 100,
        "variants": {"embedding": {"log_loss_rel_pct": -3.0, "log_loss_rel_ci": [-4.0, -2.0],
                                   "macro_recall_at_1_rel_pct": 20.0, "macro_recall_at_1_rel_ci": [10.0, 30.0],
                                   "log_loss_headroom": [0.5, 0.4, 0.6]}},
    }  # fmt: skip
    md = sweep_markdown({"parameter": "link_rate", "points": [point]})
    assert (
        "| 0.28 | 10 | 100 | embedding | -3.00 [-4.00, -2.00] | +20.0 [+10.0, +30.0] | 50 % [40, 60] |" in md
    )

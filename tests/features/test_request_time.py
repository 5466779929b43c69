"""Request-time details a Feast client meets: strict-JSON dwell values, `feast plan` equality, encoder warm-up."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from clicks2intent.data.world import World
from clicks2intent.encoder.config import Vocabulary
from clicks2intent.features import transforms as T
from clicks2intent.features.definitions import build, file_sources, planned_feature_view
from clicks2intent.names import columns as C


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(12.6, 12.6), (12, 12.0), ("12.6", 12.6), (" 95 ", 95.0), (0.0, 0.0)]
    + [(v, None) for v in (None, float("nan"), -1.0, -1, "", "  ", "nan", "null", "n/a", float("inf"))],
)
def test_request_dwell_reads_every_strict_json_form(value: object, seconds: float | None) -> None:
    assert T.request_dwell(value) == seconds


def test_inflight_events_take_string_dwell_arrays() -> None:
    events = T.inflight_events(["home", "search"], [0, 20_000_000], ["12.6", ""], ["", "rates"], "web", "")
    assert [e["dwell_seconds"] for e in events] == [12.6, None]


def test_a_materialized_view_equals_its_declaration(sim_world: World) -> None:
    """Feast records materialization intervals on the registry copy only; plan must not see a change."""
    from feast import FeatureView

    view = build(file_sources("/nowhere"), embedding_dim=4, world=sim_world).customer_profile
    assert isinstance(view, planned_feature_view()) and isinstance(view, FeatureView)
    registered = FeatureView.from_proto(view.to_proto())
    t = datetime(2024, 1, 1, tzinfo=UTC)
    registered.materialization_intervals.append((t, t + timedelta(days=1)))
    assert registered == view and view == registered
    assert not (registered != view)  # noqa: SIM202 - what feast plan evaluates: registry copy != declared
    registered.ttl = timedelta(days=1)  # a real change is still one
    assert registered != view


def test_warm_up_runs_each_length_twice() -> None:
    """Each length twice, on a page the encoder knows (its own vocabulary: the library names no page)."""
    calls: list[int] = []

    class Embedder:
        vocabularies = {C.PAGE_TYPE: Vocabulary(["landing", "claims"])}

        def embed_session(self, events: list[dict]) -> list[float]:
            assert all(math.isfinite(e["dwell_seconds"]) for e in events)
            assert {e[C.PAGE_TYPE] for e in events} == {"landing"}
            calls.append(len(events))
            return [0.0]

    T.warm_up(Embedder())
    assert calls == list(T.WARM_UP_LENGTHS) * 2

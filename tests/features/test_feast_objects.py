"""The plugin functions that build the Feast objects: names, types, groups, self-contained UDFs."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from clicks2intent.data.world import World, parse_world
from clicks2intent.encoder.model import N_SPECIAL
from clicks2intent.features import build as F
from clicks2intent.features import definitions as fo
from clicks2intent.names import columns as C
from clicks2intent.names import features as N


@pytest.fixture(scope="module")
def objects(sim_world: World) -> fo.Clicks2IntentObjects:
    return fo.build(fo.file_sources("../artifacts/features"), embedding_dim=48, world=sim_world)


def test_names_match_the_interface_table(objects: fo.Clicks2IntentObjects) -> None:
    assert [e.name for e in (objects.session, objects.visitor, objects.customer)] == [
        "session",
        "visitor",
        "customer",
    ]
    assert objects.customer.join_key == C.CUSTOMER_ID
    assert set(objects.services()) == set(fo.SERVICES)
    views = {o.name for o in objects.all() if hasattr(o, "entities")}
    assert {
        "session_activity",
        "session_intent",
        "visitor_web_intent",
        "customer_web_intent",
        "customer_profile",
        "inflight_session_intent",
        "tile_affinity",
        "session_affinity",
    } <= views
    feats = {f.name for f in objects.customer_web_intent.features}
    assert feats == {
        F.CUSTOMER_INTENT_LABEL, F.CUSTOMER_INTENT_CONFIDENCE, F.CUSTOMER_INTENT_DECAYED,
        F.CUSTOMER_WEB_EMBEDDING, F.CUSTOMER_LINKED_VISITORS, F.CUSTOMER_WEB_SESSIONS_30D,
        *F.RECENT_WINDOW_NAMES,
    }  # fmt: skip


def test_embedding_is_float32_array_with_its_dimension_described(objects: fo.Clicks2IntentObjects) -> None:
    from feast.types import Array, Float32

    emb = next(f for f in objects.session_intent.features if f.name == C.EMBEDDING)
    assert emb.dtype == Array(Float32) and "dimension 48" in emb.description
    assert "Embedding dimension 48" in objects.session_intent.description


def test_services_group_the_right_views(objects: fo.Clicks2IntentObjects) -> None:
    def views(service: str) -> set[str]:
        return {p.name for p in objects.services()[service].feature_view_projections}

    assert views("tile_ranker_baseline") == {"customer_profile"}
    assert views("tile_ranker_v1") == {"customer_profile", "customer_web_intent", "tile_affinity"}
    assert views("conversion_baseline") == {"session_activity"}
    assert views("conversion_v1") == {
        "session_activity",
        "session_intent",
        "visitor_web_intent",
        "session_affinity",
    }
    # The baselines carry no web intent at all.
    for name in ("tile_ranker_baseline", "conversion_baseline"):
        for p in objects.services()[name].feature_view_projections:
            assert {fo.feature_group(f.name) for f in p.features} == {fo.BASELINE}


def test_feature_group_accepts_names_full_names_and_model_columns(sim_world: World) -> None:
    assert fo.feature_group("tenure_months") == fo.BASELINE
    assert fo.feature_group("customer_profile__has_mortgage") == fo.BASELINE
    assert fo.feature_group("customer_web_embedding_17") == fo.EMBEDDING
    assert fo.feature_group("tile_affinity_3") == fo.EMBEDDING
    assert fo.feature_group("session_tile_affinity_2") == fo.EMBEDDING
    assert fo.feature_group("customer_intent_decayed_0") == fo.LABELS
    assert fo.feature_group("visitor_intent_label=L02") == fo.LABELS
    assert fo.feature_group("session_n_events") == fo.BASELINE
    assert fo.feature_group("inflight_unknown_page_share") == fo.LABELS


def test_a_worlds_own_names_are_baseline_features(sim_world: World) -> None:
    """Names the library does not declare are the bank's (its profile columns, its page counts): a world
    only ever adds baseline columns, so they group as baseline instead of raising (as they did when the
    library listed the simulator's columns itself)."""
    for name in (*sim_world.profile, *sim_world.page_count_fields):
        assert fo.feature_group(name) == fo.BASELINE, name
        assert fo.feature_group(f"{N.SESSION_ACTIVITY}__{name}") == fo.BASELINE, name
    assert fo.feature_group("balance_band=250k+") == fo.BASELINE  # a one-hot column of a string profile field
    assert fo.feature_group("loyalty_tier") == fo.BASELINE  # another bank's column
    assert fo.feature_group(N.page_count_field("claims_portal")) == fo.BASELINE
    # ... while every name the library declares keeps its own group, however a model column spells it.
    for name, group in N.FEATURE_GROUPS.items():
        assert fo.feature_group(name) == group, name
        assert fo.feature_group(f"some_view__{name}") == group, name


def test_prefix_and_a_teams_own_entity(objects: fo.Clicks2IntentObjects, sim_world: World) -> None:
    from feast import Entity

    theirs = Entity(name="customer", join_keys=[C.CUSTOMER_ID], description="the team's own")
    mine = fo.build(
        fo.file_sources("data", prefix="c2i_"),
        embedding_dim=8,
        world=sim_world,
        prefix="c2i_",
        entities={"customer": theirs},
    )
    assert mine.customer is theirs and mine.customer_profile.entities == ["customer"]
    # Our own entities carry the prefix too (a team's own is used as it is).
    assert mine.session.name == "c2i_session" and mine.visitor.name == "c2i_visitor"
    assert mine.session.join_key == C.SESSION_ID and mine.visitor.join_key == C.VISITOR_ID
    assert set(mine.services()) == {f"c2i_{s}" for s in fo.SERVICES}
    assert mine.tile_affinity.name == "c2i_tile_affinity"
    with pytest.raises(ValueError, match="embedding_dim"):
        fo.build(fo.file_sources(), embedding_dim=0, world=sim_world)
    with pytest.raises(ValueError, match="prefix"):
        fo.build(fo.file_sources(), 8, world=sim_world, prefix="bad-name")


def test_the_prefix_defaults_to_the_worlds(sim_world: World) -> None:
    bank = replace(sim_world, feast_prefix="bank_")
    objs = fo.build(fo.file_sources("data", prefix="bank_"), 8, world=bank)
    assert set(objs.services()) == {f"bank_{s}" for s in fo.SERVICES}
    assert [e.name for e in (objs.session, objs.visitor, objs.customer)] == [
        "bank_session",
        "bank_visitor",
        "bank_customer",
    ]
    assert objs.customer_profile.name == "bank_customer_profile"
    unprefixed = fo.build(fo.file_sources("data"), 8, world=bank, prefix="")  # an explicit prefix wins
    assert set(unprefixed.services()) == set(fo.SERVICES)


def other_bank(world: World) -> World:
    """The simulator's declaration with two other web pages (every funnel step on one) and another profile."""
    d = world.to_dict()
    d["pages"], d["app_pages"] = {"landing": [], "claims": []}, {}
    d["tiles"] = dict.fromkeys(d["tiles"], [])
    d["funnel"] = {k: ["claims"] if isinstance(v, list) else "claims" for k, v in d["funnel"].items()}
    d["profile"] = {"loyalty_tier": "string", "tenure_days": "int"}
    return parse_world(d, "other bank")


def test_fields_come_from_the_world(objects: fo.Clicks2IntentObjects, sim_world: World) -> None:
    """The bag of pages is one count per declared web page type; the profile view holds the declared columns."""
    from feast.types import Bool, Float64, Int64, String

    activity = [f.name for f in objects.session_activity.features]
    assert activity == list(sim_world.session_activity_fields)
    assert not set(activity) & {N.page_count_field(p) for p in sim_world.app_page_types}  # app screens
    kinds = {"int": Int64, "float": Float64, "bool": Bool, "string": String}
    profile = {f.name: f.dtype for f in objects.customer_profile.features}
    assert profile == {name: kinds[kind] for name, kind in sim_world.profile.items()}
    assert [(f.name, f.dtype) for f in fo.profile_fields(sim_world)] == list(profile.items())
    # Another bank: other pages, other profile columns, other fields.
    other = other_bank(sim_world)
    theirs = fo.build(fo.file_sources("data"), 8, world=other)
    assert [f.name for f in theirs.session_activity.features][-2:] == [
        N.page_count_field("landing"),
        N.page_count_field("claims"),
    ]
    assert [f.name for f in theirs.customer_profile.features] == ["loyalty_tier", "tenure_days"]


def test_export_names_every_object_once(objects: fo.Clicks2IntentObjects) -> None:
    namespace: dict = {}
    names = objects.export(namespace)
    assert len(names) == len(set(names)) == len(objects.all())
    assert namespace["tile_ranker_v1"] is objects.services()["tile_ranker_v1"]
    assert objects.export(namespace) == names  # the same objects again: no clash
    with pytest.raises(ValueError, match="already defined"):
        objects.export({"session_activity": object()})


def _write_prototypes(root: Path, protos: dict[str, list[float] | None]) -> None:
    (root / fo.FEATURES_SUBDIR).mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                F.TILE_ID: list(protos),
                F.PROTOTYPE: pa.array(list(protos.values()), pa.list_(pa.float32())),
                F.PROTOTYPE_SESSIONS: [1] * len(protos),
            }
        ),
        root / fo.FEATURES_SUBDIR / F.FEATURE_FILES["tile_prototypes"],
    )


def test_udf_source_runs_as_feast_rehydrates_it(tmp_path: Path) -> None:
    """Feast re-execs the stored source with only pd/np in scope: the generated text must still work."""
    from feast.transformation.udf_rehydrate import rehydrate_udf_from_source

    _write_prototypes(tmp_path, {"mortgage": [1.0, 0.0], "savings": [0.0, 1.0], "investing": None})
    _, source = fo.python_udf("tile_affinity", fo.tile_affinity_transform, artifacts_dir=str(tmp_path))
    udf = rehydrate_udf_from_source(source, preferred_name="tile_affinity")
    assert udf is not None
    out = udf(
        {
            F.CUSTOMER_WEB_EMBEDDING: [[0.6, 0.8], None],
            fo.CANDIDATE_TILES: [["savings", "mortgage", "investing", "x"], ["mortgage"]],
        }
    )
    first, second = out[fo.TILE_AFFINITY]
    assert first[:2] == pytest.approx([0.8, 0.6]) and math.isnan(first[2]) and math.isnan(first[3])
    assert math.isnan(second[0])  # no web intent → unknown, not zero


def test_udf_text_of_registries_applied_before_the_move_still_runs(tmp_path: Path) -> None:
    """New applies name ``clicks2intent.features.transforms``; older registries hold the
    ``clicks2intent.feast_objects`` text, which must keep importing the same transforms."""
    from feast.transformation.udf_rehydrate import rehydrate_udf_from_source

    from clicks2intent.features import transforms

    _write_prototypes(tmp_path, {"mortgage": [1.0, 0.0], "savings": [0.0, 1.0]})
    _, source = fo.python_udf("tile_affinity", fo.tile_affinity_transform, artifacts_dir=str(tmp_path))
    assert "from clicks2intent.features.transforms import tile_affinity_transform" in source
    legacy = source.replace("clicks2intent.features.transforms", "clicks2intent.feast_objects")
    udf = rehydrate_udf_from_source(legacy, preferred_name="tile_affinity")
    out = udf({F.CUSTOMER_WEB_EMBEDDING: [[0.6, 0.8]], fo.CANDIDATE_TILES: [["savings", "mortgage"]]})
    assert out[fo.TILE_AFFINITY][0] == pytest.approx([0.8, 0.6])
    from clicks2intent import feast_objects

    assert feast_objects.inflight_intent_transform is transforms.inflight_intent_transform
    assert feast_objects.tile_affinity_transform is transforms.tile_affinity_transform
    assert feast_objects.build is fo.build and feast_objects.file_sources is fo.file_sources


def test_tile_affinity_unknowns() -> None:
    protos = fo.Prototypes.from_dict({"a": [1.0, 0.0], "b": [0.0, 1.0]})
    assert fo.tile_affinity([2.0, 0.0], ["b", "a"], protos, 2) == [pytest.approx(0.0), pytest.approx(1.0)]
    assert fo.tile_affinity([1.0, 1.0], ["a"], {"a": [1.0, 0.0]}, 2) == [
        pytest.approx(0.5**0.5)
    ]  # a plain dict
    assert all(math.isnan(v) for v in fo.tile_affinity([1.0], ["a"], protos, 2))  # wrong dimension
    assert all(math.isnan(v) for v in fo.tile_affinity([0.0, 0.0], ["a"], protos, 2))  # no direction
    assert fo.tile_affinity([1.0, 0.0], [], protos, 2) == []
    with pytest.raises(ValueError, match="dimensions"):
        fo.Prototypes.from_dict({"a": [1.0], "b": [1.0, 0.0]})
    with pytest.raises(ValueError, match="dim"):
        fo.tile_affinity([1.0, 0.0, 0.0], ["a"], protos, 3)


def test_tile_affinity_centres_the_embedding_on_the_prototypes_centre(tmp_path: Path) -> None:
    """Every embedding shares a common direction; the prototypes are offsets from the sessions' mean,
    so the scored embedding is centred on that mean too (written by the feature build, read back)."""
    import numpy as np

    sums = np.array([[3.0, 1.0], [1.0, 3.0]])  # tile a: sessions near (1.5, 0.5); tile b: (0.5, 1.5)
    table = F.tile_prototypes(["a", "b"], sums, np.array([2, 2]), sums.sum(axis=0), 4)
    (tmp_path / fo.FEATURES_SUBDIR).mkdir(parents=True)
    pq.write_table(table, tmp_path / fo.FEATURES_SUBDIR / F.FEATURE_FILES["tile_prototypes"])
    protos, dim = fo.load_prototypes(tmp_path)
    assert protos.centre == pytest.approx([1.0, 1.0])
    # (1.2, 1.0) points along the common direction: raw, it looks like both tiles; centred, it is a's.
    a, b = fo.tile_affinity([1.2, 1.0], ["a", "b"], protos, dim)
    assert a == pytest.approx(0.5**0.5) and b == pytest.approx(-(0.5**0.5))
    raw = fo.tile_affinity([1.2, 1.0], ["a", "b"], fo.Prototypes(protos.index, protos.matrix), dim)
    assert raw[0] == pytest.approx(0.2 / (1.2**2 + 1) ** 0.5 / 2**0.5, rel=1e-6)
    assert all(math.isnan(v) for v in fo.tile_affinity([1.0, 1.0], ["a"], protos, dim))  # the centre itself
    with pytest.raises(ValueError, match="centre"):
        fo.Prototypes.from_dict({"a": [1.0, 0.0]}, centre=[1.0])


def test_session_affinity_scores_session_and_visitor_over_every_tile(
    tmp_path: Path, tiny_encoder_writer, sim_world: World
) -> None:
    """The conversion model's view of both embeddings: the tile_affinity function over the world's tiles,
    in order."""
    from feast.transformation.udf_rehydrate import rehydrate_udf_from_source

    _write_prototypes(tmp_path, {"mortgage": [1.0, 0.0], "savings": [0.0, 1.0]})
    model, pages = tiny_encoder_writer(tmp_path, embedding_dim=2)
    _, source = fo.python_udf("session_affinity", fo.session_affinity_transform, artifacts_dir=str(tmp_path))
    udf = rehydrate_udf_from_source(source, preferred_name="session_affinity")
    out = udf({C.EMBEDDING: [[0.6, 0.8], None], N.VISITOR_EMBEDDING_DECAYED: [None, [0.0, 2.0]]})
    session, visitor = out[N.SESSION_TILE_AFFINITY], out[N.VISITOR_TILE_AFFINITY]
    tiles = list(sim_world.tiles)
    assert len(session[0]) == len(tiles) == len(visitor[1])
    assert session[0][tiles.index("mortgage")] == pytest.approx(0.6)
    assert session[0][tiles.index("savings")] == pytest.approx(0.8)
    assert math.isnan(session[0][tiles.index("investing")])  # no prototype: unknown
    assert all(math.isnan(v) for v in session[1]) and all(math.isnan(v) for v in visitor[0])
    assert visitor[1][tiles.index("savings")] == pytest.approx(1.0)
    # The next-page distribution is the encoder's own head on the same vectors, per web page type.
    head = out[N.SESSION_NEXT_PAGE][0]
    assert len(head) == len(sim_world.page_types) == len(out[N.VISITOR_NEXT_PAGE][1])
    assert all(math.isnan(v) for v in out[N.SESSION_NEXT_PAGE][1] + out[N.VISITOR_NEXT_PAGE][0])
    with torch.no_grad():
        want = torch.log_softmax(model.next_page_logits(torch.tensor([[0.6, 0.8], [0.0, 2.0]])), dim=-1)
    for i, page in enumerate(sim_world.page_types):
        if page in pages:
            assert head[i] == pytest.approx(float(want[0, N_SPECIAL + pages.index(page)]), abs=1e-5)
            assert out[N.VISITOR_NEXT_PAGE][1][i] == pytest.approx(
                float(want[1, N_SPECIAL + pages.index(page)]), abs=1e-5
            )
        else:  # a page type the encoder never saw: unknown, not a made-up probability
            assert math.isnan(head[i])
    assert sum(math.exp(v) for v in head if not math.isnan(v)) < 1.0


def test_next_page_logp_ignores_vectors_it_cannot_read(tmp_path: Path, tiny_encoder_writer) -> None:
    """A vector of another dimension or with a NaN has no next-page distribution (all NaN, no error)."""
    tiny_encoder_writer(tmp_path, embedding_dim=2)
    head = fo.load_next_page_head(tmp_path)
    for bad in (None, [1.0, 0.0, 0.0], [math.nan, 1.0]):
        assert all(math.isnan(v) for v in fo.next_page_logp(bad, head))


def test_missing_artifacts_error_names_the_path_and_env(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=fo.ARTIFACTS_ENV):
        fo.tile_affinity_transform(
            {F.CUSTOMER_WEB_EMBEDDING: [None], fo.CANDIDATE_TILES: [["a"]]},
            artifacts_dir=str(tmp_path / "none"),
        )
    with pytest.raises(FileNotFoundError, match="encoder"):
        fo.load_models(tmp_path / "none")


def test_python_udf_rejects_non_literal_parameters() -> None:
    with pytest.raises(TypeError, match="literal"):
        fo.python_udf("f", fo.tile_affinity_transform, artifacts_dir=Path("/x"))
    with pytest.raises(ValueError, match="identifier"):
        fo.python_udf("not a name", fo.tile_affinity_transform)


def test_inflight_events_from_request_arrays() -> None:
    events = fo.inflight_events(
        ["home", "search"], [1_000_000, 3_500_000], [2.5, math.nan], ["", "rates"], "WEB", ""
    )
    assert [e[C.PAGE_TYPE] for e in events] == ["home", "search"]
    assert events[0][C.DWELL_SECONDS] == 2.5 and events[1][C.DWELL_SECONDS] is None
    assert events[0][C.SEARCH_QUERY] is None and events[1][C.SEARCH_QUERY] == "rates"
    assert events[1][C.EVENT_TIMESTAMP].value == 3_500_000_000 and events[0][C.CHANNEL] == "web"
    assert (
        fo.inflight_events(["home"], [], [], [], "hello world", None)[0][C.CHANNEL] is None
    )  # unknown → missing
    with pytest.raises(ValueError, match=fo.INFLIGHT_DWELL_SECONDS):
        fo.inflight_events(["home", "search"], [], [1.0], [], "web", "")

"""The offline feature job: exact decay arithmetic, point-in-time rows, identity joins, partitioning, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from clicks2intent.data.world import World, load_world, write_world
from clicks2intent.errors import ContractError
from clicks2intent.features import build as F
from clicks2intent.features.sessions import session_stats
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names.paths import WORLD_FILE

T0 = pd.Timestamp("2024-05-01 10:00", tz="UTC")
DAY = pd.Timedelta(days=1)
CLASSES = ["a", "b", "c"]


def _contrib(
    rows: list[tuple[str, pd.Timestamp, str, float, list[float]]], key: str = C.VISITOR_ID
) -> pd.DataFrame:
    """(entity, session end, label, confidence, embedding) → the contributions frame of the timeline."""
    df = pd.DataFrame(
        rows, columns=[key, C.EVENT_TIMESTAMP, C.INTENT_LABEL, C.INTENT_CONFIDENCE, C.EMBEDDING]
    )
    df[C.SESSION_ID] = [f"s{i}" for i in range(len(df))]
    df["available_at"] = df[C.EVENT_TIMESTAMP]
    return df


def test_decayed_distribution_and_embedding_match_the_formula() -> None:
    cfg = F.FeatureBuildConfig(half_life_days=7.0, window_days=30.0)
    c = _contrib([("v1", T0, "a", 0.8, [1.0, 0.0]), ("v1", T0 + 7 * DAY, "b", 0.5, [0.0, 1.0])])
    out = F.web_intent_timeline(c, C.VISITOR_ID, CLASSES, cfg)
    row = out[out[C.EVENT_TIMESTAMP] == T0 + 7 * DAY].iloc[0]
    # One half-life later the first session weighs 0.8 * 0.5 against 0.5 * 1.
    wa, wb = 0.8 * 0.5, 0.5
    np.testing.assert_allclose(row["decayed"], [wa / (wa + wb), wb / (wa + wb), 0.0], rtol=1e-6)
    # Embedding weights ignore confidence: 0.5 and 1, then unit length.
    e = np.array([0.5, 1.0]) / np.linalg.norm([0.5, 1.0])
    np.testing.assert_allclose(row["embedding"], e, rtol=1e-6)
    assert row["label"] == "b" and row["confidence"] == pytest.approx(0.5)  # latest session
    assert row["sessions_window"] == 2


def test_rows_at_every_change_and_window_expiry() -> None:
    cfg = F.FeatureBuildConfig(window_days=30.0)
    c = _contrib([("v1", T0, "a", 1.0, [1.0, 0.0]), ("v1", T0 + 10 * DAY, "a", 1.0, [1.0, 0.0])])
    out = F.web_intent_timeline(c, C.VISITOR_ID, CLASSES, cfg).set_index(C.EVENT_TIMESTAMP)
    # A row at every session end and every expiry: the 30-day window and the recency windows (6 h, 1 d, 3 d).
    recent = [DAY / 4, DAY, 3 * DAY]
    assert list(out.index) == (
        [T0] + [T0 + w for w in recent] + [T0 + 10 * DAY] + [T0 + 10 * DAY + w for w in recent]
        + [T0 + 30 * DAY, T0 + 40 * DAY]
    )  # fmt: skip
    assert list(out["sessions_window"]) == [1, 1, 1, 1, 2, 2, 2, 2, 1, 0]
    assert list(out["sessions_recent_0"]) == [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]  # 6 h
    assert list(out["sessions_recent_1"]) == [1, 1, 0, 0, 1, 1, 0, 0, 0, 0]  # 1 day
    assert list(out["sessions_recent_2"]) == [1, 1, 1, 0, 1, 1, 1, 0, 0, 0]  # 3 days
    # Expiry leaves the normalised intent unchanged (uniform decay cancels) and keeps the latest label.
    np.testing.assert_allclose(out.loc[T0 + 40 * DAY, "decayed"], [1.0, 0.0, 0.0])
    assert out.loc[T0 + 40 * DAY, "label"] == "a"


def test_customer_link_makes_history_known_only_from_linked_at() -> None:
    link_at = T0 + 5 * DAY
    c = _contrib(
        [("c1", T0, "a", 1.0, [1.0, 0.0]), ("c1", T0 + 9 * DAY, "b", 1.0, [0.0, 1.0])],
        key=C.CUSTOMER_ID,
    )
    c[C.VISITOR_ID] = "v1"
    c["available_at"] = np.maximum(c[C.EVENT_TIMESTAMP], link_at)
    links = pd.DataFrame(
        {C.CUSTOMER_ID: ["c1", "c1"], C.VISITOR_ID: ["v1", "v2"], C.LINKED_AT: [link_at, T0 + 20 * DAY]}
    )
    out = F.web_intent_timeline(c, C.CUSTOMER_ID, CLASSES, links=links).set_index(C.EVENT_TIMESTAMP)
    assert out.index[0] == link_at  # nothing before the first link
    first = out.loc[link_at]
    assert first["label"] == "a" and first["linked_visitors"] == 1 and first["sessions_window"] == 1
    np.testing.assert_allclose(first["embedding"], [1.0, 0.0])  # only the pre-link session
    assert out.loc[T0 + 9 * DAY, "label"] == "b" and out.loc[T0 + 9 * DAY, "sessions_window"] == 2
    assert out.loc[T0 + 20 * DAY, "linked_visitors"] == 2  # a link without sessions still counts


def test_old_session_linked_late_never_enters_the_window_count() -> None:
    link_at = T0 + 45 * DAY
    c = _contrib([("c1", T0, "a", 1.0, [1.0, 0.0])], key=C.CUSTOMER_ID)
    c["available_at"] = link_at
    links = pd.DataFrame({C.CUSTOMER_ID: ["c1"], C.VISITOR_ID: ["v1"], C.LINKED_AT: [link_at]})
    out = F.web_intent_timeline(c, C.CUSTOMER_ID, CLASSES, links=links)
    assert list(out["sessions_window"]) == [0] and out["label"].iloc[0] == "a"


def test_label_outside_classes_is_left_out_of_the_distribution() -> None:
    c = _contrib([("v1", T0, "zzz", 1.0, [1.0, 0.0])])
    out = F.web_intent_timeline(c, C.VISITOR_ID, CLASSES)
    assert out["decayed"].iloc[0] is None and out["label"].iloc[0] == "zzz"


# --- The whole job on tiny files -------------------------------------------------------------------
def _event_rows(
    session: str, visitor: str | None, start: pd.Timestamp, pages: list[str], channel: str = "web"
) -> list[dict]:
    return [
        {
            C.SESSION_ID: session,
            C.EVENT_TIMESTAMP: start + pd.Timedelta(seconds=30 * i),
            C.PAGE_TYPE: page,
            C.VISITOR_ID: visitor,
            C.CUSTOMER_ID: None,
            C.CHANNEL: channel,
            C.DWELL_SECONDS: None if i == len(pages) - 1 else 30.0,
            C.SEARCH_QUERY: "mortgage rates" if page == "search" else None,
        }
        for i, page in enumerate(pages)
    ]


@pytest.fixture
def tiny_inputs(tmp_path: Path, sim_world: World) -> dict[str, Path]:
    """Tiny files of the simulated bank, and its world (every build below reads the same one)."""
    rng = np.random.default_rng(0)
    sessions = [
        ("w1", "v1", T0, ["home", "product_mortgage", "search", "apply_start"]),
        ("w2", "v1", T0 + 2 * DAY, ["product_mortgage", "rates"]),
        ("w3", "v2", T0 + DAY, ["security_center", "report_fraud", "home"]),
        ("w4", "v3", T0 + 3 * DAY, ["product_credit_card"]),
    ]
    events = [r for s, v, t, p in sessions for r in _event_rows(s, v, t, p)]
    events += _event_rows("a1", None, T0, ["app_home", "transfers"], channel="app")
    ev = pd.DataFrame(events).sample(frac=1.0, random_state=1)  # order must not matter
    ev.to_parquet(tmp_path / "events.parquet")
    ends = ev[ev[C.CHANNEL] == "web"].groupby(C.SESSION_ID)[C.EVENT_TIMESTAMP].max().reset_index()
    X = rng.normal(size=(len(ends), 4)).astype(np.float32)
    ends.assign(**{C.EMBEDDING: list(X / np.linalg.norm(X, axis=1, keepdims=True))}).to_parquet(
        tmp_path / "emb.parquet"
    )
    ends.assign(
        **{
            C.INTENT_LABEL: ["a", "a", "b", "c"],
            C.INTENT_CONFIDENCE: np.float32(0.9),
            C.TAXONOMY_VERSION: "t1",
        }
    ).to_parquet(tmp_path / "int.parquet")
    pd.DataFrame(
        {
            C.VISITOR_ID: ["v1", "v2"],
            C.CUSTOMER_ID: ["c1", "c2"],
            C.LINKED_AT: [T0 + DAY, T0 - DAY],
            C.LINK_METHOD: "login",
        }
    ).to_parquet(tmp_path / "links.parquet")
    prof = {
        C.CUSTOMER_ID: ["c1", "c2", "c3"],
        C.EVENT_TIMESTAMP: [T0 - 30 * DAY] * 3,
        "tenure_months": [12, 3, 40],
    }
    prof |= {
        "age": [30, 50, 41],
        "app_sessions_30d": [2, 0, 9],
        "balance_band": ["0-1k", "1k-10k", "250k+"],
        "n_products": [1, 0, 3],
    }
    prof |= {f"has_{p}": [False, False, True] for p in sim_world.products}
    pd.DataFrame(prof).to_parquet(tmp_path / "customers.parquet")
    return {
        "events_path": tmp_path / "events.parquet",
        "embeddings_path": tmp_path / "emb.parquet",
        "intents_path": tmp_path / "int.parquet",
        "links_path": tmp_path / "links.parquet",
        "customers_path": tmp_path / "customers.parquet",
        "world": sim_world,
    }


def _read(out: Path, name: str) -> pd.DataFrame:
    return pq.read_table(out / F.FEATURE_FILES[name]).to_pandas()


def test_build_writes_every_source_with_session_end_times(
    tiny_inputs: dict[str, Path], tmp_path: Path, sim_world: World
) -> None:
    out = tmp_path / "features"
    report = F.build_features(**tiny_inputs, out_dir=out, classes=CLASSES)
    assert report.n_sessions == 5 and report.n_sessions_with_intent == 4 and report.embedding_dim == 4
    # The declaration the sources were built with travels with them (the Feast repo and serving read it).
    assert load_world(out / WORLD_FILE).digest == sim_world.digest
    assert (report.world, report.world_digest) == (sim_world.name, sim_world.digest)
    saved = json.loads((out / F.REPORT_FILE).read_text())
    assert (saved["world"], saved["world_digest"]) == (sim_world.name, sim_world.digest)
    act = _read(out, "session_activity").dropna(subset=[C.EVENT_TIMESTAMP]).set_index(C.SESSION_ID)
    w1 = act.loc["w1"]
    assert w1[C.EVENT_TIMESTAMP] == T0 + pd.Timedelta(seconds=90)  # session END, not start
    assert (
        w1[F.SESSION_N_EVENTS],
        w1[F.SESSION_N_SEARCHES],
        w1[F.SESSION_N_APPLY_PAGES],
        w1[F.SESSION_N_PRODUCT_PAGES],
    ) == (4, 1, 1, 1)
    assert (
        w1[F.SESSION_DURATION_S] == 90.0
        and w1[F.SESSION_MEAN_DWELL_S] == 30.0
        and w1[F.SESSION_N_DISTINCT_PAGES] == 4
    )
    assert act.loc["a1", F.SESSION_CHANNEL] == "app"
    intent = _read(out, "session_intent").dropna(subset=[C.EVENT_TIMESTAMP])
    assert (
        sorted(intent[C.SESSION_ID]) == ["w1", "w2", "w3", "w4"] and intent[C.EMBEDDING].map(len).eq(4).all()
    )
    # Customer c2 was linked before its visitor's only session; c1 after its first session.
    cust = _read(out, "customer_web_intent").dropna(subset=[C.EVENT_TIMESTAMP])
    c1 = cust[cust[C.CUSTOMER_ID] == "c1"].sort_values(C.EVENT_TIMESTAMP)
    assert c1[C.EVENT_TIMESTAMP].iloc[0] == T0 + DAY and c1[F.CUSTOMER_WEB_SESSIONS_30D].iloc[0] == 1
    assert sorted(cust[C.CUSTOMER_ID].unique()) == ["c1", "c2"]  # v3 is never linked
    schema = pq.read_schema(out / F.FEATURE_FILES["customer_profile"])
    assert (
        str(schema.field("tenure_months").type) == "double"
        and str(schema.field("has_mortgage").type) == "bool"
    )
    assert schema.names == [
        C.CUSTOMER_ID,
        C.EVENT_TIMESTAMP,
        *sim_world.profile,
    ]  # declared kinds, declared order
    assert pq.read_schema(out / F.FEATURE_FILES["session_activity"]).names[
        -len(sim_world.page_types) :
    ] == list(sim_world.page_count_fields)
    protos = _read(out, "tile_prototypes").set_index(F.TILE_ID)
    assert (
        protos.loc["mortgage", F.PROTOTYPE_SESSIONS] == 2
        and protos.loc["security_center", F.PROTOTYPE_SESSIONS] == 1
    )
    assert protos.loc["auto_loan", F.PROTOTYPE] is None  # no session visited it
    assert list(protos.index) == list(sim_world.tiles)  # one row per declared tile, in its order
    assert math.isclose(float(np.linalg.norm(protos.loc["mortgage", F.PROTOTYPE])), 1.0, rel_tol=1e-5)


def test_every_entity_has_exactly_one_null_time_anchor(tiny_inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "features"
    F.build_features(**tiny_inputs, out_dir=out, classes=CLASSES)
    for name, key in [
        ("session_activity", C.SESSION_ID),
        ("visitor_web_intent", C.VISITOR_ID),
        ("customer_web_intent", C.CUSTOMER_ID),
        ("customer_profile", C.CUSTOMER_ID),
    ]:
        df = _read(out, name)
        anchors = df[df[C.EVENT_TIMESTAMP].isna()]
        assert sorted(anchors[key]) == sorted(df[key].unique()), name
        assert anchors.drop(columns=[key, C.EVENT_TIMESTAMP]).isna().all().all(), name


def test_partitioned_run_equals_single_partition(tiny_inputs: dict[str, Path], tmp_path: Path) -> None:
    F.build_features(
        **tiny_inputs, out_dir=tmp_path / "one", classes=CLASSES, config=F.FeatureBuildConfig(n_buckets=1)
    )
    F.build_features(
        **tiny_inputs,
        out_dir=tmp_path / "many",
        classes=CLASSES,
        config=F.FeatureBuildConfig(n_buckets=4, batch_rows=3),
    )
    for name in (
        "session_activity",
        "session_intent",
        "visitor_web_intent",
        "customer_web_intent",
        "customer_profile",
    ):
        a, b = (_read(tmp_path / d, name) for d in ("one", "many"))
        key = a.columns[0]
        a, b = (x.astype(str).sort_values([key, C.EVENT_TIMESTAMP]).reset_index(drop=True) for x in (a, b))
        pd.testing.assert_frame_equal(a, b, obj=name)
    assert not list((tmp_path / "many").glob(".spill-*"))  # spill files are cleaned up


def test_bad_inputs_name_the_field(tiny_inputs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="classes"):
        F.build_features(**tiny_inputs, out_dir=tmp_path / "x", classes=["a", "a"])
    with pytest.raises(ValueError, match="half_life_days"):
        F.build_features(
            **tiny_inputs,
            out_dir=tmp_path / "x",
            classes=CLASSES,
            config=F.FeatureBuildConfig(half_life_days=0),
        )
    pd.read_parquet(tiny_inputs["intents_path"]).drop(columns=C.INTENT_LABEL).to_parquet(
        tmp_path / "bad.parquet"
    )
    with pytest.raises(ValueError, match=C.INTENT_LABEL):
        F.build_features(
            **{**tiny_inputs, "intents_path": tmp_path / "bad.parquet"},
            out_dir=tmp_path / "x",
            classes=CLASSES,
        )
    with pytest.raises(FileNotFoundError, match="identity links"):
        F.build_features(
            **{**tiny_inputs, "links_path": tmp_path / "none.parquet"},
            out_dir=tmp_path / "x",
            classes=CLASSES,
        )
    assert not list((tmp_path / "x").glob("*.parquet"))  # a failed run leaves no half-written source


def test_a_declared_profile_column_missing_from_the_data_is_an_error(
    tiny_inputs: dict[str, Path], tmp_path: Path
) -> None:
    """The world promises the column; a customer table without it fails naming it (it used to become a
    column of nulls that the models silently learned nothing from)."""
    pd.read_parquet(tiny_inputs["customers_path"]).drop(columns="age").to_parquet(tmp_path / "cust.parquet")
    with pytest.raises(ContractError, match="age"):
        F.build_features(
            **{**tiny_inputs, "customers_path": tmp_path / "cust.parquet"},
            out_dir=tmp_path / "x",
            classes=CLASSES,
        )
    assert not list((tmp_path / "x").glob("*.parquet"))
    # A value that does not cast to the declared kind is an error naming the column, too.
    pd.read_parquet(tiny_inputs["customers_path"]).assign(age=["thirty", "50", "41"]).to_parquet(
        tmp_path / "cust2.parquet"
    )
    with pytest.raises(ContractError, match="'age'"):
        F.build_features(
            **{**tiny_inputs, "customers_path": tmp_path / "cust2.parquet"},
            out_dir=tmp_path / "y",
            classes=CLASSES,
        )


def test_events_with_undeclared_page_types_are_an_error(tiny_inputs: dict[str, Path], tmp_path: Path) -> None:
    """Raw URLs (the mapping step skipped) would count nowhere: every page count a silent zero."""
    ev = pd.read_parquet(tiny_inputs["events_path"])
    ev.loc[ev.index[0], C.PAGE_TYPE] = "/mortgages/fixed-rate?utm=x"
    ev.to_parquet(tmp_path / "raw.parquet")
    with pytest.raises(ContractError, match="not a page type of world"):
        F.build_features(
            **{**tiny_inputs, "events_path": tmp_path / "raw.parquet"},
            out_dir=tmp_path / "x",
            classes=CLASSES,
        )
    # The OOV token is a page type of every world (validation maps unmatched pages to it).
    ev.loc[ev.index[0], C.PAGE_TYPE] = C.OOV_PAGE_TYPE
    ev.to_parquet(tmp_path / "oov.parquet")
    report = F.build_features(
        **{**tiny_inputs, "events_path": tmp_path / "oov.parquet"}, out_dir=tmp_path / "ok", classes=CLASSES
    )
    assert report.n_events == len(ev)


def test_cli_build(
    tiny_inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sim_world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clicks2intent.cli import main
    from clicks2intent.intent.distill import IntentClassifier

    monkeypatch.delenv("C2I_WORLD", raising=False)

    rng = np.random.default_rng(0)
    IntentClassifier().fit(rng.normal(size=(30, 4)), np.repeat(CLASSES, 10)).save(tmp_path / "intent")

    data = tmp_path / "data"
    data.mkdir()
    for src, dst in (
        ("events_path", "events.parquet"),
        ("links_path", "identity_links.parquet"),
        ("customers_path", "customers.parquet"),
    ):
        tiny_inputs[src].rename(data / dst)
    args = ["features", "build", "--data", str(data), "--embeddings", str(tiny_inputs["embeddings_path"]),
            "--intents", str(tiny_inputs["intents_path"]), "--intent-model", str(tmp_path / "intent"), "--out", str(tmp_path / "out"), "--buckets", "2"]  # fmt: skip
    # A data directory without a world declaration: one line naming the file it looked for.
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(data / WORLD_FILE) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / F.REPORT_FILE).exists()
    # --world names it; without the flag, the data directory's own world.yaml is read.
    write_world(sim_world, tmp_path / "elsewhere.yaml")
    assert main([*args, "--world", str(tmp_path / "elsewhere.yaml")]) == 0
    assert load_world(tmp_path / "out" / WORLD_FILE).digest == sim_world.digest
    write_world(sim_world, data / WORLD_FILE)
    rc = main(args)
    assert rc == 0 and "4 with embedding+intent" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "out").glob("*.parquet")} == set(F.FEATURE_FILES.values())
    assert json.loads((tmp_path / "out" / F.REPORT_FILE).read_text())["classes"] == CLASSES


def test_cli_build_names_a_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A user-fixable problem is one line naming the file, exit code 2, no traceback."""
    from clicks2intent.cli import main

    rc = main(["features", "build", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path / "nope") in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_training_script_runs_the_job_without_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "training" / "build_features.py"
    spec = importlib.util.spec_from_file_location("build_features_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--data", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="nope"):
        script.run(F.FeatureBuildPaths(data_dir=tmp_path / "nope"))


def test_session_baseline_has_funnel_flags_and_the_bag_of_page_types(sim_world: World) -> None:
    from clicks2intent.data.simulator import WEB_PAGES

    assert sim_world.page_types == WEB_PAGES  # the bag covers the reference site map exactly
    assert sim_world.page_count_fields == tuple(N.page_count_field(p) for p in WEB_PAGES)
    ev = pd.DataFrame(
        {
            C.SESSION_ID: ["a", "a", "a", "b", "b"],
            C.EVENT_TIMESTAMP: [T0 + k * pd.Timedelta(seconds=30) for k in range(5)],
            C.PAGE_TYPE: ["product_mortgage", "apply_start", "product_mortgage", "home", "unknown_page"],
            C.DWELL_SECONDS: [10.0, 20.0, None, 5.0, None],
        }
    )
    act, _ = session_stats(ev, sim_world)
    act = act.set_index(C.SESSION_ID)
    assert (
        act.loc["a", N.SESSION_REACHED_APPLY_START] == 1 and act.loc["a", N.SESSION_REACHED_APPLY_FORM] == 0
    )
    assert (
        act.loc["a", "session_pages_product_mortgage"] == 2 and act.loc["a", "session_pages_apply_start"] == 1
    )
    assert act.loc["b", "session_pages_home"] == 1 and act.loc["b", N.SESSION_REACHED_APPLY_START] == 0
    assert act.loc[:, list(sim_world.page_count_fields)].sum(axis=1).tolist() == [
        3,
        1,
    ]  # unknown pages: nowhere
    assert set(sim_world.session_activity_fields) <= set(act.columns)
    assert not {N.page_count_field(p) for p in ("unknown_page", *sim_world.app_page_types)} & set(act.columns)

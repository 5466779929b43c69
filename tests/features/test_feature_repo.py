"""feature_repo/ end to end on a tiny real pipeline: apply, materialize, online and point-in-time reads.

One module-scoped pipeline (simulator → untrained tiny encoder with its TorchScript export → distilled
classifier → ``c2i features build``) feeds a copy of ``feature_repo/`` applied the way ``feast apply``
does it (Feast parses ``feature_definitions.py``). A hand-made customer ``c_pit`` has a visitor with one
session BEFORE its identity link and one AFTER it, so future links and sessions can be caught leaking.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clicks2intent
from clicks2intent.data.simulator import simulator_world
from clicks2intent.features import build as F
from clicks2intent.features import definitions as fo
from clicks2intent.features import store as FS
from clicks2intent.names import columns as C
from clicks2intent.names import features as N

REPO_SRC = Path(__file__).resolve().parents[2] / "feature_repo"
REPO_FILES = ("feature_store.yaml", "feature_store.production.yaml", "feature_definitions.py", ".feastignore")
T1 = pd.Timestamp("2024-05-01 10:00", tz="UTC")  # c_pit's visitor: session before the link
T_LINK = pd.Timestamp("2024-05-05 12:00", tz="UTC")
T3 = pd.Timestamp("2024-05-10 09:00", tz="UTC")  # … and one after it
START, END = pd.Timestamp("2000-01-01", tz="UTC"), pd.Timestamp("2030-01-01", tz="UTC")
SEC = pd.Timedelta(seconds=1)

WORLD = simulator_world()  # the simulated bank's declaration (the pipeline's data are simulated)
# On-demand projections of the embeddings and their lengths (NaN-filled when the entity is unknown).
PROJECTIONS = {
    fo.TILE_AFFINITY: len(WORLD.tiles),
    N.SESSION_TILE_AFFINITY: len(WORLD.tiles),
    N.VISITOR_TILE_AFFINITY: len(WORLD.tiles),
    N.SESSION_NEXT_PAGE: len(WORLD.page_types),
    N.VISITOR_NEXT_PAGE: len(WORLD.page_types),
}


@dataclass
class Pipeline:
    root: Path
    artifacts: Path
    repo: Path
    events: pd.DataFrame
    embeddings: pd.DataFrame  # session_id → embedding (batch path)
    intents: pd.DataFrame  # session_id → label, confidence (batch path)
    embedding_dim: int


def _pit_rows(template: pd.DataFrame) -> pd.DataFrame:
    """Events of visitor v_pit: session pit_s1 at T1 and pit_s3 at T3 (contract dtypes of the template)."""
    rows = []
    for sid, t0, pages in (
        ("pit_s1", T1, ["home", "product_mortgage", "rates"]),
        ("pit_s3", T3, ["product_savings", "savings_calculator", "apply_start"]),
    ):
        for i, page in enumerate(pages):
            rows.append(
                {
                    C.SESSION_ID: sid,
                    C.EVENT_TIMESTAMP: t0 + pd.Timedelta(seconds=40 * i),
                    C.PAGE_TYPE: page,
                    C.VISITOR_ID: "v_pit",
                    C.CUSTOMER_ID: None,
                    C.CHANNEL: "web",
                    C.DWELL_SECONDS: 40.0 if i < 2 else None,
                    C.SEARCH_QUERY: None,
                    C.DEVICE: "desktop",
                    C.REFERRER: "direct",
                }  # fmt: skip
            )
    return pd.DataFrame(rows).astype(template.dtypes.to_dict())


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    import torch

    from clicks2intent.data.simulator import SimulatorConfig, simulate
    from clicks2intent.encoder.embed import SessionEmbedder
    from clicks2intent.encoder.model import EncoderCheckpoint, EncoderConfig, Vocabulary, build_model
    from clicks2intent.encoder.train import save_encoder_dir
    from clicks2intent.intent.distill import IntentClassifier

    root = tmp_path_factory.mktemp("c2i")
    art = root / "artifacts"
    for sub in ("data", "embeddings", "intent"):
        (art / sub).mkdir(parents=True)
    sim = simulate(SimulatorConfig(n_customers=60, seed=3))
    events = pd.concat([sim.events, _pit_rows(sim.events)], ignore_index=True)
    links = pd.concat(
        [
            sim.identity_links,
            pd.DataFrame(
                {
                    C.VISITOR_ID: ["v_pit"],
                    C.CUSTOMER_ID: ["c_pit"],
                    C.LINKED_AT: [T_LINK],
                    C.LINK_METHOD: ["login"],
                }
            ),
        ],
        ignore_index=True,
    )
    customers = pd.concat(
        [sim.customers, sim.customers.iloc[[0]].assign(**{C.CUSTOMER_ID: "c_pit"})], ignore_index=True
    )
    events.to_parquet(art / "data/events.parquet")
    links.to_parquet(art / "data/identity_links.parquet")
    customers.to_parquet(art / "data/customers.parquet")

    # A real (untrained) encoder with its serving export; batch path = embed_events, online = embed_session.
    cfg = EncoderConfig(
        d_model=16, n_heads=2, n_layers=1, d_ff=32, embedding_dim=8, max_len=16, query_buckets=256
    )
    vocab = {
        C.PAGE_TYPE: Vocabulary(sorted(events[C.PAGE_TYPE].unique())),
        C.CHANNEL: Vocabulary(list(C.CHANNELS)),
        C.DEVICE: Vocabulary(["desktop", "mobile", "tablet"]),
    }
    torch.manual_seed(0)
    save_encoder_dir(EncoderCheckpoint(cfg, vocab, build_model(cfg, vocab).eval(), {}), art / "encoder")
    web = events[events[C.CHANNEL] == "web"]
    emb = SessionEmbedder.load(art / "encoder").embed_events(web)
    emb.to_parquet(art / "embeddings/session_embeddings.parquet")
    X = np.stack(emb[C.EMBEDDING].to_numpy())
    truth = sim.session_truth.set_index(C.SESSION_ID)[C.TRUE_INTENT]
    y = emb[C.SESSION_ID].map(truth).fillna("browsing").to_numpy()
    clf = IntentClassifier().fit(X, y, taxonomy_version="t-test")
    clf.save(art / "intent")
    proba = clf.predict_proba(X)
    best = proba.argmax(axis=1)
    intents = pd.DataFrame(
        {
            C.SESSION_ID: emb[C.SESSION_ID],
            C.EVENT_TIMESTAMP: emb[C.EVENT_TIMESTAMP],
            C.INTENT_LABEL: clf.classes_[best],
            C.INTENT_CONFIDENCE: proba[np.arange(len(best)), best].astype(np.float32),
            C.TAXONOMY_VERSION: "t-test",
        }  # fmt: skip
    )
    intents.to_parquet(art / "intent/session_intents.parquet")
    F.build_features(
        art / "data/events.parquet", art / "embeddings/session_embeddings.parquet", art / "intent/session_intents.parquet",
        art / "data/identity_links.parquet", art / "data/customers.parquet", art / "features", list(clf.classes_),
        world=sim.world,
    )  # fmt: skip

    repo = root / "feature_repo"
    repo.mkdir()
    for name in REPO_FILES:
        shutil.copy(REPO_SRC / name, repo / name)
    return Pipeline(
        root,
        art,
        repo,
        events,
        emb.set_index(C.SESSION_ID),
        intents.set_index(C.SESSION_ID),
        cfg.embedding_dim,
    )


def _apply_repo(repo: Path, yaml_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``feast [-f yaml] apply`` runs: Feast parses the repo's .py files and applies them."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    monkeypatch.chdir(repo)  # apply_total chdirs; monkeypatch restores the cwd afterwards
    monkeypatch.syspath_prepend(str(repo))
    sys.modules.pop("feature_definitions", None)
    apply_total(load_repo_config(repo, repo / yaml_name), repo, skip_source_validation=False)
    sys.modules.pop("feature_definitions", None)


@pytest.fixture(scope="module")
def store(pipeline: Pipeline):
    mp = pytest.MonkeyPatch()
    mp.setenv(fo.ARTIFACTS_ENV, str(pipeline.artifacts))
    try:
        _apply_repo(pipeline.repo, "feature_store.yaml", mp)
        mp.chdir(pipeline.root)
        s = FS.open_store(pipeline.repo)
        s.materialize(START, END)
        yield s
    finally:
        mp.undo()


def _unit(v: list[float]) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# --- apply / online -------------------------------------------------------------------------------
def test_apply_registers_every_object(store) -> None:
    assert {e.name for e in store.list_entities()} == {"session", "visitor", "customer"}
    assert {v.name for v in store.list_feature_views()} == {
        "session_activity",
        "session_intent",
        "visitor_web_intent",
        "customer_web_intent",
        "customer_profile",
    }
    assert {v.name for v in store.list_on_demand_feature_views()} == {
        "inflight_session_intent",
        "tile_affinity",
        "session_affinity",
    }
    assert {s.name for s in store.list_feature_services()} == set(fo.SERVICES)


def test_online_features_for_every_service(store, pipeline: Pipeline) -> None:
    visitor_session = pipeline.events[pipeline.events[C.CHANNEL] == "web"].iloc[0]
    known = {
        C.CUSTOMER_ID: "c_pit",
        C.SESSION_ID: str(visitor_session[C.SESSION_ID]),
        C.VISITOR_ID: str(visitor_session[C.VISITOR_ID]),
    }
    unknown = {C.CUSTOMER_ID: "nobody", C.SESSION_ID: "no-session", C.VISITOR_ID: "no-visitor"}
    request = {fo.CANDIDATE_TILES: list(WORLD.tiles)}
    for name in fo.SERVICES:
        out = FS.online_features(store, name, [known, unknown], request=request)
        names = [f.name for p in store.get_feature_service(name).feature_view_projections for f in p.features]
        for feature in names:
            assert out[feature][0] is not None, (name, feature)  # known entity: a value
            if feature in PROJECTIONS:  # fixed-length projections: the unknown entity's are all NaN
                assert len(out[feature][0]) == PROJECTIONS[feature] and all(np.isnan(out[feature][1]))
            else:
                assert out[feature][1] is None, (name, feature)  # unknown entity: null, not an error
    # The online customer row is the latest one: both sessions, after the 30-day window passed.
    latest = FS.online_features(store, fo.TILE_RANKER_V1, [{C.CUSTOMER_ID: "c_pit"}], request=request)
    assert latest[F.CUSTOMER_LINKED_VISITORS] == [1] and latest[F.CUSTOMER_WEB_SESSIONS_30D] == [0]
    assert latest[F.CUSTOMER_INTENT_LABEL] == [pipeline.intents.loc["pit_s3", C.INTENT_LABEL]]


def test_inflight_intent_equals_the_batch_pipeline(store, pipeline: Pipeline) -> None:
    web = pipeline.events[pipeline.events[C.CHANNEL] == "web"]
    sessions = ["pit_s1", "pit_s3", *web[C.SESSION_ID].drop_duplicates().iloc[:4]]
    rows = [FS.inflight_request(web[web[C.SESSION_ID] == s]) for s in sessions]
    refs = [
        f"{fo.INFLIGHT_SESSION_INTENT}:{f}"
        for f in (
            fo.INFLIGHT_EMBEDDING,
            fo.INFLIGHT_INTENT_LABEL,
            fo.INFLIGHT_INTENT_CONFIDENCE,
            N.INFLIGHT_UNKNOWN_PAGE_SHARE,
        )
    ]
    out = store.get_online_features(features=refs, entity_rows=rows).to_dict()
    for i, s in enumerate(sessions):
        np.testing.assert_allclose(
            out[fo.INFLIGHT_EMBEDDING][i], pipeline.embeddings.loc[s, C.EMBEDDING], atol=1e-5
        )
        assert out[fo.INFLIGHT_INTENT_LABEL][i] == pipeline.intents.loc[s, C.INTENT_LABEL], s
        assert out[fo.INFLIGHT_INTENT_CONFIDENCE][i] == pytest.approx(
            float(pipeline.intents.loc[s, C.INTENT_CONFIDENCE]), abs=1e-5
        )
        assert out[N.INFLIGHT_UNKNOWN_PAGE_SHARE][i] == 0.0  # every page is one the encoder knows


# --- point in time --------------------------------------------------------------------------------
def test_future_link_or_session_never_leaks(store, pipeline: Pipeline) -> None:
    service = store.get_feature_service(fo.TILE_RANKER_V1)
    end_s3 = pipeline.embeddings.loc["pit_s3", C.EVENT_TIMESTAMP]  # pit_s3 is known from its END
    times = [T_LINK - SEC, T_LINK, end_s3 - SEC, end_s3]
    entity = pd.DataFrame(
        {
            C.CUSTOMER_ID: ["c_pit"] * 4 + ["nobody"],
            C.EVENT_TIMESTAMP: times + [end_s3],
            fo.CANDIDATE_TILES: [list(WORLD.tiles)] * 5,
        }
    )
    h = FS.historical_features(store, entity, service)
    assert list(h[C.CUSTOMER_ID]) == list(entity[C.CUSTOMER_ID])  # one row per entity row, in order
    before, at_link, before_s3, after_s3, nobody = (h.iloc[i] for i in range(5))
    # Before the link: no web intent, but the row survives with its profile (Feast would drop it
    # without the anchor rows).
    assert before[F.CUSTOMER_WEB_EMBEDDING] is None and pd.isna(before[F.CUSTOMER_LINKED_VISITORS])
    assert not pd.isna(before["age"]) and all(np.isnan(before[fo.TILE_AFFINITY]))
    # From the link on: the pre-link session only; the later session is not there yet.
    emb_s1 = _unit(pipeline.embeddings.loc["pit_s1", C.EMBEDDING])
    for row in (at_link, before_s3):
        assert row[F.CUSTOMER_LINKED_VISITORS] == 1 and row[F.CUSTOMER_WEB_SESSIONS_30D] == 1
        np.testing.assert_allclose(row[F.CUSTOMER_WEB_EMBEDDING], emb_s1, atol=1e-6)
        assert row[F.CUSTOMER_INTENT_LABEL] == pipeline.intents.loc["pit_s1", C.INTENT_LABEL]
        assert not any(np.isnan(row[fo.TILE_AFFINITY]))
    # After the second session ends: both sessions.
    assert after_s3[F.CUSTOMER_WEB_SESSIONS_30D] == 2
    assert after_s3[F.CUSTOMER_INTENT_LABEL] == pipeline.intents.loc["pit_s3", C.INTENT_LABEL]
    assert not np.allclose(after_s3[F.CUSTOMER_WEB_EMBEDDING], emb_s1, atol=1e-3)
    # Unknown customer: nulls, not an error.
    assert nobody[F.CUSTOMER_WEB_EMBEDDING] is None and pd.isna(nobody["age"])


def test_sessions_are_known_only_after_they_end(store, pipeline: Pipeline) -> None:
    end_s3 = pipeline.embeddings.loc["pit_s3", C.EVENT_TIMESTAMP]
    entity = pd.DataFrame(
        {
            C.SESSION_ID: ["pit_s3", "pit_s3", "pit_s3"],
            C.VISITOR_ID: ["v_pit"] * 3,
            C.EVENT_TIMESTAMP: [T1 + SEC * 100, end_s3 - SEC, end_s3],
        }
    )
    h = FS.historical_features(
        store,
        pd.concat([entity, entity.iloc[[2]]], ignore_index=True),
        store.get_feature_service(fo.CONVERSION_V1),
    )
    assert len(h) == 4  # a repeated (key, time) row is not collapsed
    assert h[C.EMBEDDING].iloc[0] is None and h[C.EMBEDDING].iloc[1] is None  # before the session ended
    np.testing.assert_allclose(
        h[C.EMBEDDING].iloc[2], pipeline.embeddings.loc["pit_s3", C.EMBEDDING], atol=1e-6
    )
    # The visitor aggregate before pit_s3 ended holds pit_s1 only.
    assert h[F.VISITOR_SESSIONS_30D].iloc[1] == 1 and h[F.VISITOR_SESSIONS_30D].iloc[2] == 2
    np.testing.assert_allclose(
        h[F.VISITOR_EMBEDDING_DECAYED].iloc[1],
        _unit(pipeline.embeddings.loc["pit_s1", C.EMBEDDING]),
        atol=1e-6,
    )


# --- production config: Redis online store + SQL registry on PostgreSQL -----------------------------
def _require_services() -> None:
    reasons = [r for r in (FS.service_available("redis"), FS.service_available("postgres")) if r]
    if reasons:
        message = "production stores unavailable: " + "; ".join(reasons)
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must run the services tests)")
        pytest.skip(message)


@pytest.mark.services
def test_production_config_redis_and_sql_registry(
    store, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_services()
    monkeypatch.setenv(fo.ARTIFACTS_ENV, str(pipeline.artifacts))
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    project = f"c2i_test_{uuid.uuid4().hex[:10]}"
    cfg = FS.load_config(pipeline.repo / FS.PRODUCTION_YAML)
    assert cfg["online_store"]["type"] == FS.REDIS_STORE_TYPE and cfg["registry"]["registry_type"] == "sql"
    FS.write_config(pipeline.repo / "feature_store.test.yaml", {**cfg, "project": project})
    _apply_repo(pipeline.repo, "feature_store.test.yaml", monkeypatch)
    prod = FS.open_store(pipeline.repo, pipeline.repo / "feature_store.test.yaml")
    try:
        assert {s.name for s in prod.list_feature_services()} == set(fo.SERVICES)
        prod.materialize(START, END)
        assert any(client.scan_iter(match=f"*{project}", count=1000))  # Redis keys end with the project
        rows = [
            {C.CUSTOMER_ID: "c_pit", C.SESSION_ID: "pit_s3", C.VISITOR_ID: "v_pit"},
            {C.CUSTOMER_ID: "nobody", C.SESSION_ID: "x", C.VISITOR_ID: "y"},
        ]
        request = {fo.CANDIDATE_TILES: list(WORLD.tiles)}
        for name in fo.SERVICES:
            redis_out = FS.online_features(prod, name, rows, request=request)
            sqlite_out = FS.online_features(store, name, rows, request=request)
            assert redis_out.keys() == sqlite_out.keys()
            for key in redis_out:
                a, b = redis_out[key], sqlite_out[key]
                if key in PROJECTIONS:
                    np.testing.assert_allclose(
                        np.array(a, dtype=float), np.array(b, dtype=float), equal_nan=True
                    )
                else:
                    assert a == b, (name, key)
        # A second store on the same registry sees the project (the registry lives in PostgreSQL).
        assert (
            FS.production_store(pipeline.repo, project=project).get_feature_service(fo.TILE_RANKER_V1).name
            == fo.TILE_RANKER_V1
        )
    finally:
        FS.drop_project(prod)
    assert not list(client.scan_iter(match=f"*{project}", count=1000))  # nothing of the project is left


# --- the platform engineer's CLI workflow -------------------------------------------------------------
@pytest.mark.slow
def test_feast_cli_apply_then_materialize_and_c2i_online_without_torch(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    repo = tmp_path / "feature_repo"
    repo.mkdir()
    for name in REPO_FILES:
        shutil.copy(REPO_SRC / name, repo / name)
    (tmp_path / "artifacts").symlink_to(pipeline.artifacts)  # ../artifacts/features, as in the checkout
    env = {
        **os.environ,
        fo.ARTIFACTS_ENV: str(pipeline.artifacts),
        "PYTHONPATH": str(Path(clicks2intent.__file__).parents[1]),
    }

    def run(*args: str) -> str:
        p = subprocess.run(
            [sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
        )
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
        return p.stdout

    # After `feast apply` (Feast's inference of the on-demand views runs their transforms, and the session
    # affinities read the encoder's checkpoint with torch), the rest runs as in a feature-store runtime
    # without the `torch` extra: any import of torch fails (Feast's own torch_wrapper tolerates that; a
    # module of ours that needed torch would fail the command).
    no_torch = "import sys; sys.modules['torch'] = None; "
    feast = ("-c", no_torch + "from feast.cli.cli import cli; sys.argv[0] = 'feast'; sys.exit(cli())")
    # The repo's online store is named by class path, so Feast applies without its SQLite-only plan/diff
    # printout ("Created feature service ..."): the registry is asked instead.
    assert "Deploying infrastructure for" in run("-m", "feast.cli.cli", "apply")
    assert "tile_ranker_v1" in run(*feast, "feature-services", "list")
    run(*feast, "materialize", "2024-01-01T00:00:00", "2024-06-01T00:00:00")
    run(*feast, "materialize-incremental", "2030-01-01T00:00:00")
    c2i = ("-c", no_torch + "from clicks2intent.cli import main; sys.exit(main())")  # the `c2i` script
    # The world (its tiles, its Feast prefix) is read beside the sources, as the repo's definitions read it.
    out = run(
        *c2i,
        "features",
        "online",
        "--repo",
        ".",
        "--features",
        "../artifacts/features",
        "--customer-id",
        "c_pit",
    )
    assert (
        "customer_web_embedding" in out and "tile_affinity" in out and "tiles by web-intent affinity" in out
    )
    assert re.search(r"customer_linked_visitors\s+1\n", out)


def _online_tables(repo: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(repo / "data" / "online_store.db")
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")]
        return {n: conn.execute(f'SELECT * FROM "{n}" ORDER BY 1, 2').fetchall() for n in names}
    finally:
        conn.close()


@pytest.mark.slow
def test_make_runtime_materializes_the_same_rows_without_torch_under_python_O(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """The README's scheduled job: ``make runtime`` (the package installed without its torch extra,
    bytecode for -O too), then its ``feast materialize`` under PYTHONOPTIMIZE=1 writes what the main
    venv's writes, on a registry the main venv applied (apply runs the on-demand views: torch)."""
    root = REPO_SRC.parent
    venv = tmp_path / "runtime"
    made = subprocess.run(
        ["make", "--no-print-directory", "-C", str(root), "runtime", f"RUNTIME_VENV={venv}"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    assert (
        subprocess.run([venv / "bin" / "python", "-c", "import torch"], capture_output=True).returncode != 0
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONOPTIMIZE")}
    env[fo.ARTIFACTS_ENV] = str(pipeline.artifacts)
    main_env = {**env, "PYTHONPATH": str(Path(clicks2intent.__file__).parents[1])}
    apply = [sys.executable, "-m", "feast.cli.cli", "apply"]
    window = ("materialize", "2024-01-01T00:00:00", "2030-01-01T00:00:00")
    tables = {}
    for name, feast in (
        ("main", [sys.executable, "-m", "feast.cli.cli"]),
        ("runtime", [str(venv / "bin" / "feast")]),
    ):
        repo = tmp_path / name / "feature_repo"
        repo.mkdir(parents=True)
        for file in REPO_FILES:
            shutil.copy(REPO_SRC / file, repo / file)
        (repo.parent / "artifacts").symlink_to(pipeline.artifacts)
        for argv, run_env in (
            (apply, main_env),
            ([*feast, *window], main_env if name == "main" else {**env, "PYTHONOPTIMIZE": "1"}),
        ):
            done = subprocess.run(
                argv, cwd=repo, capture_output=True, text=True, timeout=600, env=run_env
            )  # fmt: skip
            assert done.returncode == 0, (name, argv, done.stdout[-2000:] + done.stderr[-4000:])
        if name == "runtime":  # the installed package, not this checkout's sources
            where = subprocess.run(
                [venv / "bin" / "python", "-c", "import clicks2intent; print(clicks2intent.__file__)"],
                capture_output=True, text=True, env=env,
            ).stdout  # fmt: skip
            assert where.startswith(str(venv)), where
        tables[name] = _online_tables(repo)
    assert tables["main"] and all(tables["main"].values())
    assert tables["runtime"] == tables["main"]

"""The tiny real deployment both serving test modules run against (built once per test session).

Built the way ``make demo`` does: simulated data, an encoder, a distilled intent classifier, the Feast
sources, a real Feast repo (apply + materialize into SQLite) and both XGBoost models in a temporary
BentoML store.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names.paths import ArtifactLayout

PIPELINE_EMBEDDING_DIM = 8
TILE_SERVICE, CONVERSION_SERVICE = N.TILE_RANKER_V1, N.CONVERSION_V1


# --- the tiny pipeline (real encoder, classifier, Feast repo, models) -----------------------------
_REPO_YAML = """project: c2i_serving_test
provider: local
registry: data/registry.db
online_store:
  type: clicks2intent.features.online_stores.Clicks2IntentSqliteOnlineStore
  path: data/online_store.db
  layout: wide
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def build_serving_pipeline(out: Path) -> Path:
    """Write a complete tiny deployment under ``out`` (see the module docstring); returns ``out``."""
    from feast import FeatureStore

    from clicks2intent.data.simulator import SimulatorConfig, simulate, write_simulation
    from clicks2intent.encoder.embed import SessionEmbedder
    from clicks2intent.encoder.model import EncoderConfig
    from clicks2intent.encoder.train import TrainConfig, save_encoder_dir, train_encoder
    from clicks2intent.features.build import build_features
    from clicks2intent.features.definitions import build, file_sources
    from clicks2intent.intent.distill import IntentClassifier
    from clicks2intent.intent.inputs import session_texts
    from clicks2intent.models.inputs import model_feature_names
    from clicks2intent.models.store import file_version, save_feature_model, save_serving_artifacts
    from clicks2intent.models.training_sets import (
        CONVERSION,
        TILE_RANKING,
        build_training_set,
        read_task_entities,
    )
    from clicks2intent.models.xgb import train_feature_model

    layout = ArtifactLayout(out)
    sim = simulate(SimulatorConfig(n_customers=120, days=30, seed=0))
    write_simulation(sim, layout.data)
    enc_cfg = EncoderConfig(
        d_model=16,
        n_heads=2,
        n_layers=1,
        d_ff=32,
        embedding_dim=PIPELINE_EMBEDDING_DIM,
        max_len=16,
        query_buckets=256,
    )
    trained = train_encoder(
        sim.events, enc_cfg, TrainConfig(epochs=1, max_steps=2, batch_size=32, device="cpu"), progress=False
    )
    save_encoder_dir(trained.checkpoint, layout.encoder)
    emb = SessionEmbedder.load(layout.encoder, device="cpu").embed_events(sim.events)
    layout.embeddings.parent.mkdir()
    emb.to_parquet(layout.embeddings)
    # The distilled classifier, fitted on the simulator's hidden intents (stand-in for LLM labels); it reads
    # the embedding and the sessions' pages and search words, as `c2i taxonomy distill` trains it.
    truth = sim.session_truth.set_index(C.SESSION_ID)[C.TRUE_INTENT]
    X = np.stack(emb[C.EMBEDDING].to_numpy())
    y = truth.reindex(emb[C.SESSION_ID]).fillna("other").astype(str).to_numpy()
    by_id = session_texts(sim.events, emb[C.SESSION_ID])
    texts = [by_id[str(s)] for s in emb[C.SESSION_ID]]
    clf = IntentClassifier(max_iter=300, page_types=list(sim.world.page_types))
    clf.fit(X, y, taxonomy_version="test-v1", texts=texts)
    clf.save(layout.intent)
    p = clf.predict_proba(X, texts)
    pd.DataFrame(
        {
            C.SESSION_ID: emb[C.SESSION_ID],
            C.EVENT_TIMESTAMP: emb[C.EVENT_TIMESTAMP],
            C.INTENT_LABEL: clf.classes_[p.argmax(axis=1)],
            C.INTENT_CONFIDENCE: p.max(axis=1).astype(float),
            C.TAXONOMY_VERSION: "test-v1",
        }
    ).to_parquet(layout.session_intents)
    build_features(
        layout.events,
        layout.embeddings,
        layout.session_intents,
        layout.identity_links,
        layout.customers,
        layout.features,
        classes=[str(c) for c in clf.classes_],
        world=sim.world,
    )
    repo = out / "feature_repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(_REPO_YAML)
    objects = build(
        file_sources(str(layout.features)),
        embedding_dim=PIPELINE_EMBEDDING_DIM,
        world=sim.world,
        artifacts_dir=str(out),
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply(objects.all())
    end = sim.events[C.EVENT_TIMESTAMP].max() + pd.Timedelta(days=1)
    store.materialize(end - pd.Timedelta(days=400), end)
    for task, service in ((TILE_RANKING, TILE_SERVICE), (CONVERSION, CONVERSION_SERVICE)):
        tset = build_training_set(
            store, task, read_task_entities(task, layout.data, sim.world), service, sim.world
        )
        names = model_feature_names(tset.feature_names)
        model = train_feature_model(
            tset.split.train, tset.split.valid, names, "label", tset.classes,
            feature_service=service, n_estimators=10, max_depth=3, n_jobs=1,
        )  # fmt: skip
        meta = {
            "task": task,
            "feature_service": service,
            "feature_names": names,
            "encoder_version": file_version(layout.checkpoint),
            "taxonomy_version": "test-v1",
            "world": sim.world.name,
            "world_digest": sim.world.digest,
            "metrics": {},
            "training_window": "test",
        }
        save_feature_model(model, meta, home=layout.bentoml_home)
    # What a bento carries for the in-flight path: encoder + classifier + tile prototypes + world.
    save_serving_artifacts(layout.encoder, layout.intent, layout.features, home=layout.bentoml_home)
    (out / "DONE").write_text("ok")
    return out


def shared_pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline of this pytest session: built by the first test module that asks, reused after."""
    out = tmp_path_factory.getbasetemp() / "c2i_serving_pipeline"
    if (out / "DONE").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return build_serving_pipeline(out)


def pipeline_ids(out: Path) -> dict[str, str]:
    """A customer with linked web intent, a visitor with web intent, and ids nobody has."""
    layout = ArtifactLayout(out)
    cust = pd.read_parquet(layout.feature_file(N.CUSTOMER_WEB_INTENT))
    cust = cust[cust[N.CUSTOMER_WEB_EMBEDDING].notna()]
    vis = pd.read_parquet(layout.feature_file(N.VISITOR_WEB_INTENT))
    vis = vis[vis[N.VISITOR_EMBEDDING_DECAYED].notna()]
    return {
        "customer": str(cust[C.CUSTOMER_ID].iloc[-1]),
        "visitor": str(vis[C.VISITOR_ID].iloc[-1]),
        "unknown_customer": "no-such-customer",
        "unknown_visitor": "no-such-visitor",
    }


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny deployment's root (an ``artifacts/`` layout plus ``feature_repo/``)."""
    return shared_pipeline_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def ids(pipeline: Path) -> dict[str, str]:
    return pipeline_ids(pipeline)


@pytest.fixture
def embedding_dim() -> int:
    """The tiny encoder's embedding size."""
    return PIPELINE_EMBEDDING_DIM


@contextmanager
def another_app(service_cls: Any) -> Iterator[Any]:
    """A test client of a second ASGI app of the service in this process (a worker only ever builds one).

    BentoML keeps one current service instance per process (``bentoml.get_current_service()``), which the
    mounted ``/rank_tiles`` route answers from; a second app's start-up replaces it and its shutdown
    clears it, so the instance of the app already running is put back afterwards."""
    import bentoml
    from _bentoml_sdk.service import set_current_service
    from starlette.testclient import TestClient

    try:
        previous = bentoml.get_current_service()
    except Exception:  # BentoMLException: none running yet
        previous = None
    try:
        with TestClient(service_cls.to_asgi()) as client:
            yield client
    finally:
        set_current_service(previous)


@pytest.fixture
def second_app() -> Any:
    """:func:`another_app`, for tests that start a second app of the service."""
    return another_app

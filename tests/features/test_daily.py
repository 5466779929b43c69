"""The daily job (``c2i features daily``): a second day of simulated data appended with the trained models.

One tiny world, simulated and split: the history runs the pipeline (a few-step encoder, a classifier
distilled from truth labels standing in for the LLM's, ``features build``), then the daily job adds the
last day. Its sources must equal a full ``features build`` over history + day, a re-run must change
nothing, and a run killed after its sources were renamed must be finished by the next one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clicks2intent.names import columns as C
from clicks2intent.names.paths import FEATURE_FILES, ArtifactLayout

DAY_START = "2024-06-29T00:00:00"  # the simulator's window ends 2024-06-30: its last day
APPENDED = ("session_activity", "session_intent", "visitor_web_intent", "customer_web_intent")


@pytest.fixture(scope="module")
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated bank's history through the pipeline (no LLM, no Feast), and its last day apart."""
    from clicks2intent.data.simulator import SimulatorConfig, generate
    from clicks2intent.data.world import load_world
    from clicks2intent.encoder import runtime
    from clicks2intent.encoder.model import EncoderConfig
    from clicks2intent.encoder.train import TrainConfig, save_encoder_dir, train_encoder
    from clicks2intent.features.build import FeatureBuildPaths, build_feature_sources
    from clicks2intent.features.daily import split_off_day
    from clicks2intent.intent.distill import distill, write_intents
    from clicks2intent.intent.inputs import session_texts

    root = tmp_path_factory.mktemp("daily")
    art = ArtifactLayout(root / "artifacts")
    generate(SimulatorConfig(n_customers=400, seed=5, days=12), art.data)
    counts = split_off_day(art.data, root / "day", DAY_START)
    assert counts["day_sessions"] > 20 and counts["day_links"] >= 1
    events = pq.read_table(art.events)
    cfg = EncoderConfig(
        d_model=16, n_heads=2, n_layers=1, d_ff=32, embedding_dim=8, max_len=12, query_buckets=256
    )
    t_cfg = TrainConfig(max_steps=3, batch_size=32, warmup_steps=1, evals_per_epoch=1)
    save_encoder_dir(train_encoder(events, cfg, t_cfg, channel="web", progress=False).checkpoint, art.encoder)
    runtime.embed_file(art.encoder, art.events, art.embeddings, channel="web", progress=False)
    embeddings = pd.read_parquet(art.embeddings)
    truth = pd.read_parquet(art.session_truth)
    labelled = truth[truth[C.SESSION_ID].isin(embeddings[C.SESSION_ID])].head(300)
    labels = pd.DataFrame(
        {C.SESSION_ID: labelled[C.SESSION_ID], "label_id": labelled[C.TRUE_INTENT], "status": "ok",
         C.TAXONOMY_VERSION: "t1"}
    )  # fmt: skip
    world = load_world(art.world)
    texts = session_texts(events.to_pandas(), embeddings[C.SESSION_ID])
    clf, intents, _ = distill(labels, embeddings, texts=texts, page_types=list(world.page_types))
    clf.save(art.intent)
    write_intents(intents, art.session_intents)
    build_feature_sources(FeatureBuildPaths(data_dir=art.data, embeddings=art.embeddings,
                                            intents=art.session_intents, intent_model=art.intent,
                                            out_dir=art.features))  # fmt: skip
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "w"
    shutil.copytree(root, dst)
    return dst


def _config(root: Path, **kwargs: Any) -> Any:
    from clicks2intent.features.daily import DailyConfig

    return DailyConfig(day_dir=root / "day", artifacts=root / "artifacts", **({"repo": None} | kwargs))


def _frame(path: Path) -> pd.DataFrame:
    df = pq.read_table(path).to_pandas()
    key = df.columns[0]
    df["_anchor"] = df[C.EVENT_TIMESTAMP].isna()
    return df.sort_values([key, "_anchor", C.EVENT_TIMESTAMP], kind="stable").reset_index(drop=True)


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame, name: str) -> None:
    """Equal rows (sorted by key and time); floats and vectors to float32 rounding."""
    assert list(a.columns) == list(b.columns), name
    assert len(a) == len(b), f"{name}: {len(a)} vs {len(b)} rows"
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype == object and any(isinstance(v, np.ndarray | list) for v in x.dropna().head(50)):
            assert (x.isna() == y.isna()).all(), f"{name}.{col}: nulls differ"
            for u, v in zip(x.dropna(), y.dropna(), strict=True):
                np.testing.assert_allclose(
                    np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6, err_msg=f"{name}.{col}"
                )
        elif pd.api.types.is_float_dtype(x):
            np.testing.assert_allclose(
                x.to_numpy(), y.to_numpy(), rtol=1e-6, atol=1e-9, err_msg=f"{name}.{col}"
            )
        else:
            pd.testing.assert_series_equal(x, y, check_names=False, obj=f"{name}.{col}")


def full_build_of_history_and_day(root: Path, out: Path, day: str) -> None:
    """``features build`` over history + the day (the day's embeddings and labels: the daily job's)."""
    from clicks2intent.data.world import load_world
    from clicks2intent.features.build import build_features, load_classes

    art = ArtifactLayout(root / "artifacts")
    days = art.features / "days" / day
    both = out / "inputs"
    both.mkdir(parents=True)
    for name, a, b in (
        ("events", art.events, root / "day/events.parquet"),
        ("links", art.identity_links, root / "day/identity_links.parquet"),
        ("embeddings", art.embeddings, days / "embeddings.parquet"),
        ("intents", art.session_intents, days / "intents.parquet"),
    ):
        ta, tb = pq.read_table(a), pq.read_table(b)
        pq.write_table(
            pa.concat_tables([ta, tb.select(ta.column_names).cast(ta.schema)]), both / f"{name}.parquet"
        )
    build_features(
        events_path=both / "events.parquet", embeddings_path=both / "embeddings.parquet",
        intents_path=both / "intents.parquet", links_path=both / "links.parquet", customers_path=art.customers,
        out_dir=out / "features", classes=load_classes(art.intent), world=load_world(art.features / "world.yaml"),
    )  # fmt: skip


def test_the_day_appended_equals_a_full_build_and_a_rerun_changes_nothing(world_root: Path, tmp_path: Path):
    from clicks2intent.features.daily import run_daily

    root = _copy(world_root, tmp_path)
    features = ArtifactLayout(root / "artifacts").features
    report = run_daily(_config(root))
    assert report.day == "2024-06-29" and not report.already_applied
    assert report.n_embedded > 0 and report.n_labelled == report.n_embedded and report.n_new_links >= 1
    assert report.visitors_recomputed > 0 and report.customers_recomputed > 0
    full_build_of_history_and_day(root, tmp_path / "full", report.day)
    for name in APPENDED:
        got, want = (
            _frame(features / FEATURE_FILES[name]),
            _frame(tmp_path / "full/features" / FEATURE_FILES[name]),
        )
        assert_same_rows(got, want, name)

    before = {n: (features / FEATURE_FILES[n]).read_bytes() for n in APPENDED}
    again = run_daily(_config(root))
    assert again.already_applied and again.rows_written == {}
    assert {n: (features / FEATURE_FILES[n]).read_bytes() for n in APPENDED} == before
    assert not list(features.glob(".daily-*")) and not list(features.glob(".*.tmp"))


def test_the_daily_command_runs_without_torch(
    world_root: Path, tmp_path: Path, c2i_without_torch: list[str]
) -> None:
    """The feature-store runtime (``make runtime``: no torch extra) runs the daily job: the encoder's ONNX
    export embeds, the distilled classifier labels, and the sources equal those of the job run here."""
    from clicks2intent.features.daily import run_daily

    here, there = _copy(world_root, tmp_path / "here"), _copy(world_root, tmp_path / "there")
    run_daily(_config(here))
    done = subprocess.run(
        [*c2i_without_torch, "features", "daily", "--day", str(there / "day"),
         "--artifacts", str(there / "artifacts"), "--no-materialize"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for name in APPENDED:
        got, want = (
            _frame(ArtifactLayout(r / "artifacts").features / FEATURE_FILES[name]) for r in (there, here)
        )
        assert_same_rows(got, want, name)


def test_a_run_killed_after_its_renames_is_finished_by_the_next(world_root: Path, tmp_path: Path) -> None:
    """No applied.json (the kill came after the sources were renamed): the next run applies the day again
    over sources that already hold it, and the rows are the same (no duplicate, nothing lost)."""
    from clicks2intent.features.daily import APPLIED_FILE, run_daily

    root = _copy(world_root, tmp_path)
    features = ArtifactLayout(root / "artifacts").features
    first = run_daily(_config(root))
    once = {n: _frame(features / FEATURE_FILES[n]) for n in APPENDED}
    (features / "days" / first.day / APPLIED_FILE).unlink()
    second = run_daily(_config(root))
    assert not second.already_applied
    assert second.rows_replaced["session_activity"] == first.rows_written["session_activity"]
    for name in APPENDED:
        assert_same_rows(_frame(features / FEATURE_FILES[name]), once[name], name)


def test_inputs_missing_or_from_another_model_are_one_clear_error(world_root: Path, tmp_path: Path) -> None:
    from clicks2intent.errors import ArtifactError
    from clicks2intent.features.daily import run_daily

    root = _copy(world_root, tmp_path)
    (root / "day/events.parquet").rename(root / "day/other.parquet")
    with pytest.raises(ArtifactError, match="the day's events"):
        run_daily(_config(root))


def test_cli_help_lists_the_runtimes_of_c2i_embed() -> None:
    from clicks2intent.cli import features
    from clicks2intent.encoder.runtime import RUNTIMES

    assert features.RUNTIMES == RUNTIMES


@pytest.mark.slow
def test_materialize_incremental_brings_the_day_online_and_a_rerun_touches_nothing(
    world_root: Path, tmp_path: Path
) -> None:
    from clicks2intent.cli import main
    from clicks2intent.features import definitions as fo
    from clicks2intent.features import store as FS
    from clicks2intent.features.daily import run_daily

    root = _copy(world_root, tmp_path)
    art = ArtifactLayout(root / "artifacts")
    repo = root / "repo"
    repo.mkdir()
    FS.write_config(repo / "feature_store.yaml", {
        "project": "c2i_daily", "provider": "local", "registry": "registry.db",
        "online_store": {"type": "sqlite", "path": "online.db"}, "offline_store": {"type": "duckdb"},
        "batch_engine": {"type": "clicks2intent.features.engines.ArrowComputeEngine"},
        "entity_key_serialization_version": 3})  # fmt: skip
    store = FS.open_store(repo)
    objects = fo.build_from_features(art.features)
    store.apply([o for o in objects.all() if o is not objects.inflight_session_intent])
    assert main(["features", "materialize", "--repo", str(repo), "2000-01-01T00:00:00", DAY_START]) == 0
    report = run_daily(_config(root, repo=repo))
    assert set(report.materialized_views) >= {"session_intent", "visitor_web_intent", "customer_web_intent"}
    intents = pd.read_parquet(art.features / "days" / report.day / "intents.parquet")
    sid = str(intents[C.SESSION_ID].iloc[0])
    store = FS.open_store(repo)
    got = store.get_online_features([f"session_intent:{C.INTENT_LABEL}"], [{C.SESSION_ID: sid}]).to_dict()
    assert got[C.INTENT_LABEL] == [intents[C.INTENT_LABEL].iloc[0]]
    registry = (repo / "registry.db").read_bytes()
    again = run_daily(_config(root, repo=repo))
    assert again.already_applied and again.materialized_views == []
    assert (repo / "registry.db").read_bytes() == registry

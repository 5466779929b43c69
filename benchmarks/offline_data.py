"""Synthetic feature sources and task entity rows for the offline benchmarks (no model needed).

Every file has the exact schema ``c2i features build`` writes for a world declaration
(``features.build.source_schemas(world)``, default the simulated bank's), filled by arrow type, and the
declaration is written beside them as the job does (``world.yaml``: the Feast fields, the tiles and
products of the entity rows come from it); entities repeat over time the way the real job writes them (a
visitor's and a linked customer's web intent change at every session; a customer profile is one snapshot),
so point-in-time joins have real choices to make. ``--artifacts`` in the benchmarks uses the demo's real
files instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clicks2intent.data.simulator import simulator_world
from clicks2intent.data.world import World, load_world, write_world
from clicks2intent.features import build as F
from clicks2intent.features import transforms as T
from clicks2intent.names import columns as C
from clicks2intent.names.paths import FEATURE_FILES, WORLD_FILE

T0 = pd.Timestamp("2024-05-01", tz="UTC")
DAYS = 60


def _fill(schema: pa.Schema, keys: dict[str, object], n: int, rng: np.random.Generator, dim: int) -> pa.Table:
    """A table of ``schema`` with the given key columns and every other column random by type."""
    labels = np.array([f"L{i:02d}" for i in range(12)], dtype=object)
    cols = {}
    for f in schema:
        if f.name in keys:
            cols[f.name] = pa.array(keys[f.name], f.type)
        elif pa.types.is_list(f.type):
            x = rng.normal(size=(n, dim)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            vals = list(x)
            for i in np.flatnonzero(rng.random(n) < 0.05):  # some unknowns, as the real job writes
                vals[i] = None
            cols[f.name] = pa.array(vals, f.type)
        elif pa.types.is_string(f.type):
            cols[f.name] = pa.array(labels[rng.integers(0, len(labels), n)].tolist(), f.type)
        elif pa.types.is_floating(f.type):
            cols[f.name] = pa.array(rng.uniform(0, 1, n), f.type)
        elif pa.types.is_integer(f.type):
            cols[f.name] = pa.array(rng.integers(0, 40, n), f.type)
        elif pa.types.is_boolean(f.type):
            cols[f.name] = pa.array(rng.random(n) < 0.3, f.type)
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=schema)


def _write(table: pa.Table, key: str, path: Path) -> None:
    """The table plus one anchor row per entity (null time and features), as ``c2i features build``
    writes them (the file offline store drops entity rows without an in-range match otherwise)."""
    keys = pa.array(pd.unique(np.asarray(table.column(key).to_pylist(), dtype=object)), pa.string())
    anchors = pa.table(
        {f.name: keys if f.name == key else pa.nulls(len(keys), f.type) for f in table.schema},
        schema=table.schema,
    )
    pq.write_table(pa.concat_tables([table, anchors]), path)


def _times(rng: np.random.Generator, n: int) -> pd.DatetimeIndex:
    return T0 + pd.to_timedelta(rng.integers(0, 86_400 * DAYS, n), unit="s")


def write_sources(
    out: Path, n_sessions: int, n_customers: int, dim: int = 64, seed: int = 0, world: World | None = None
) -> None:
    """Feature sources of ``world`` (default: the simulated bank's): ``n_sessions`` web sessions of
    ``n_sessions // 3`` visitors, ``n_customers`` customers of whom half are linked (web intent rows at
    ~3 changes each), and the world's ``world.yaml``."""
    rng = np.random.default_rng(seed)
    world = world or simulator_world()
    schemas = F.source_schemas(world)
    out.mkdir(parents=True, exist_ok=True)
    n_visitors = max(1, n_sessions // 3)
    sessions = [f"s{i:09d}" for i in range(n_sessions)]
    visitors = [f"v{i:08d}" for i in rng.integers(0, n_visitors, n_sessions)]
    s_times = _times(rng, n_sessions)
    for name in ("session_activity", "session_intent"):
        keys = {C.SESSION_ID: sessions, C.EVENT_TIMESTAMP: s_times, C.VISITOR_ID: visitors}
        _write(_fill(schemas[name], keys, n_sessions, rng, dim), C.SESSION_ID, out / FEATURE_FILES[name])
    # a visitor's web intent changes at each of its sessions
    keys = {C.VISITOR_ID: visitors, C.EVENT_TIMESTAMP: s_times}
    _write(
        _fill(schemas["visitor_web_intent"], keys, n_sessions, rng, dim),
        C.VISITOR_ID,
        out / FEATURE_FILES["visitor_web_intent"],
    )
    customers = [f"c{i:08d}" for i in range(n_customers)]
    linked = [c for c in customers if rng.random() < 0.5] or customers[:1]
    n_changes = 3 * len(linked)
    keys = {C.CUSTOMER_ID: list(rng.choice(linked, n_changes)), C.EVENT_TIMESTAMP: _times(rng, n_changes)}
    _write(
        _fill(schemas["customer_web_intent"], keys, n_changes, rng, dim),
        C.CUSTOMER_ID,
        out / FEATURE_FILES["customer_web_intent"],
    )
    keys = {C.CUSTOMER_ID: customers, C.EVENT_TIMESTAMP: [T0 - pd.Timedelta(days=1)] * n_customers}
    _write(
        _fill(schemas["customer_profile"], keys, n_customers, rng, dim),
        C.CUSTOMER_ID,
        out / FEATURE_FILES["customer_profile"],
    )
    protos = rng.normal(size=(len(world.tiles), dim)).astype(np.float32)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    pq.write_table(
        pa.table(
            {
                T.TILE_ID: list(world.tiles),
                T.PROTOTYPE: pa.array(list(protos), pa.list_(pa.float32())),
                T.PROTOTYPE_SESSIONS: [1] * len(world.tiles),
            }
        ),
        out / FEATURE_FILES["tile_prototypes"],
    )
    write_world(world, out / WORLD_FILE)  # what `c2i features build` writes beside the sources


def entity_rows(features_dir: Path, n_rows: int, seed: int = 1) -> dict[str, pd.DataFrame]:
    """Task entity rows: tile impressions of random customers at random times (a tenth of them
    repeating another row's customer AND time, the case Feast's file store collapses), and
    conversion rows at session ends; labels are the tiles and products of the sources' world."""
    rng = np.random.default_rng(seed)
    world = load_world(features_dir / WORLD_FILE)
    tiles, products = list(world.tiles), list(world.classes("conversion"))
    profile = pq.read_table(features_dir / FEATURE_FILES["customer_profile"], columns=[C.CUSTOMER_ID])
    customers = np.asarray(profile.column(C.CUSTOMER_ID).to_pylist(), dtype=object)
    tile = pd.DataFrame(
        {
            C.IMPRESSION_ID: [f"i{i:09d}" for i in range(n_rows)],
            C.CUSTOMER_ID: customers[rng.integers(0, len(customers), n_rows)],
            C.EVENT_TIMESTAMP: _times(rng, n_rows),
            "label": np.asarray(tiles, dtype=object)[rng.integers(0, len(tiles), n_rows)],
        }
    )
    dup = np.flatnonzero(rng.random(n_rows) < 0.1)
    src = rng.integers(0, n_rows, len(dup))
    tile.loc[dup, [C.CUSTOMER_ID, C.EVENT_TIMESTAMP]] = tile.loc[
        src, [C.CUSTOMER_ID, C.EVENT_TIMESTAMP]
    ].to_numpy()
    tile[C.EVENT_TIMESTAMP] = pd.to_datetime(tile[C.EVENT_TIMESTAMP], utc=True)
    sessions = pq.read_table(
        features_dir / FEATURE_FILES["session_activity"],
        columns=[C.SESSION_ID, C.VISITOR_ID, C.EVENT_TIMESTAMP],
    ).to_pandas()
    sessions = sessions[sessions[C.EVENT_TIMESTAMP].notna()]  # not the anchors
    conv = sessions.sample(n=min(n_rows, len(sessions)), random_state=seed).reset_index(drop=True)
    conv["label"] = np.asarray(products, dtype=object)[rng.integers(0, len(products), len(conv))]
    conv[C.EVENT_TIMESTAMP] = pd.to_datetime(conv[C.EVENT_TIMESTAMP], utc=True)
    return {"tile_ranking": tile.sort_values(C.EVENT_TIMESTAMP, kind="stable").reset_index(drop=True),
            "conversion": conv.sort_values(C.EVENT_TIMESTAMP, kind="stable").reset_index(drop=True)}  # fmt: skip


def write_untrained_encoder(root: Path, dim: int, world: World) -> None:
    """An untrained encoder checkpoint under ``root``/encoder over the world's page types: the
    ``session_affinity`` on-demand view (part of ``conversion_v1``) reads its next-event head, so a
    repo of synthetic sources cannot be applied without one. Its values are random; only the cost is
    measured here."""
    import torch

    from clicks2intent.encoder.model import (
        EncoderCheckpoint,
        EncoderConfig,
        Vocabulary,
        build_model,
        save_checkpoint,
    )
    from clicks2intent.names.paths import ArtifactLayout

    torch.manual_seed(0)
    vocabularies = {
        C.PAGE_TYPE: Vocabulary(list(world.known_page_types)),
        C.CHANNEL: Vocabulary(list(C.CHANNELS)),
        C.DEVICE: Vocabulary(["desktop", "mobile", "tablet"]),
    }
    config = EncoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, embedding_dim=dim, max_len=16)
    model = build_model(config, vocabularies).eval()
    save_checkpoint(EncoderCheckpoint(config, vocabularies, model), ArtifactLayout(root).checkpoint)

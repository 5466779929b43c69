"""``feast materialize`` SIGKILLed in the middle of a view, through :class:`ArrowComputeEngine`.

What happens underneath: the SQLite writer commits every ``CHUNK_ROWS`` entities, so a kill mid-view
leaves the chunks written so far (each entity whole: one statement holds all its features), and Feast
records a view's materialisation interval only after the view succeeds, so the registry does not say
the killed window was done. Before the fix, the next ``materialize-incremental`` (no earlier interval:
it starts at now - ttl) wrote nothing, recorded its own window as done and left the view 2 of 6 chunks
written for good. Now the engine leaves a marker while it writes a view (``.c2i_materializing/`` in the
feature repo), and the next run of any kind says so in one line and writes the killed window again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clicks2intent.features import store as FS
from clicks2intent.features.engines import ENGINE_TYPE, PENDING_DIR
from clicks2intent.features.online_stores import SQLITE_TYPE

pytestmark = pytest.mark.slow

T0 = pd.Timestamp("2024-05-01", tz="UTC")  # older than the ttl: what the demo's simulated data are
N = 6_000
CHUNK = 1_000  # rows per SQLite transaction in the killed run: 6 chunks, killed in the 3rd
START, END = "2024-04-01T00:00:00", "2024-06-01T00:00:00"

REPO_PY = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, String

k = Entity(name="k", join_keys=["kid"], value_type=ValueType.STRING)
v = FeatureView(
    name="v", entities=[k], ttl=timedelta(days=30),
    source=FileSource(path={source!r}, timestamp_field="event_timestamp"),
    schema=[Field(name="emb", dtype=Array(Float32)), Field(name="s", dtype=String)],
)
"""

# The killed run: the real engine and writer, a SIGKILL of the process after the 2nd chunk committed.
KILLED = """
import os, signal, sys
import pandas as pd
from clicks2intent.features import online_write as W
from clicks2intent.features import store as FS

W.CHUNK_ROWS = {chunk}
encode, calls = W.encode_features, [0]

def encode_then_die(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return encode(*args, **kwargs)

W.encode_features = encode_then_die
FS.open_store(sys.argv[1]).materialize(pd.Timestamp({start!r}, tz="UTC"), pd.Timestamp({end!r}, tz="UTC"))
"""


def _repo(root: Path, source: Path, layout: str) -> Path:
    repo = root / "repo"
    repo.mkdir()
    FS.write_config(
        repo / "feature_store.yaml",
        {
            "project": "c2i_kill",
            "provider": "local",
            "registry": "registry.db",
            # the class whose online_write_arrow the engine uses (Feast's own `sqlite` gets Feast's engine)
            "online_store": {"type": SQLITE_TYPE, "path": "online.db", "layout": layout},
            "offline_store": {"type": "file"},
            "entity_key_serialization_version": 3,
            "batch_engine": {"type": ENGINE_TYPE},
        },
    )
    (repo / "repo.py").write_text(REPO_PY.format(source=str(source)))
    return repo


def _source(path: Path) -> None:
    rng = np.random.default_rng(0)
    pq.write_table(
        pa.table(
            {
                "kid": [f"k{i:05d}" for i in range(N)],
                "event_timestamp": pa.array(
                    [T0 + pd.Timedelta(seconds=i) for i in range(N)], pa.timestamp("us", "UTC")
                ),
                "emb": pa.array(rng.normal(size=(N, 4)).astype(np.float32).tolist(), pa.list_(pa.float32())),
                "s": [f"v{i % 7}" for i in range(N)],
            }
        ),
        path,
    )  # fmt: skip


def _feast(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    feast = Path(sys.executable).with_name("feast")
    return subprocess.run(
        [str(feast), "-c", str(repo), *args], capture_output=True, text=True, timeout=300, check=False
    )


def _online_rows(repo: Path) -> list[tuple]:
    with sqlite3.connect(repo / "online.db") as conn:
        (table,) = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return sorted(conn.execute(f'SELECT * FROM "{table}"'))  # either layout: every stored column


def _intervals(repo: Path) -> list[tuple]:
    return list(FS.open_store(repo).get_feature_view("v").materialization_intervals)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "source.parquet"
    _source(path)
    return path


def _applied(root: Path, source: Path, layout: str) -> Path:
    repo = _repo(root, source, layout)
    applied = _feast(repo, "apply")
    assert applied.returncode == 0, applied.stderr[-2000:]
    return repo


@pytest.fixture(scope="module")
def expected(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    """The online rows of an uninterrupted ``feast materialize``, per online-store layout."""
    out = {}
    for layout in ("feast", "wide"):
        reference = _applied(tmp_path_factory.mktemp("reference"), source, layout)
        done = _feast(reference, "materialize", START, END)
        assert done.returncode == 0, done.stderr[-2000:]
        out[layout] = _online_rows(reference)
        assert len({r[0] for r in out[layout]}) == N
    assert len(out["wide"]) == N  # one row per entity
    return out


def _kill_mid_view(repo: Path) -> None:
    script = textwrap.dedent(KILLED.format(chunk=CHUNK, start=START, end=END))
    killed = subprocess.run(
        [sys.executable, "-c", script, str(repo)], capture_output=True, text=True, timeout=300, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


@pytest.mark.parametrize(
    ("then", "layout"),
    [("materialize-incremental", "feast"), ("materialize", "feast"), ("materialize", "wide")],
)
def test_a_view_killed_mid_write_is_not_done_and_the_next_run_repairs_it(
    source: Path, expected: dict[str, list[tuple]], tmp_path: Path, then: str, layout: str
) -> None:
    killed = _applied(tmp_path, source, layout)
    _kill_mid_view(killed)
    partial = {r[0] for r in _online_rows(killed)}
    assert 0 < len(partial) < N  # what the hostile probe saw: a view partly written...
    assert _intervals(killed) == []  # ...that the registry does not call done
    assert any((killed / PENDING_DIR).iterdir())  # and the engine's marker says which window

    now = (pd.Timestamp.now(tz="UTC") + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    again = _feast(killed, *(["materialize-incremental", now] if then == "materialize-incremental" else
                             ["materialize", START, END]))  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "did not finish" in again.stderr + again.stdout  # one line says what is being repaired
    assert _online_rows(killed) == expected[layout]  # byte for byte what the uninterrupted run wrote
    assert os.listdir(killed / PENDING_DIR) == []  # repaired: the marker is gone

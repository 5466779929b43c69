"""Shared tiny fixtures: a handful of events in the clickstream contract, the repo root, a local Ray."""

from __future__ import annotations

import os
import sys

# Before torch/XGBoost load: OpenMP spin-waiting makes 2-thread work crawl on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

if TYPE_CHECKING:
    from clicks2intent.data.world import World

REPO_ROOT = Path(__file__).resolve().parents[1]
MSNBC_DIR = REPO_ROOT.parent / "shared" / "data" / "real" / "msnbc"


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def c2i_without_torch() -> list[str]:
    """The ``c2i`` command in a process where torch cannot be imported, as without the torch extra."""
    code = "import sys; sys.modules['torch'] = None; from clicks2intent.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code]


def _sigint_as_from_a_terminal() -> None:
    """The child's SIGINT as a terminal's Ctrl-C finds it: default disposition, not blocked. A test
    runner started in the background by a non-interactive shell has SIGINT ignored, and a child
    inherits that (POSIX), so Ctrl-C would never reach it: what these tests check is our handling."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.fixture
def as_from_a_terminal() -> Callable[[], None]:
    """A ``preexec_fn`` for a child that must receive Ctrl-C (SIGINT) as from a terminal."""
    return _sigint_as_from_a_terminal


@pytest.fixture(scope="session")
def sim_world() -> World:
    """The simulated bank's world declaration (its tiles, products, page types and profile columns)."""
    from clicks2intent.data.simulator import simulator_world

    return simulator_world()


@pytest.fixture
def msnbc_path() -> Path:
    files = sorted(MSNBC_DIR.glob("*.seq"))
    if not files:
        pytest.skip(f"MSNBC data not found under {MSNBC_DIR}")
    return files[0]


@pytest.fixture
def tiny_events() -> pd.DataFrame:
    """Two web sessions and one app session, every optional modality present somewhere."""
    ts = pd.Timestamp("2026-03-01 10:00", tz="UTC")
    rows = [
        ("s1", ts, "home", "v1", None, "web", 5.0, None, "desktop", "google"),
        (
            "s1",
            ts + pd.Timedelta(seconds=20),
            "mortgage_rates",
            "v1",
            None,
            "web",
            40.0,
            "mortgage rates",
            "desktop",
            None,
        ),
        (
            "s1",
            ts + pd.Timedelta(seconds=70),
            "mortgage_calculator",
            "v1",
            None,
            "web",
            90.0,
            None,
            "desktop",
            None,
        ),
        (
            "s2",
            ts + pd.Timedelta(hours=1),
            "credit_cards",
            "v2",
            None,
            "web",
            None,
            "cashback card",
            "mobile",
            None,
        ),
        ("s3", ts + pd.Timedelta(hours=2), "app_home", None, "c1", "app", 3.0, None, "mobile", None),
    ]
    cols = [
        "session_id",
        "event_timestamp",
        "page_type",
        "visitor_id",
        "customer_id",
        "channel",
        "dwell_seconds",
        "search_query",
        "device",
        "referrer",
    ]
    return pd.DataFrame(rows, columns=cols)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray cluster on this box's 2 CPUs for one test module (the Ray tests' only fixture)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def write_tiny_encoder(
    root: Path, embedding_dim: int, world: World | None = None
) -> tuple[object, list[str]]:
    """An untrained encoder checkpoint under ``root``/encoder, for the on-demand views that read its
    next-event head, and the world declaration they read it over (``root``/features/world.yaml; default
    the simulator's); returns (the model, its page tokens)."""
    import torch

    from clicks2intent.data.simulator import simulator_world
    from clicks2intent.data.world import write_world
    from clicks2intent.encoder.model import (
        EncoderCheckpoint,
        EncoderConfig,
        Vocabulary,
        build_model,
        save_checkpoint,
    )
    from clicks2intent.names import columns as C
    from clicks2intent.names.paths import CHECKPOINT_FILE, ArtifactLayout

    torch.manual_seed(0)
    pages = ["home", "apply_form", "product_mortgage", "not_a_bag_page"]
    vocabularies = {
        C.PAGE_TYPE: Vocabulary(pages),
        C.CHANNEL: Vocabulary(["web"]),
        C.DEVICE: Vocabulary(["mobile"]),
    }
    config = EncoderConfig(d_model=8, n_heads=2, n_layers=1, d_ff=16, embedding_dim=embedding_dim, max_len=8)
    model = build_model(config, vocabularies).eval()
    save_checkpoint(
        EncoderCheckpoint(config, vocabularies, model), ArtifactLayout(root).encoder / CHECKPOINT_FILE
    )
    write_world(world or simulator_world(), ArtifactLayout(root).features_world)
    return model, pages


@pytest.fixture(scope="session")
def tiny_encoder_writer() -> Callable[..., tuple[object, list[str]]]:
    """``write_tiny_encoder`` itself: module-scoped fixtures call it with their own root."""
    return write_tiny_encoder

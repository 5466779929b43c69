"""Every path under ``artifacts/``, declared once (:class:`ArtifactLayout`), and the file names inside them.

Commands default to ``ArtifactLayout()`` (relative ``artifacts/``); the serving side resolves the root
from ``$C2I_ARTIFACTS``. A rename of any output happens here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("artifacts")

# File names inside the artifact directories (a directory may move; its files keep these names).
CHECKPOINT_FILE = "checkpoint.pt"  # encoder config + vocabulary + weights
SERVING_FILE = "encoder.ts"  # TorchScript export of the encoder for single-session serving
ONNX_FILE = "encoder.onnx"  # ONNX export of the batch inference graph: c2i embed runs it without torch
CLASSIFIER_FILE = "classifier.npz"  # distilled intent classifier weights
CLASSIFIER_META_FILE = "classifier.json"  # its classes, taxonomy version, feature spec
INTENTS_FILE = "session_intents.parquet"  # the distilled label of every session
BUILD_REPORT_FILE = "build_report.json"  # what `c2i features build` wrote, row counts per file
WORLD_FILE = "world.yaml"  # a bank's world declaration (clicks2intent.data.world); copied beside the features
BOOSTER_FILE = "booster.ubj"
ESTIMATOR_FILE = "estimator.json"
FEATURE_FILES: dict[str, str] = {
    "session_activity": "session_activity.parquet",
    "session_intent": "session_intent.parquet",
    "visitor_web_intent": "visitor_web_intent.parquet",
    "customer_web_intent": "customer_web_intent.parquet",
    "customer_profile": "customer_profile.parquet",
    "tile_prototypes": "tile_prototypes.parquet",
}


@dataclass(frozen=True)
class ArtifactLayout:
    """Where every stage reads and writes, relative to one root (default ``artifacts/``)."""

    root: Path = DEFAULT_ROOT

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # --- data (simulator, ingest) ---
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def events(self) -> Path:
        return self.data / "events.parquet"

    @property
    def identity_links(self) -> Path:
        return self.data / "identity_links.parquet"

    @property
    def customers(self) -> Path:
        return self.data / "customers.parquet"

    @property
    def world(self) -> Path:
        """The world declaration the data directory was written or ingested with."""
        return self.data / WORLD_FILE

    @property
    def tile_impressions(self) -> Path:
        return self.data / "tile_impressions.parquet"

    @property
    def conversions(self) -> Path:
        return self.data / "conversions.parquet"

    @property
    def truth(self) -> Path:
        """Simulator truth: evaluation only, never a model input."""
        return self.data / "truth"

    @property
    def session_truth(self) -> Path:
        return self.truth / "session_truth.parquet"

    @property
    def msnbc_events(self) -> Path:
        return self.data / "msnbc_events.parquet"

    # --- encoder ---
    @property
    def encoder(self) -> Path:
        return self.root / "encoder"

    @property
    def checkpoint(self) -> Path:
        return self.encoder / CHECKPOINT_FILE

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings" / "session_embeddings.parquet"

    # --- intent ---
    @property
    def taxonomy(self) -> Path:
        return self.root / "taxonomy" / "taxonomy.yaml"

    @property
    def llm_labels(self) -> Path:
        return self.root / "taxonomy" / "llm_labels.parquet"

    @property
    def llm_cache(self) -> Path:
        return self.root / "llm" / "cache.sqlite"

    @property
    def intent(self) -> Path:
        return self.root / "intent"

    @property
    def session_intents(self) -> Path:
        return self.intent / INTENTS_FILE

    # --- features, models, reports ---
    @property
    def features(self) -> Path:
        return self.root / "features"

    def feature_file(self, view: str) -> Path:
        return self.features / FEATURE_FILES[view]

    @property
    def features_world(self) -> Path:
        """The declaration the feature sources were built with (the Feast repo and serving read this one)."""
        return self.features / WORLD_FILE

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def msnbc_eval(self) -> Path:
        """Where the MSNBC evaluation trains and caches its own encoder."""
        return self.root / "msnbc_eval"


ARTIFACTS = ArtifactLayout()  # the default layout every command's defaults come from

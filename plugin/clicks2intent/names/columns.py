"""Column names and small shared vocabularies, defined once.

Every module uses these constants as defaults (the Recommenders lesson): a rename happens here, and
training, Feast definitions and serving cannot drift apart.
"""

from __future__ import annotations

# --- Clickstream contract (one row per event) -------------------------------------------------
SESSION_ID = "session_id"
EVENT_TIMESTAMP = "event_timestamp"
PAGE_TYPE = "page_type"
VISITOR_ID = "visitor_id"
CUSTOMER_ID = "customer_id"
CHANNEL = "channel"
DWELL_SECONDS = "dwell_seconds"
SEARCH_QUERY = "search_query"
DEVICE = "device"
REFERRER = "referrer"

REQUIRED_EVENT_COLUMNS: tuple[str, ...] = (SESSION_ID, EVENT_TIMESTAMP, PAGE_TYPE)
OPTIONAL_EVENT_COLUMNS: tuple[str, ...] = (
    VISITOR_ID,
    CUSTOMER_ID,
    CHANNEL,
    DWELL_SECONDS,
    SEARCH_QUERY,
    DEVICE,
    REFERRER,
)
EVENT_COLUMNS: tuple[str, ...] = REQUIRED_EVENT_COLUMNS + OPTIONAL_EVENT_COLUMNS

CHANNELS: tuple[str, ...] = ("web", "app")
OOV_PAGE_TYPE = "<OOV>"  # unknown page types are mapped here, never dropped

# --- Identity links ---------------------------------------------------------------------------
LINKED_AT = "linked_at"
LINK_METHOD = "method"

# --- Tasks ------------------------------------------------------------------------------------
IMPRESSION_ID = "impression_id"
CLICKED_TILE = "clicked_tile_id"
CONVERSION_PRODUCT = "product"
NO_CLICK = "none"  # a homepage view without a tile click
NO_CONVERSION = "none"  # a web session followed by no application within the horizon

# --- Session-level outputs (encoder, taxonomy, distillation) ----------------------------------
EMBEDDING = "embedding"  # list<float32>, L2-normalised
INTENT_LABEL = "intent_label"  # taxonomy label id
INTENT_CONFIDENCE = "intent_confidence"
NO_LABEL = ""  # the label of a session no page of which the models can read (Feast strings hold no null)
TAXONOMY_VERSION = "taxonomy_version"
TRUE_INTENT = "true_intent"  # simulator truth only: evaluation, never a feature

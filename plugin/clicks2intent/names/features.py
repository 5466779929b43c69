"""Feature, view, request-field and feature-service names, and the feature group of each, declared once.

The feature build job writes these column names, the Feast definitions declare them, the models and
the service read them: a rename happens here. Groups say which ablation variant a feature belongs to.
"""

from __future__ import annotations

from clicks2intent.names import columns as C

# --- Names of the feature-source columns (the Feast views declare the same names) -------------------
SESSION_N_EVENTS = "session_n_events"
SESSION_DURATION_S = "session_duration_s"
SESSION_N_SEARCHES = "session_n_searches"
SESSION_N_APPLY_PAGES = "session_n_apply_pages"
SESSION_N_PRODUCT_PAGES = "session_n_product_pages"
SESSION_N_DISTINCT_PAGES = "session_n_distinct_pages"
SESSION_MEAN_DWELL_S = "session_mean_dwell_s"
SESSION_CHANNEL = "session_channel"
# Funnel flags: did the session reach the application's first / last page (a production team's own).
SESSION_REACHED_APPLY_START = "session_reached_apply_start"
SESSION_REACHED_APPLY_FORM = "session_reached_apply_form"
# Bag of page types: one count per WEB page type of the bank's world declaration (clicks2intent.data.world),
# named with this prefix; which page types exist is the bank's, never the library's.
SESSION_PAGES_PREFIX = "session_pages_"


def page_count_field(page_type: str) -> str:
    """The session_activity field counting views of ``page_type``."""
    return f"{SESSION_PAGES_PREFIX}{page_type}"


VISITOR_INTENT_LABEL = "visitor_intent_label"
VISITOR_INTENT_CONFIDENCE = "visitor_intent_confidence"
VISITOR_INTENT_DECAYED = "visitor_intent_decayed"
VISITOR_EMBEDDING_DECAYED = "visitor_embedding_decayed"
VISITOR_SESSIONS_30D = "visitor_sessions_30d"

CUSTOMER_INTENT_LABEL = "customer_intent_label"
CUSTOMER_INTENT_CONFIDENCE = "customer_intent_confidence"
CUSTOMER_INTENT_DECAYED = "customer_intent_decayed"
CUSTOMER_WEB_EMBEDDING = "customer_web_embedding"
CUSTOMER_LINKED_VISITORS = "customer_linked_visitors"
CUSTOMER_WEB_SESSIONS_30D = "customer_web_sessions_30d"
CUSTOMER_WEB_SESSIONS_6H = "customer_web_sessions_6h"
CUSTOMER_WEB_SESSIONS_1D = "customer_web_sessions_1d"
CUSTOMER_WEB_SESSIONS_3D = "customer_web_sessions_3d"
# The recency counts, in the order of features.build.FeatureBuildConfig.recent_windows_days.
RECENT_WINDOW_NAMES: tuple[str, ...] = (
    CUSTOMER_WEB_SESSIONS_6H,
    CUSTOMER_WEB_SESSIONS_1D,
    CUSTOMER_WEB_SESSIONS_3D,
)


# The customer snapshot columns (the "production baseline") are the bank's: the world's ``profile``.

# --- Feast object names (views, request sources, on-demand views, services) -----------------------
SESSION_ACTIVITY = "session_activity"
SESSION_INTENT = "session_intent"
VISITOR_WEB_INTENT = "visitor_web_intent"
CUSTOMER_WEB_INTENT = "customer_web_intent"
CUSTOMER_PROFILE = "customer_profile"
INFLIGHT_SESSION = "inflight_session"  # request source
TILE_CANDIDATES = "tile_candidates"  # request source
INFLIGHT_SESSION_INTENT = "inflight_session_intent"  # on-demand view
TILE_AFFINITY_VIEW = "tile_affinity"  # on-demand view
SESSION_AFFINITY_VIEW = "session_affinity"  # on-demand view
TILE_RANKER_BASELINE = "tile_ranker_baseline"
TILE_RANKER_V1 = "tile_ranker_v1"
CONVERSION_BASELINE = "conversion_baseline"
CONVERSION_V1 = "conversion_v1"
SERVICES: tuple[str, ...] = (TILE_RANKER_BASELINE, TILE_RANKER_V1, CONVERSION_BASELINE, CONVERSION_V1)

# Request fields of one in-flight session (arrays aligned by event; see the module docstring).
INFLIGHT_PAGE_TYPES = "inflight_page_types"
INFLIGHT_EVENT_TIMES_US = (
    "inflight_event_times_us"  # µs since the epoch, UTC (exact, unlike UnixTimestamp's seconds)
)
INFLIGHT_DWELL_SECONDS = "inflight_dwell_seconds"  # NaN = unknown
INFLIGHT_SEARCH_QUERIES = "inflight_search_queries"  # "" = no query
INFLIGHT_CHANNEL = "inflight_channel"  # "" = unknown
INFLIGHT_DEVICE = "inflight_device"  # "" = unknown
INFLIGHT_EMBEDDING = "inflight_embedding"
INFLIGHT_INTENT_LABEL = "inflight_intent_label"
INFLIGHT_INTENT_CONFIDENCE = "inflight_intent_confidence"
# Share of the in-flight session's events whose page the encoder cannot read (1.0: no label is given).
INFLIGHT_UNKNOWN_PAGE_SHARE = "inflight_unknown_page_share"
CANDIDATE_TILES = "candidate_tiles"
TILE_AFFINITY = "tile_affinity"
# The conversion model's view of the session and visitor embeddings: cosine to every tile prototype,
# in the world's tile order (a fixed vector: no request source).
SESSION_TILE_AFFINITY = "session_tile_affinity"
VISITOR_TILE_AFFINITY = "visitor_tile_affinity"
# ... and where each embedding says the visitor goes next: the encoder's own next-event head (its
# self-supervised objective, no label) read from the vector, log P(next page) per web page type of the
# world, in its order. What topic labels cannot carry: the session's end (left on the application form,
# or drifted away).
SESSION_NEXT_PAGE = "session_next_page"
VISITOR_NEXT_PAGE = "visitor_next_page"

# Served, but only as the input of an on-demand projection, not as a model input: the tile ranker sees
# the customer's web embedding through ``tile_affinity`` (cosine to each tile's prototype), and serving
# needs the raw vector to recompute that affinity from a fresher embedding: on the demo's data the
# affinity alone beat the raw dimensions beside it (trees on dense dimensions from a few thousand rows
# fit noise). The conversion model sees the session's and the visitor's embeddings the same way
# (``session_affinity``), for the same reason (docs/decisions/0012-features-and-feast.md).
# The next-page distributions (SESSION_NEXT_PAGE / VISITOR_NEXT_PAGE) are the second projection.
PROJECTION_ONLY_FEATURES: frozenset[str] = frozenset(
    {CUSTOMER_WEB_EMBEDDING, C.EMBEDDING, VISITOR_EMBEDDING_DECAYED}
)

# --- Feature groups (ablation variants, explanation grouping) -------------------------------------
BASELINE, EMBEDDING, LABELS = "baseline", "embedding", "labels"
# Web-activity counts and recency exist only through the web pipeline and identity links (never in the
# production baseline), and say nothing about WHAT the sessions were: every web-intent variant
# (labels, embedding, both) gets them, so labels vs embedding compares the representations alone.
WEB_ACTIVITY = "web_activity"
# The session statistics the library defines; session_activity also holds one page_count_field per web
# page type of the world (World.session_activity_fields).
SESSION_STAT_FIELDS = (
    SESSION_N_EVENTS,
    SESSION_DURATION_S,
    SESSION_N_SEARCHES,
    SESSION_N_APPLY_PAGES,
    SESSION_N_PRODUCT_PAGES,
    SESSION_N_DISTINCT_PAGES,
    SESSION_MEAN_DWELL_S,
    SESSION_CHANNEL,
    SESSION_REACHED_APPLY_START,
    SESSION_REACHED_APPLY_FORM,
)
# Every feature the library names. Names it does not (the world's profile columns and page counts) are
# baseline features: a declaration only ever adds baseline columns (data.world forbids the library's names).
FEATURE_GROUPS: dict[str, str] = (
    dict.fromkeys(SESSION_STAT_FIELDS, BASELINE)
    | dict.fromkeys(
        (
            C.EMBEDDING,
            VISITOR_EMBEDDING_DECAYED,
            CUSTOMER_WEB_EMBEDDING,
            INFLIGHT_EMBEDDING,
            TILE_AFFINITY,
            SESSION_TILE_AFFINITY,
            VISITOR_TILE_AFFINITY,
            SESSION_NEXT_PAGE,
            VISITOR_NEXT_PAGE,
        ),
        EMBEDDING,
    )
    | dict.fromkeys(
        (VISITOR_SESSIONS_30D, CUSTOMER_LINKED_VISITORS, CUSTOMER_WEB_SESSIONS_30D, *RECENT_WINDOW_NAMES),
        WEB_ACTIVITY,
    )
    | dict.fromkeys(
        (
            C.INTENT_LABEL,
            C.INTENT_CONFIDENCE,
            C.TAXONOMY_VERSION,
            VISITOR_INTENT_LABEL,
            VISITOR_INTENT_CONFIDENCE,
            VISITOR_INTENT_DECAYED,
            CUSTOMER_INTENT_LABEL,
            CUSTOMER_INTENT_CONFIDENCE,
            CUSTOMER_INTENT_DECAYED,
            INFLIGHT_INTENT_LABEL,
            INFLIGHT_INTENT_CONFIDENCE,
            INFLIGHT_UNKNOWN_PAGE_SHARE,
        ),
        LABELS,
    )
)

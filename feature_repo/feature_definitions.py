"""clicks2intent feature repository: declarations only.

Every object is built by ``clicks2intent.features.definitions.build_from_features`` (the same call another
team's repo makes) over the parquet files of ``c2i features build`` in ``../artifacts/features``: the
bank's world declaration and the embedding size are read from the ``world.yaml`` and
``build_report.json`` that build wrote beside them, so the fields (page counts, profile columns) are
always the sources' own. This file names the objects so ``feast apply`` registers them. The on-demand
views load the encoder, the intent classifier, the tile prototypes and the world from
``$C2I_ARTIFACTS`` (default: the checkout's ``artifacts/``), once per process.
"""

from pathlib import Path

from clicks2intent.features.definitions import build_from_features

# Absolute: the DuckDB offline store reads a source path as given (relative = to the working
# directory), unlike the file store, which resolves it against the repo.
c2i = build_from_features((Path(__file__).parent / "../artifacts/features").resolve())

# --- Entities ---------------------------------------------------------------------------------------
# A web or app session: the unit the encoder embeds and the classifier labels.
session = c2i.session
# An anonymous web visitor (cookie/device): web intent before anyone logs in.
visitor = c2i.visitor
# A bank customer: whom the tile ranker and conversion model score after login.
customer = c2i.customer

# --- Sources ----------------------------------------------------------------------------------------
# Per-session statistics at session end (the conversion baseline).
session_activity_source = c2i.sources.session_activity
# Session embedding + distilled label at session end.
session_intent_source = c2i.sources.session_intent
# A visitor's web intent at every change time.
visitor_web_intent_source = c2i.sources.visitor_web_intent
# A customer's web intent through identity links, at every change time.
customer_web_intent_source = c2i.sources.customer_web_intent
# The customer profile snapshot (the production baseline).
customer_profile_source = c2i.sources.customer_profile

# --- Feature views ----------------------------------------------------------------------------------
# Baseline session stats: events, duration, searches, funnel pages, a count per declared web page type.
session_activity = c2i.session_activity
# Session embedding Array(Float32) (its dimension in the view's description), label, confidence, taxonomy.
session_intent = c2i.session_intent
# Visitor web intent: latest label and time-decayed label mix / embedding, 30-day session count.
visitor_web_intent = c2i.visitor_web_intent
# Customer web intent of linked visitors, point in time (no future link or session contributes).
customer_web_intent = c2i.customer_web_intent
# Customer profile: the bank's declared profile columns (world.yaml).
customer_profile = c2i.customer_profile

# --- Request sources --------------------------------------------------------------------------------
# One in-flight web session sent with the request (arrays aligned by event).
inflight_session = c2i.inflight_session
# The tiles the app may show on this homepage view.
tile_candidates = c2i.tile_candidates

# --- On-demand feature views ------------------------------------------------------------------------
# Embedding + intent of the in-flight session (exported encoder + distilled classifier).
inflight_session_intent = c2i.inflight_session_intent
# Affinity of the customer's web intent to each candidate tile.
tile_affinity = c2i.tile_affinity
# The session's and the visitor's web embeddings as tile affinities and next-page distributions
# (the conversion model's view).
session_affinity = c2i.session_affinity

# --- Feature services (the names training and serving share) ----------------------------------------
# Tile ranker, production baseline: profile only.
tile_ranker_baseline = c2i.tile_ranker_baseline
# Tile ranker v1: profile + linked web intent + tile affinity.
tile_ranker_v1 = c2i.tile_ranker_v1
# Conversion, baseline: session statistics only.
conversion_baseline = c2i.conversion_baseline
# Conversion v1: session stats + session embedding/label + visitor web intent.
conversion_v1 = c2i.conversion_v1

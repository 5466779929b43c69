"""The Feast objects of clicks2intent, built by functions so any team's feature repo adopts them with one import.

``build(sources, embedding_dim)`` returns every entity, feature view, request source, on-demand view and
feature service (:class:`Clicks2IntentObjects`); a repo assigns them to module-level names (Feast
collects module attributes) or passes ``objects.all()`` to ``FeatureStore.apply``. A team brings its
own sources (any Feast ``DataSource`` with the columns ``c2i features build`` writes), its own entities
if it already has ``customer``/``visitor``/``session`` ones, an optional name prefix and its own
artifact directory for the on-demand views.

On-demand views run in Feast's ``python`` mode (faster per request than pandas mode:
docs/decisions/0012-features-and-feast.md). Four Feast 0.67 behaviours shape them (each has its workaround here):

* Feast stores a UDF's SOURCE TEXT in the registry and, when a store loads it, re-``exec``\\ s that
  text in a namespace holding only ``pd``/``np`` (``feast.transformation.udf_rehydrate``): a closure or
  a module global the UDF refers to is a ``NameError`` at request time, not at apply time. So each UDF
  is generated (:func:`python_udf`) as a two-line function that imports its implementation from
  :mod:`clicks2intent.features.transforms` and passes its parameters as literals: the text is self-contained and every parameter is
  visible in the registry (and in ``feast plan`` diffs).
* ``feast apply`` calls every python-mode UDF once on synthetic inputs (``"hello world"``, ``[1.0]``)
  to check the declared schema. The transforms therefore treat unknown tiles, unknown channels and
  short vectors as "unknown" (NaN / OOV) rather than errors, and ``feast apply`` needs the model
  artifacts the views load (encoder, intent classifier, tile prototypes) to exist.
* An on-demand view's field descriptions are lost in the registry round trip while a feature service's
  projection keeps them, so ``get_online_features(service)`` fails ("projection … contains a feature
  the FeatureView doesn't have"): on-demand output fields carry no description; the view's does.
* A python UDF returning Python floats is inferred as ``Float64``; scalar outputs are declared
  ``Float64`` (declaring ``Float32`` fails apply with ``SpecifiedFeaturesNotPresentError``). Arrays are
  checked by name only, so the embedding keeps ``Array(Float32)``.

Request arrays cannot hold nulls in Feast's proto lists: a missing dwell is ``NaN`` and a missing
search query ``""``. Event times travel as Int64 microseconds: an ``Array(UnixTimestamp)`` request
field is truncated to whole seconds (the in-flight embedding would drift from the batch one) and
rejects ``pd.Timestamp`` values (Feast checks exact types). :func:`clicks2intent.features.store.inflight_request`
builds the fields from contract events.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clicks2intent.data.world import World, load_world
from clicks2intent.errors import ArtifactError, ConfigError
from clicks2intent.features.transforms import (
    ARTIFACTS_ENV,
    ENCODER_SUBDIR,
    FEATURES_SUBDIR,
    INTENT_SUBDIR,
    NextPageHead,
    Prototypes,
    inflight_events,
    inflight_intent_transform,
    load_models,
    load_next_page_head,
    load_prototypes,
    next_page_logp,
    resolve_artifacts_dir,
    session_affinity_transform,
    tile_affinity,
    tile_affinity_transform,
)
from clicks2intent.names import columns as C
from clicks2intent.names.features import (
    BASELINE,
    CANDIDATE_TILES,
    CONVERSION_BASELINE,
    CONVERSION_V1,
    CUSTOMER_INTENT_CONFIDENCE,
    CUSTOMER_INTENT_DECAYED,
    CUSTOMER_INTENT_LABEL,
    CUSTOMER_LINKED_VISITORS,
    CUSTOMER_PROFILE,
    CUSTOMER_WEB_EMBEDDING,
    CUSTOMER_WEB_INTENT,
    CUSTOMER_WEB_SESSIONS_30D,
    EMBEDDING,
    FEATURE_GROUPS,
    INFLIGHT_CHANNEL,
    INFLIGHT_DEVICE,
    INFLIGHT_DWELL_SECONDS,
    INFLIGHT_EMBEDDING,
    INFLIGHT_EVENT_TIMES_US,
    INFLIGHT_INTENT_CONFIDENCE,
    INFLIGHT_INTENT_LABEL,
    INFLIGHT_PAGE_TYPES,
    INFLIGHT_SEARCH_QUERIES,
    INFLIGHT_SESSION,
    INFLIGHT_SESSION_INTENT,
    INFLIGHT_UNKNOWN_PAGE_SHARE,
    LABELS,
    RECENT_WINDOW_NAMES,
    SERVICES,
    SESSION_ACTIVITY,
    SESSION_AFFINITY_VIEW,
    SESSION_CHANNEL,
    SESSION_DURATION_S,
    SESSION_INTENT,
    SESSION_MEAN_DWELL_S,
    SESSION_N_APPLY_PAGES,
    SESSION_N_DISTINCT_PAGES,
    SESSION_N_EVENTS,
    SESSION_N_PRODUCT_PAGES,
    SESSION_N_SEARCHES,
    SESSION_NEXT_PAGE,
    SESSION_REACHED_APPLY_FORM,
    SESSION_REACHED_APPLY_START,
    SESSION_TILE_AFFINITY,
    TILE_AFFINITY,
    TILE_AFFINITY_VIEW,
    TILE_CANDIDATES,
    TILE_RANKER_BASELINE,
    TILE_RANKER_V1,
    VISITOR_EMBEDDING_DECAYED,
    VISITOR_INTENT_CONFIDENCE,
    VISITOR_INTENT_DECAYED,
    VISITOR_INTENT_LABEL,
    VISITOR_NEXT_PAGE,
    VISITOR_SESSIONS_30D,
    VISITOR_TILE_AFFINITY,
    VISITOR_WEB_INTENT,
)
from clicks2intent.names.paths import ARTIFACTS, BUILD_REPORT_FILE, FEATURE_FILES, WORLD_FILE

if TYPE_CHECKING:
    from feast import Entity, FeatureService, FeatureView, RequestSource
    from feast.data_source import DataSource
    from feast.on_demand_feature_view import OnDemandFeatureView

__all__ = [
    # the builders
    "Clicks2IntentObjects",
    "Sources",
    "build",
    "build_from_features",
    "feature_group",
    "file_sources",
    "profile_fields",
    "python_udf",
    # request-time transforms (re-exported from clicks2intent.features.transforms)
    "ARTIFACTS_ENV",
    "ENCODER_SUBDIR",
    "FEATURES_SUBDIR",
    "INTENT_SUBDIR",
    "NextPageHead",
    "Prototypes",
    "inflight_events",
    "inflight_intent_transform",
    "load_models",
    "load_next_page_head",
    "load_prototypes",
    "next_page_logp",
    "resolve_artifacts_dir",
    "session_affinity_transform",
    "tile_affinity",
    "tile_affinity_transform",
    # Feast object, request-field and group names (re-exported from clicks2intent.names.features)
    "BASELINE",
    "CANDIDATE_TILES",
    "CONVERSION_BASELINE",
    "CONVERSION_V1",
    "CUSTOMER_PROFILE",
    "CUSTOMER_WEB_INTENT",
    "EMBEDDING",
    "FEATURE_GROUPS",
    "INFLIGHT_CHANNEL",
    "INFLIGHT_DEVICE",
    "INFLIGHT_DWELL_SECONDS",
    "INFLIGHT_EMBEDDING",
    "INFLIGHT_EVENT_TIMES_US",
    "INFLIGHT_INTENT_CONFIDENCE",
    "INFLIGHT_INTENT_LABEL",
    "INFLIGHT_PAGE_TYPES",
    "INFLIGHT_SEARCH_QUERIES",
    "INFLIGHT_SESSION",
    "INFLIGHT_SESSION_INTENT",
    "LABELS",
    "SERVICES",
    "SESSION_ACTIVITY",
    "SESSION_INTENT",
    "TILE_AFFINITY",
    "TILE_AFFINITY_VIEW",
    "TILE_CANDIDATES",
    "TILE_RANKER_BASELINE",
    "TILE_RANKER_V1",
    "VISITOR_WEB_INTENT",
]


@functools.cache
def planned_feature_view() -> type[FeatureView]:
    """Feast's ``FeatureView`` whose equality ignores ``materialization_intervals``.

    Why: Feast 0.67's ``FeatureView.__eq__`` compares the intervals ``feast materialize`` records in the
    registry, which a declared view never has, so once a repo was materialized ``feast plan`` (and
    ``feast apply``) reported every view "Updated" for ever, any repo, even a plain ``feast init`` one.
    Plan then prints the only *spec* field that differs, the batch source's meta timestamps, which hid
    the cause. With this class an unchanged view compares equal, ``feast plan`` says "No changes" and
    ``feast apply`` keeps the recorded intervals instead of re-registering the view."""
    import copy

    from feast import FeatureView

    class PlannedFeatureView(FeatureView):
        def __eq__(self, other: object) -> bool:
            if (
                isinstance(other, FeatureView)
                and self.materialization_intervals != other.materialization_intervals
            ):
                twin = copy.copy(self)  # a plain FeatureView with the same definition
                twin.materialization_intervals = list(other.materialization_intervals)
                return FeatureView.__eq__(twin, other)
            return FeatureView.__eq__(self, other)

        __hash__ = FeatureView.__hash__

    return PlannedFeatureView


def feature_group(feature_name: str) -> str:
    """``"baseline" | "embedding" | "labels" | "web_activity"`` for a feature or model column.

    Accepts the Feast name (``customer_intent_decayed``), a full name (``view__feature``) and model
    columns derived from it (``customer_web_embedding_3``, ``customer_intent_label=L02``). A name the
    library does not declare is the bank's (a profile column, a page count): baseline, since a world
    declaration only adds baseline columns (``clicks2intent.data.world`` refuses the library's names).
    """
    name = feature_name.split("__", 1)[1] if "__" in feature_name else feature_name
    if name in FEATURE_GROUPS:
        return FEATURE_GROUPS[name]
    base = name.split("=", 1)[0]
    if base in FEATURE_GROUPS:
        return FEATURE_GROUPS[base]
    stem, _, index = base.rpartition("_")
    if index.isdigit() and stem in FEATURE_GROUPS:
        return FEATURE_GROUPS[stem]
    return BASELINE


def python_udf(
    name: str, impl: Callable[..., dict[str, list[Any]]], **params: Any
) -> tuple[Callable[..., Any], str]:
    """A self-contained UDF (function, source text) calling ``impl`` with literal ``params``.

    Why generated: Feast re-executes the stored source text with only ``pd``/``np`` in scope (module
    docstring), so the text must import what it calls and spell out its parameters."""
    if not name.isidentifier():
        raise ValueError(f"name: {name!r} must be a Python identifier (it names the UDF)")
    for key, value in params.items():
        if value is not None and not isinstance(value, str | int | float | bool):
            raise TypeError(
                f"python_udf: parameter {key!r} must be a literal (str/int/float/bool/None), got {type(value).__name__}"
            )
    args = "".join(f", {k}={v!r}" for k, v in params.items())
    source = f"def {name}(inputs):\n    from {impl.__module__} import {impl.__name__}\n\n    return {impl.__name__}(inputs{args})\n"
    namespace: dict[str, Any] = {"__name__": f"{impl.__module__}.udf"}
    exec(compile(source, f"<clicks2intent udf {name}>", "exec"), namespace)  # noqa: S102 - our own generated text
    return namespace[name], source


# --- Sources ---------------------------------------------------------------------------------------
@dataclass
class Sources:
    """The batch sources the five feature views read (any Feast ``DataSource`` with these columns)."""

    session_activity: DataSource
    session_intent: DataSource
    visitor_web_intent: DataSource
    customer_web_intent: DataSource
    customer_profile: DataSource


def file_sources(features_dir: str = f"../{ARTIFACTS.features}", prefix: str = "") -> Sources:
    """``FileSource``\\ s over the parquet files of ``c2i features build`` (relative = to the repo)."""
    from feast import FileSource

    def source(view: str) -> FileSource:
        return FileSource(
            name=f"{prefix}{view}_source",
            path=f"{features_dir.rstrip('/')}/{FEATURE_FILES[view]}",
            timestamp_field=C.EVENT_TIMESTAMP,
            description=f"c2i features build: {FEATURE_FILES[view]}",
        )

    return Sources(*(source(f.name) for f in fields(Sources)))


# --- The objects -----------------------------------------------------------------------------------
@dataclass
class Clicks2IntentObjects:
    """Everything ``build`` makes, in the Feast template's order."""

    session: Entity
    visitor: Entity
    customer: Entity
    sources: Sources
    session_activity: FeatureView
    session_intent: FeatureView
    visitor_web_intent: FeatureView
    customer_web_intent: FeatureView
    customer_profile: FeatureView
    inflight_session: RequestSource
    tile_candidates: RequestSource
    inflight_session_intent: OnDemandFeatureView
    tile_affinity: OnDemandFeatureView
    session_affinity: OnDemandFeatureView
    tile_ranker_baseline: FeatureService
    tile_ranker_v1: FeatureService
    conversion_baseline: FeatureService
    conversion_v1: FeatureService

    def export(self, namespace: dict[str, Any]) -> list[str]:
        """Put every object into ``namespace`` (a repo's ``globals()``) under its Feast name, so ``feast
        apply`` registers each entity, source, view and service; returns the names."""
        names: list[str] = []
        for obj in self.all():
            key = str(obj.name)
            if key in namespace and namespace[key] is not obj:
                raise ConfigError(
                    f"export: {key!r} is already defined in this feature repo; pick another feast.prefix"
                )
            namespace[key] = obj
            names.append(key)
        return names

    def all(self) -> list[Any]:
        """Every object, for ``FeatureStore.apply`` (request sources travel inside their views)."""
        out: list[Any] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Sources):
                out.extend(getattr(value, s.name) for s in fields(value))
            elif f.name not in ("inflight_session", "tile_candidates"):
                out.append(value)
        return out

    def services(self) -> dict[str, FeatureService]:
        return {
            s.name: s
            for s in (
                self.tile_ranker_baseline,
                self.tile_ranker_v1,
                self.conversion_baseline,
                self.conversion_v1,
            )
        }


def profile_fields(world: World) -> list[Any]:
    """The customer-profile schema (the "production baseline"): the world's profile columns and kinds."""
    from feast import Field
    from feast.types import Bool, Float64, Int64, String

    kinds = {"float": Float64, "int": Int64, "string": String, "bool": Bool}
    return [Field(name=name, dtype=kinds[kind]) for name, kind in world.profile.items()]


def build_from_features(features_dir: str | Path, **kwargs: Any) -> Clicks2IntentObjects:
    """Every object over the parquet files of ``c2i features build`` in ``features_dir``: the world
    declaration and the embedding dimension come from the files that build wrote beside them, so the
    registered fields always match the sources; when ``features_dir`` sits in an artifacts layout (beside
    ``encoder/``), the on-demand views load that layout's models. ``kwargs`` go to :func:`build`."""
    features_dir = Path(features_dir)
    world_path, report_path = features_dir / WORLD_FILE, features_dir / BUILD_REPORT_FILE
    for p in (world_path, report_path):
        if not p.is_file():
            raise ArtifactError(f"feature repo: {p} not found; run `c2i features build` first")
    world = load_world(world_path)
    dim = int(json.loads(report_path.read_text(encoding="utf-8")).get("embedding_dim") or 0)
    prefix = kwargs.pop("prefix", world.feast_prefix)
    if features_dir.name == FEATURES_SUBDIR and (features_dir.parent / ENCODER_SUBDIR).is_dir():
        # The on-demand views load the models these features were built with ($C2I_ARTIFACTS still wins).
        kwargs.setdefault("artifacts_dir", str(features_dir.parent.resolve()))
    return build(file_sources(str(features_dir), prefix=prefix), dim, world=world, prefix=prefix, **kwargs)


def build(
    sources: Sources,
    embedding_dim: int,
    *,
    world: World,
    prefix: str | None = None,
    entities: Mapping[str, Entity] | None = None,
    profile: Sequence[Any] | None = None,
    artifacts_dir: str | None = None,
    session_ttl: timedelta = timedelta(days=30),
    web_intent_ttl: timedelta = timedelta(days=90),
    profile_ttl: timedelta = timedelta(days=365),
    owner: str = "",
    tags: Mapping[str, str] | None = None,
) -> Clicks2IntentObjects:
    """Every clicks2intent Feast object over a team's ``sources``, with fields generated from ``world``.

    ``embedding_dim``: the encoder's output size (stated in the descriptions). ``world``: the bank's
    declaration (page types → bag-of-pages fields, profile columns → the baseline view). ``prefix``:
    prepended to entity, view, request-source and service names so they cannot clash with a team's own
    (default: the world's ``feast.prefix``). ``entities``: reuse a team's ``session``/``visitor``/
    ``customer`` entities (their join keys must match the sources).
    ``profile``: the customer-profile fields (default :func:`profile_fields`). ``artifacts_dir``: where
    the on-demand views load models and prototypes (default ``$C2I_ARTIFACTS`` at request time).
    ttls: how stale a value may be before it is "unknown" (sessions are served shortly after they end;
    web intent fades within weeks; the profile is a slowly changing snapshot).
    """
    if not (isinstance(embedding_dim, int) and embedding_dim > 0):
        raise ConfigError(f"embedding_dim: must be a positive int, got {embedding_dim!r}")
    prefix = world.feast_prefix if prefix is None else prefix
    if prefix and not prefix.replace("_", "a").isalnum():
        raise ConfigError(
            f"prefix: {prefix!r} may hold letters, digits and '_' only (it starts Feast object names)"
        )
    common: dict[str, Any] = {"owner": owner, "tags": {"system": "clicks2intent", **(tags or {})}}
    session, visitor, customer = _entities(dict(entities or {}), prefix, common)
    session_activity, session_intent = _session_views(
        sources, session, world, prefix, embedding_dim, session_ttl, common
    )
    visitor_web_intent, customer_web_intent = _web_intent_views(
        sources, visitor, customer, prefix, embedding_dim, web_intent_ttl, common
    )
    customer_profile = _profile_view(
        sources, customer, prefix, profile or profile_fields(world), profile_ttl, common
    )
    inflight_session, tile_candidates = _request_sources(prefix, common)
    inflight_session_intent, tile_affinity_view = _on_demand_views(
        inflight_session, tile_candidates, customer_web_intent, prefix, embedding_dim, artifacts_dir, common
    )
    session_affinity = _session_affinity_view(
        session_intent, visitor_web_intent, prefix, artifacts_dir, common
    )

    def service(name: str, features: list[Any], description: str) -> FeatureService:
        from feast import FeatureService

        return FeatureService(name=f"{prefix}{name}", features=features, description=description, **common)

    # Feature services -----------------------------------------------------------------------------
    return Clicks2IntentObjects(
        session=session,
        visitor=visitor,
        customer=customer,
        sources=sources,
        session_activity=session_activity,
        session_intent=session_intent,
        visitor_web_intent=visitor_web_intent,
        customer_web_intent=customer_web_intent,
        customer_profile=customer_profile,
        inflight_session=inflight_session,
        tile_candidates=tile_candidates,
        inflight_session_intent=inflight_session_intent,
        tile_affinity=tile_affinity_view,
        session_affinity=session_affinity,
        tile_ranker_baseline=service(
            TILE_RANKER_BASELINE,
            [customer_profile],
            "Tile ranker, production baseline: customer profile only.",
        ),
        tile_ranker_v1=service(
            TILE_RANKER_V1,
            [customer_profile, customer_web_intent, tile_affinity_view],
            f"Tile ranker v1: baseline + linked web intent + tile affinity (request: {CANDIDATE_TILES}).",
        ),
        conversion_baseline=service(
            CONVERSION_BASELINE, [session_activity], "Conversion, baseline: session statistics only."
        ),
        conversion_v1=service(
            CONVERSION_V1,
            [session_activity, session_intent, visitor_web_intent, session_affinity],
            "Conversion v1: baseline + session embedding/label + the visitor's decayed web intent + their "
            "tile affinities.",
        ),
    )


# --- The pieces of ``build``, in the Feast template's order ----------------------------------------
def _entities(
    given: Mapping[str, Entity], prefix: str, common: Mapping[str, Any]
) -> tuple[Entity, Entity, Entity]:
    """(session, visitor, customer): a team's own entity of that role, else ours (named with the prefix)."""
    from feast import Entity, ValueType

    def entity(name: str, key: str, description: str) -> Entity:
        return given.get(name) or Entity(
            name=f"{prefix}{name}",
            join_keys=[key],
            value_type=ValueType.STRING,
            description=description,
            **common,
        )

    session = entity(
        "session",
        C.SESSION_ID,
        "A web or app session: the unit the encoder embeds and the classifier labels.",
    )
    visitor = entity(
        "visitor", C.VISITOR_ID, "An anonymous web visitor (cookie/device): web intent before anyone logs in."
    )
    customer = entity(
        "customer", C.CUSTOMER_ID, "A bank customer: whom the recommenders rank for after login."
    )
    return session, visitor, customer


_DIST = "time-decayed label distribution (float32, one weight per label in the intent classifier's classes_ order)"


def _session_views(
    sources: Sources,
    session: Entity,
    world: World,
    prefix: str,
    embedding_dim: int,
    ttl: timedelta,
    common: Mapping[str, Any],
) -> tuple[FeatureView, FeatureView]:
    """(session_activity, session_intent): per-session rows known at session end."""
    from feast import Field, PushSource

    FeatureView = planned_feature_view()  # noqa: N806 - the class Feast's objects are built from
    from feast.types import Array, Float32, Float64, Int64, String

    emb = (
        f"L2-normalised session embedding from the clicks2intent encoder, dimension {embedding_dim} (float32)"
    )
    session_activity = FeatureView(
        name=f"{prefix}{SESSION_ACTIVITY}",
        entities=[session],
        ttl=ttl,
        source=sources.session_activity,
        description=(
            "Baseline session statistics (no web intent): counts, durations, funnel flags and the bag of "
            "page types, what a production team already has."
        ),
        schema=[
            Field(name=SESSION_N_EVENTS, dtype=Int64, description="events in the session"),
            Field(name=SESSION_DURATION_S, dtype=Float64, description="last minus first event time, seconds"),
            Field(name=SESSION_N_SEARCHES, dtype=Int64, description="search pages or events with a query"),
            Field(
                name=SESSION_N_APPLY_PAGES,
                dtype=Int64,
                description=f"application pages ({', '.join(world.funnel.apply)})",
            ),
            Field(
                name=SESSION_N_PRODUCT_PAGES,
                dtype=Int64,
                description=f"product pages ({len(world.funnel.product)} declared page types)",
            ),
            Field(name=SESSION_N_DISTINCT_PAGES, dtype=Int64, description="distinct page types"),
            Field(
                name=SESSION_MEAN_DWELL_S,
                dtype=Float64,
                description="mean known dwell, seconds (null if none known)",
            ),
            Field(name=SESSION_CHANNEL, dtype=String, description="web or app"),
            Field(
                name=SESSION_REACHED_APPLY_START,
                dtype=Int64,
                description=f"1 if the session reached {world.funnel.application_start}",
            ),
            Field(
                name=SESSION_REACHED_APPLY_FORM,
                dtype=Int64,
                description=f"1 if the session reached {world.funnel.application_form}",
            ),
        ]
        + [
            Field(name=name, dtype=Int64, description=f"views of page type {page} (bag of page types)")
            for name, page in zip(world.page_count_fields, world.page_types, strict=True)
        ],
        **common,
    )
    session_intent = FeatureView(
        name=f"{prefix}{SESSION_INTENT}",
        entities=[session],
        ttl=ttl,
        # A push source over the batch file: clicks2intent.features.push writes a session's embedding and
        # label online seconds after the session ends; materialize still reads the batch source.
        source=PushSource(name=f"{prefix}{SESSION_INTENT}_push", batch_source=sources.session_intent),
        description=f"Session embedding and distilled intent label, known at session end. Embedding dimension {embedding_dim}.",
        schema=[
            Field(name=C.EMBEDDING, dtype=Array(Float32), description=emb),
            Field(
                name=C.INTENT_LABEL,
                dtype=String,
                description="taxonomy label id from the distilled classifier",
            ),
            Field(
                name=C.INTENT_CONFIDENCE, dtype=Float64, description="classifier probability of that label"
            ),
            Field(
                name=C.TAXONOMY_VERSION,
                dtype=String,
                description="taxonomy the label belongs to (provenance)",
            ),
        ],
        **common,
    )
    return session_activity, session_intent


def _web_intent_views(
    sources: Sources,
    visitor: Entity,
    customer: Entity,
    prefix: str,
    embedding_dim: int,
    ttl: timedelta,
    common: Mapping[str, Any],
) -> tuple[FeatureView, FeatureView]:
    """(visitor_web_intent, customer_web_intent): the time-decayed aggregates, one row per change."""
    from feast import Field, PushSource

    FeatureView = planned_feature_view()  # noqa: N806 - the class Feast's objects are built from
    from feast.types import Array, Float32, Float64, Int64, String

    visitor_web_intent = FeatureView(
        name=f"{prefix}{VISITOR_WEB_INTENT}",
        entities=[visitor],
        ttl=ttl,
        # A push source over the batch file: clicks2intent.features.push writes a visitor's new aggregate
        # online seconds after one of its sessions ends; materialize still reads the batch source.
        source=PushSource(name=f"{prefix}{VISITOR_WEB_INTENT}_push", batch_source=sources.visitor_web_intent),
        description="A visitor's web intent as of each change: latest session's label and time-decayed mixes.",
        schema=[
            Field(
                name=VISITOR_INTENT_LABEL,
                dtype=String,
                description="label of the visitor's most recent session",
            ),
            Field(name=VISITOR_INTENT_CONFIDENCE, dtype=Float64, description="its classifier confidence"),
            Field(name=VISITOR_INTENT_DECAYED, dtype=Array(Float32), description=_DIST),
            Field(
                name=VISITOR_EMBEDDING_DECAYED,
                dtype=Array(Float32),
                description=f"time-decayed mean of session embeddings, unit length, dimension {embedding_dim}",
            ),
            Field(name=VISITOR_SESSIONS_30D, dtype=Int64, description="sessions ended in the last 30 days"),
        ],
        **common,
    )
    customer_web_intent = FeatureView(
        name=f"{prefix}{CUSTOMER_WEB_INTENT}",
        entities=[customer],
        ttl=ttl,
        source=sources.customer_web_intent,
        description=(
            "Web intent of the customer's LINKED visitors, point in time: a session counts from "
            "max(session end, linked_at); links or sessions after the row time never contribute."
        ),
        schema=[
            Field(
                name=CUSTOMER_INTENT_LABEL,
                dtype=String,
                description="label of the latest linked web session",
            ),
            Field(name=CUSTOMER_INTENT_CONFIDENCE, dtype=Float64, description="its classifier confidence"),
            Field(name=CUSTOMER_INTENT_DECAYED, dtype=Array(Float32), description=_DIST),
            Field(
                name=CUSTOMER_WEB_EMBEDDING,
                dtype=Array(Float32),
                description=f"time-decayed mean embedding of linked web sessions, unit length, dimension {embedding_dim}",
            ),
            Field(
                name=CUSTOMER_LINKED_VISITORS,
                dtype=Int64,
                description="visitors linked to the customer so far",
            ),
            Field(
                name=CUSTOMER_WEB_SESSIONS_30D,
                dtype=Int64,
                description="linked web sessions ended in the last 30 days",
            ),
        ]
        + [
            Field(
                name=name,
                dtype=Int64,
                description=f"linked web sessions ended in the last {name.rsplit('_', 1)[1]}",
            )
            for name in RECENT_WINDOW_NAMES
        ],
        **common,
    )
    return visitor_web_intent, customer_web_intent


def _profile_view(
    sources: Sources,
    customer: Entity,
    prefix: str,
    profile: Sequence[Any],
    ttl: timedelta,
    common: Mapping[str, Any],
) -> FeatureView:
    """customer_profile: the production baseline snapshot (the world's profile columns)."""
    FeatureView = planned_feature_view()  # noqa: N806 - the class Feast's objects are built from

    return FeatureView(
        name=f"{prefix}{CUSTOMER_PROFILE}",
        entities=[customer],
        ttl=ttl,
        source=sources.customer_profile,
        description="The production baseline: the customer table's declared profile columns.",
        schema=list(profile),
        **common,
    )


def _request_sources(prefix: str, common: Mapping[str, Any]) -> tuple[RequestSource, RequestSource]:
    """(inflight_session, tile_candidates): what a request sends beside its entity keys."""
    from feast import Field, RequestSource
    from feast.types import Array, Float64, Int64, String

    inflight_session = RequestSource(
        name=f"{prefix}{INFLIGHT_SESSION}",
        description="One in-flight web session sent with the request, as arrays aligned by event.",
        schema=[
            Field(name=INFLIGHT_PAGE_TYPES, dtype=Array(String)),
            Field(name=INFLIGHT_EVENT_TIMES_US, dtype=Array(Int64)),
            Field(
                name=INFLIGHT_DWELL_SECONDS,
                dtype=Array(Float64),
                description="seconds per event; unknown: NaN, a negative number, or send strings "
                '(["12.6", ""]): strict JSON has no NaN and Feast request arrays no null',
            ),
            Field(name=INFLIGHT_SEARCH_QUERIES, dtype=Array(String)),
            Field(name=INFLIGHT_CHANNEL, dtype=String),
            Field(name=INFLIGHT_DEVICE, dtype=String),
        ],
        **common,
    )
    tile_candidates = RequestSource(
        name=f"{prefix}{TILE_CANDIDATES}",
        description="The tiles the app may show on this homepage view.",
        schema=[Field(name=CANDIDATE_TILES, dtype=Array(String))],
        **common,
    )
    return inflight_session, tile_candidates


def _on_demand_views(
    inflight_session: RequestSource,
    tile_candidates: RequestSource,
    customer_web_intent: FeatureView,
    prefix: str,
    embedding_dim: int,
    artifacts_dir: str | None,
    common: Mapping[str, Any],
) -> tuple[OnDemandFeatureView, OnDemandFeatureView]:
    """(inflight_session_intent, tile_affinity): python-mode views over :mod:`~clicks2intent.features.transforms`."""
    from feast import Field
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.types import Array, Float32, Float64, String

    udf, source = python_udf(
        f"{prefix}{INFLIGHT_SESSION_INTENT}", inflight_intent_transform, artifacts_dir=artifacts_dir
    )
    inflight_session_intent = OnDemandFeatureView(
        name=f"{prefix}{INFLIGHT_SESSION_INTENT}",
        sources=[inflight_session],
        schema=[
            Field(name=INFLIGHT_EMBEDDING, dtype=Array(Float32)),
            Field(name=INFLIGHT_INTENT_LABEL, dtype=String),
            Field(name=INFLIGHT_INTENT_CONFIDENCE, dtype=Float64),
            Field(name=INFLIGHT_UNKNOWN_PAGE_SHARE, dtype=Float64),
        ],
        udf=udf,
        udf_string=source,
        mode="python",
        description=(
            f"Embedding ({embedding_dim}-d, float32) and distilled intent label/confidence of the in-flight "
            "session (exported encoder + classifier, loaded once per process); raw page names/URLs map "
            f"through the world declaration; {INFLIGHT_UNKNOWN_PAGE_SHARE}: share of events the models cannot "
            "read (at 1.0 the label is empty and the confidence NaN)."
        ),
        **common,
    )
    udf, source = python_udf(
        f"{prefix}{TILE_AFFINITY_VIEW}", tile_affinity_transform, artifacts_dir=artifacts_dir
    )
    tile_affinity_view = OnDemandFeatureView(
        name=f"{prefix}{TILE_AFFINITY_VIEW}",
        sources=[customer_web_intent[[CUSTOMER_WEB_EMBEDDING]], tile_candidates],
        schema=[Field(name=TILE_AFFINITY, dtype=Array(Float64))],
        udf=udf,
        udf_string=source,
        mode="python",
        description=(
            f"{TILE_AFFINITY}: cosine between the customer's web embedding and each of the request's "
            f"{CANDIDATE_TILES} prototypes, in candidate order; NaN = unknown."
        ),
        **common,
    )
    return inflight_session_intent, tile_affinity_view


def _session_affinity_view(
    session_intent: FeatureView,
    visitor_web_intent: FeatureView,
    prefix: str,
    artifacts_dir: str | None,
    common: Mapping[str, Any],
) -> OnDemandFeatureView:
    """session_affinity: the session's and the visitor's embeddings against every tile prototype, and
    the next-page distribution the encoder's head reads from them."""
    from feast import Field
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.types import Array, Float64

    udf, source = python_udf(
        f"{prefix}{SESSION_AFFINITY_VIEW}", session_affinity_transform, artifacts_dir=artifacts_dir
    )
    return OnDemandFeatureView(
        name=f"{prefix}{SESSION_AFFINITY_VIEW}",
        sources=[session_intent[[C.EMBEDDING]], visitor_web_intent[[VISITOR_EMBEDDING_DECAYED]]],
        schema=[
            Field(name=SESSION_TILE_AFFINITY, dtype=Array(Float64)),
            Field(name=VISITOR_TILE_AFFINITY, dtype=Array(Float64)),
            Field(name=SESSION_NEXT_PAGE, dtype=Array(Float64)),
            Field(name=VISITOR_NEXT_PAGE, dtype=Array(Float64)),
        ],
        udf=udf,
        udf_string=source,
        mode="python",
        description=(
            f"{SESSION_TILE_AFFINITY} / {VISITOR_TILE_AFFINITY}: cosine between the session's (the "
            "visitor's decayed) embedding and each tile's prototype, in the fixed tile order; "
            f"{SESSION_NEXT_PAGE} / {VISITOR_NEXT_PAGE}: log P(next page) of the encoder's next-event head "
            "from the same embeddings, per bag-of-pages page type; NaN = unknown."
        ),
        **common,
    )

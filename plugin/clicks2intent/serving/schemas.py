"""Request and response schemas of the service (pydantic), with their bounds and example inputs.

**Validation** is these schemas' job: a bad request fails before any feature read, with a message whose
``loc`` names the field. What the OpenAPI document promises is what is checked: ids follow
:data:`~clicks2intent.common.text.ID_PATTERN` (no whitespace, NUL, control or bidi characters), tiles
are an enum of the bank's tiles, ``session_events`` times lie in 1990-01-01 .. 2099 (a year pattern in
the document; no datetime arithmetic can overflow downstream). Sizes are bounded
(:data:`MAX_SESSION_EVENTS`, string lengths, ``k``) so one request cannot make a worker embed a
100k-event session. Nothing here loads a model or a store, so clients (the demo requests, the
benchmark) import it cheaply.

The tile enum, ``k``'s bound and the examples come from the bank's world declaration:
:func:`service_schemas` builds the request models of one world (the module-level classes are their
world-free bases: any tile id of the right form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, create_model, field_validator, model_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from clicks2intent.common.text import ID_PATTERN, MAX_ID_CHARS
from clicks2intent.common.times import REQUEST_YEAR_PATTERN, REQUEST_YEARS

if TYPE_CHECKING:
    from clicks2intent.data.world import World

# --- bounds on a request (oversized inputs are rejected with the field named) ---------------------
MAX_SESSION_EVENTS = 500  # above any real session seen; the encoder keeps the last max_len anyway
MAX_ID_LENGTH = MAX_ID_CHARS  # customer / visitor ids are opaque keys, never documents
MAX_TEXT_LENGTH = 512  # a search query or referrer; longer is abuse, not intent
MAX_PAGE_TYPE_LENGTH = 128
TOP_LABELS = 3  # /intent returns the top-3 labels

IntentSource = Literal["session", "visitor", "customer", "none"]
SOURCE_SESSION, SOURCE_VISITOR, SOURCE_CUSTOMER, SOURCE_NONE = "session", "visitor", "customer", "none"

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
MAX_TILES = 256  # the world-free bound; a world's schemas bound candidate_tiles and k by its own tiles
TileId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]  # data.world.NAME_RE
_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_CHARS,
    "pattern": ID_PATTERN,
}  # an enum in the OpenAPI document: unknown tiles are a 400 the schema announces


# --- the OpenAPI document BentoML serves is version 3.0, where ``{"type": "null"}`` does not exist ---
class OpenAPI30JsonSchema(GenerateJsonSchema):
    """Optional fields as OpenAPI 3.0 ``nullable: true`` instead of JSON Schema's ``anyOf [..., null]``.

    BentoML labels its document OpenAPI 3.0.2; read that way, pydantic's null branch is meaningless, so
    clients (and schemathesis) took ``"candidate_tiles": null`` for invalid and a ``null``
    explanation in a 200 for a schema violation, while the server sent and accepted both."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        if "$ref" in inner:  # siblings of $ref are ignored in 3.0
            return {"allOf": [inner], "nullable": True}
        if "enum" in inner:  # 3.0: an enum must list null itself for null to be valid
            return {**inner, "enum": [*inner["enum"], None], "nullable": True}
        return {**inner, "nullable": True}


class _Schema(BaseModel):
    """Base of every request and response model: its JSON schema is OpenAPI 3.0's dialect."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("schema_generator", OpenAPI30JsonSchema)
        return super().model_json_schema(*args, **kwargs)


# --- example inputs (OpenAPI docs, the demo requests, the benchmark): built from a world ----------
EXAMPLE_CUSTOMER_ID, EXAMPLE_VISITOR_ID = "customer-0001", "visitor-0001"


@dataclass(frozen=True)
class Examples:
    """Request bodies that read like one of the bank's visitors: its own pages, its first product."""

    events: list[dict[str, Any]]
    rank_tiles: dict[str, Any]
    conversion: dict[str, Any]
    intent: dict[str, Any]


def examples(world: World) -> Examples:
    """A research session on the world's site: a first page, a search, the first product's page, the
    application's start (the page types are the declaration's, so the example is the bank's own)."""
    funnel = world.funnel
    product = next((t for t in world.tiles if world.tile_pages.get(t)), world.tiles[0])
    product_page = (world.tile_pages.get(product) or funnel.product or world.page_types)[0]
    steps: list[tuple[str, float, str | None]] = [(world.page_types[0], 6.0, None)]
    if funnel.search:
        steps.append((funnel.search[0], 12.0, product.replace("_", " ")))  # searched for the product
    steps += [(product_page, 95.0, None), (funnel.application_start, 140.0, None)]
    events = []
    for i, (page, dwell, query) in enumerate(steps):
        e: dict[str, Any] = {
            "page_type": page,
            "event_timestamp": f"2024-06-29T10:0{i}:{10 * i:02d}Z",
            "dwell_seconds": dwell,
            "channel": "web",
        }
        if query:
            e["search_query"] = query
        events.append(e)
    return Examples(
        events=events,
        # k within the world's own bound (a world may declare only two tiles)
        rank_tiles={
            "customer_id": EXAMPLE_CUSTOMER_ID,
            "session_events": events,
            "k": min(3, len(world.tiles)),
        },
        conversion={"visitor_id": EXAMPLE_VISITOR_ID, "session_events": events},
        intent={"session_events": events},
    )


# --- request schemas ----------------------------------------------------------------------------
class SessionEvent(_Schema):
    """One event of the in-flight web session, in the clickstream contract's columns."""

    model_config = ConfigDict(extra="forbid")

    page_type: str = Field(
        min_length=1,
        max_length=MAX_PAGE_TYPE_LENGTH,
        pattern=r"\S",  # not blank
        description="Page type, or the raw page name / URL (mapped through the bank's world declaration); "
        "unknown pages map to the OOV id and are counted in the answer's unknown_page_share.",
    )
    event_timestamp: datetime = Field(
        description="When the event happened (ISO 8601, UTC if no offset), in the years 1990 to 2099; "
        "orders the events and their gaps.",
        json_schema_extra={"pattern": REQUEST_YEAR_PATTERN},
    )
    dwell_seconds: Annotated[float, Strict()] | None = Field(
        None, ge=0, le=86_400, description="Seconds on the page (missing allowed)."
    )
    search_query: str | None = Field(
        None, max_length=MAX_TEXT_LENGTH, description="Search text; PII is scrubbed before it is featurised."
    )
    channel: Literal["web", "app"] | None = Field(None, description="'web' or 'app'.")
    device: str | None = Field(None, max_length=64, description="Device class, e.g. 'mobile'.")
    referrer: str | None = Field(
        None, max_length=MAX_TEXT_LENGTH, description="Referrer (not a model input)."
    )

    @field_validator("page_type")
    @classmethod
    def _page_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("page_type must not be blank")
        return v.strip()

    @field_validator("event_timestamp")
    @classmethod
    def _plausible_time(cls, v: datetime) -> datetime:
        if not REQUEST_YEARS[0] <= v.year <= REQUEST_YEARS[1]:
            raise ValueError(
                f"event_timestamp year {v.year} is outside {REQUEST_YEARS[0]}..{REQUEST_YEARS[1]}"
            )
        return v

    @field_validator("dwell_seconds")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("dwell_seconds must be finite")
        return v


SessionEvents = Annotated[
    list[SessionEvent],
    Field(
        max_length=MAX_SESSION_EVENTS,
        description=f"Events of the visitor's current web session, oldest first (at most {MAX_SESSION_EVENTS}).",
    ),
]


class RankTilesRequest(_Schema):
    """Order the app homepage tiles for a customer (POST /rank_tiles)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Id = Field(description="Logged-in customer; unknown customers get the baseline ranking.")
    visitor_id: Id | None = Field(
        None, description="Web visitor id of this device, if known (fresher web intent)."
    )
    session_events: SessionEvents = Field(default_factory=list)
    candidate_tiles: list[TileId] | None = Field(
        None,
        min_length=1,
        max_length=MAX_TILES,
        json_schema_extra={"uniqueItems": True},
        description="Tiles to rank, each once (default: all).",
    )
    k: Annotated[int, Strict()] = Field(
        3, ge=1, le=MAX_TILES, description="How many tiles to return, best first."
    )
    explain: Annotated[bool, Strict()] = Field(
        False, description="Add feature contributions grouped as baseline / embedding / labels."
    )

    @field_validator("candidate_tiles")
    @classmethod
    def _distinct_tiles(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if len(set(v)) != len(v):
            raise ValueError("candidate_tiles must not repeat a tile")
        return v


class ConversionRequest(_Schema):
    """Which product will this visitor apply for (POST /predict_conversion)?"""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # what _something_to_score checks, stated in the OpenAPI document
            "anyOf": [
                {"required": ["visitor_id"], "properties": {"visitor_id": _ID_SCHEMA}},
                {"required": ["session_events"], "properties": {"session_events": {"minItems": 1}}},
            ],
        },
    )

    visitor_id: Id | None = Field(None, description="Web visitor id (its stored web intent is used).")
    session_events: SessionEvents = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_score(self) -> ConversionRequest:
        if self.visitor_id is None and not self.session_events:
            raise ValueError("give visitor_id and/or session_events (both are missing)")
        return self


class IntentRequest(_Schema):
    """Embed and label one in-flight session (POST /intent)."""

    model_config = ConfigDict(extra="forbid")

    session_events: Annotated[
        list[SessionEvent],
        Field(
            min_length=1, max_length=MAX_SESSION_EVENTS, description="Events of the session, oldest first."
        ),
    ]


# --- response schemas ---------------------------------------------------------------------------
class TileScore(_Schema):
    tile_id: str = Field(description="Tile id (one of the bank's tiles).")
    score: float = Field(description="Model probability that the customer clicks this tile.")


class IntentInfo(_Schema):
    label: str | None = Field(
        description="Intent label id of the taxonomy, or null when no web intent is known."
    )
    confidence: float | None = Field(description="Classifier confidence of that label.")
    source: IntentSource = Field(
        description="Where the web intent came from: session > visitor > customer > none."
    )
    unknown_page_share: float | None = Field(
        None,
        description="Share of the in-flight session's events whose page the models cannot read (OOV or "
        "never seen in training); null without an in-flight session. At 1.0 the session is not used.",
    )


class ModelInfo(_Schema):
    name: str = Field(description="Model name in the BentoML store (= its Feast feature service).")
    version: str = Field(description="Model version in the store.")


class Contribution(_Schema):
    feature: str
    group: str
    contribution: float


class Explanation(_Schema):
    tile_id: str = Field(description="The explained tile (the top-ranked one).")
    groups: dict[str, float] = Field(
        description="Margin contribution per group (baseline/embedding/labels/bias)."
    )
    top_features: list[Contribution]


class RankTilesResponse(_Schema):
    tiles: list[TileScore]
    intent: IntentInfo
    model: ModelInfo
    explanation: Explanation | None = None


class ConversionResponse(_Schema):
    probabilities: dict[str, float] = Field(description="Probability per product, and 'none'.")
    predicted_product: str = Field(description="Most likely outcome ('none' = no application).")
    intent: IntentInfo
    model: ModelInfo


class LabelScore(_Schema):
    label: str
    confidence: float


class IntentResponse(_Schema):
    embedding: list[float] = Field(description="L2-normalised session embedding.")
    label: str | None = Field(
        description="Distilled intent label id; null when no page of the session is readable (see "
        "unknown_page_share): the classifier would only repeat its prior."
    )
    label_name: str | None = Field(None, description="Human-readable name of the label.")
    confidence: float | None = Field(description="Classifier confidence of the label (null without a label).")
    top3: list[LabelScore]
    taxonomy_version: str
    unknown_page_share: float = Field(
        description="Share of the session's events whose page the models cannot read (OOV or never seen)."
    )


@dataclass(frozen=True)
class ServiceSchemas:
    """The request models of one world (its tile enum, ``k`` bound and examples) and its examples."""

    world_name: str
    tiles: tuple[str, ...]
    rank_tiles: type[RankTilesRequest]
    conversion: type[ConversionRequest]
    intent: type[IntentRequest]
    examples: Examples


_BUILT: dict[str, ServiceSchemas] = {}


def _service_schemas(world: World) -> ServiceSchemas:
    ex = examples(world)
    tiles = tuple(world.tiles)
    tile = Literal[tiles]  # type: ignore[valid-type]  # an enum in the OpenAPI document
    rank = create_model(
        "RankTilesRequest",
        __base__=RankTilesRequest,
        __doc__=RankTilesRequest.__doc__,
        candidate_tiles=(
            list[tile] | None,  # type: ignore[valid-type]
            Field(
                None,
                min_length=1,
                max_length=len(tiles),
                json_schema_extra={"uniqueItems": True},
                description=f"Tiles to rank, each once (default: all). Known tiles: {', '.join(tiles)}.",
            ),
        ),
        k=(
            Annotated[int, Strict()],
            Field(3, ge=1, le=len(tiles), description="How many tiles to return, best first."),
        ),
    )
    rank.model_config = ConfigDict(extra="forbid", json_schema_extra={"example": ex.rank_tiles})
    rank.model_rebuild(force=True)

    def with_example(base: type[_Schema], example: dict[str, Any]) -> type[Any]:
        model = create_model(base.__name__, __base__=base, __doc__=base.__doc__)
        extra = dict(base.model_config.get("json_schema_extra") or {}) | {"example": example}
        model.model_config = ConfigDict(extra="forbid", json_schema_extra=extra)
        model.model_rebuild(force=True)
        return model

    return ServiceSchemas(
        world_name=world.name,
        tiles=tiles,
        rank_tiles=rank,
        conversion=with_example(ConversionRequest, ex.conversion),
        intent=with_example(IntentRequest, ex.intent),
        examples=ex,
    )


def service_schemas(world: World) -> ServiceSchemas:
    """The request models and examples of ``world`` (built once per declaration)."""
    key = world.digest
    if key not in _BUILT:
        _BUILT[key] = _service_schemas(world)
    return _BUILT[key]

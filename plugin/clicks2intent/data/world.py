"""A bank's world, declared once in one file: what every stage knows about the bank it runs for.

clicks2intent holds no constant of any bank's world. Each bank writes a ``world.yaml`` (or has
``c2i world propose`` draft one from its data) that names:

* its app homepage **tiles** (the tile ranker's classes) and, for each, the web page types whose visit
  shows interest in it (the tile prototypes);
* its **products** (the conversion model's classes, beside ``none``);
* its web **pages**: each page type with the raw page names or URL paths that map to it (glob
  patterns, ``re:`` for a regular expression; first match in declaration order wins; a raw value equal
  to a type's name is that type; anything else is :data:`~clicks2intent.names.columns.OOV_PAGE_TYPE`,
  and the share that went there is reported), and its **app pages** (screens the app logs: known, but
  not part of the web features);
* the **funnel**: which page types are search results, product pages, the application's start and form;
* the **profile**: the customer table's baseline columns and their kinds (``int``, ``float``,
  ``bool``, ``string``);
* the **conversion horizon** and a **Feast prefix** for every entity, view and service name;
* optionally **keywords**, the word table of the word-match reference rule the label reports show.

Every stage reads the same :class:`World`: validation maps raw pages through it, the feature job
counts its page types and casts its profile columns, the Feast objects' fields are generated from it,
the models' classes are its tiles and products, serving's tile enum and examples come from it. A name
the declaration promises but the data lack is a clear error, never a silent null or zero. The format,
key by key: ``docs/world.md``.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from clicks2intent.common.files import write_text
from clicks2intent.errors import ArtifactError, ConfigError, ContractError
from clicks2intent.names import columns as C
from clicks2intent.names import features as N

WORLD_VERSION = 1
# Page types, tiles, products and profile columns become Feast field names and model columns.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PROFILE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
PREFIX_RE = re.compile(r"^(?:[a-z][a-z0-9_]{0,30})?$")
PROFILE_KINDS: tuple[str, ...] = ("int", "float", "bool", "string")  # PROFILE_ARROW's keys
PROFILE_ARROW: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}
RESERVED = frozenset({C.NO_CLICK, C.NO_CONVERSION})
REGEX_PREFIX = "re:"
DEFAULT_MAX_OOV_SHARE = 0.5  # more unmatched events than this: the declaration does not describe the data
_TOP_KEYS = (
    "version", "name", "tiles", "products", "pages", "app_pages", "funnel", "profile",
    "conversion_horizon_days", "feast", "keywords", "max_oov_share",
)  # fmt: skip
_FUNNEL_KEYS = ("search", "product", "apply", "application_start", "application_form")
_FEAST_KEYS = ("prefix",)


def _yaml_dumper() -> type:
    """Mappings in block style, lists of names in flow style: one line per tile, page or column."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(
        list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
    )
    Dumper.add_representer(
        dict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=False)
    )
    return Dumper


_SECTION_COMMENTS = {
    "tiles": "App homepage tiles (the tile ranker's classes): tile -> web page types whose visit shows interest in it.",
    "products": "What a visitor can apply for (the conversion model's classes, beside 'none').",
    "pages": "Web page types -> raw page names or URL paths (globs, 're:' regexes; first match wins; [] = the name itself).",
    "app_pages": "App screens: known page types, not part of the web features.",
    "funnel": "The steps a production team already tracks (baseline features).",
    "profile": "Customer-table columns of the production baseline -> kind (int, float, bool, string).",
    "conversion_horizon_days": "An application this many days after a web session is that session's conversion.",
    "feast": "Prefix of every Feast entity, source, view and service name.",
    "max_oov_share": "More events matching no page type than this share is an error (the declaration is wrong).",
    "keywords": "The word-match reference rule: label -> words (reports show it beside the LLM labels).",
}
_MAPPER_CACHE_MAX = 200_000  # distinct raw pages remembered per mapper (serving maps each request's)


@dataclass(frozen=True)
class Funnel:
    """Which page types are steps a production team already tracks (the baseline's funnel features)."""

    product: tuple[str, ...]  # product pages: session_n_product_pages
    application_start: str  # the application's first page: session_reached_apply_start
    application_form: str  # the application form: session_reached_apply_form
    apply: tuple[str, ...]  # every application page: session_n_apply_pages
    search: tuple[str, ...] = ()  # search-result pages (an event with a query counts as a search too)


@dataclass(frozen=True)
class World:
    """One bank's declaration (see the module docstring); build it with :func:`load_world`."""

    name: str
    tiles: tuple[str, ...]
    tile_pages: Mapping[str, tuple[str, ...]]
    products: tuple[str, ...]
    page_types: tuple[str, ...]  # web page types, declaration order (bag of pages, next-page features)
    page_patterns: Mapping[str, tuple[str, ...]]
    app_page_types: tuple[str, ...]
    app_page_patterns: Mapping[str, tuple[str, ...]]
    funnel: Funnel
    profile: Mapping[str, str]  # customer-profile column -> kind
    conversion_horizon_days: float
    feast_prefix: str = ""
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    max_oov_share: float = DEFAULT_MAX_OOV_SHARE
    source: str = ""  # where it was read from (messages only)

    # --- derived names ---------------------------------------------------------------------------
    @property
    def known_page_types(self) -> tuple[str, ...]:
        """Every declared page type, web then app."""
        return self.page_types + self.app_page_types

    @property
    def page_count_fields(self) -> tuple[str, ...]:
        """The bag-of-pages fields of session_activity, one per web page type."""
        return tuple(N.page_count_field(p) for p in self.page_types)

    @property
    def session_activity_fields(self) -> tuple[str, ...]:
        """Every session_activity feature: the library's statistics, then the bag of this world's pages."""
        return N.SESSION_STAT_FIELDS + self.page_count_fields

    def feast_name(self, name: str) -> str:
        """A Feast entity, view, source or service name with the bank's prefix."""
        return f"{self.feast_prefix}{name}"

    def profile_columns(self) -> list[str]:
        return list(self.profile)

    def profile_schema(self) -> dict[str, pa.DataType]:
        """The profile columns with the Arrow type each kind is cast to, in declaration order."""
        return {name: PROFILE_ARROW[kind] for name, kind in self.profile.items()}

    def classes(self, task: str) -> tuple[str, ...]:
        """The classes of a task's model: ``tile_ranking`` → the tiles; ``conversion`` → products + none."""
        if task == "tile_ranking":
            return self.tiles
        if task == "conversion":
            return self.products + (C.NO_CONVERSION,)
        raise ConfigError(f"task: {task!r} is not tile_ranking or conversion")

    def rule_keywords(self) -> dict[str, tuple[str, ...]]:
        """The word-match rule's table: the declared ``keywords``, else per tile the words of its name
        and of its pages' names (what a bank's analyst would write first)."""
        if self.keywords:
            return {k: tuple(v) for k, v in self.keywords.items()}
        return {t: tuple(dict.fromkeys([t, *self.tile_pages.get(t, ())])) for t in self.tiles}

    @functools.cached_property
    def mapper(self) -> PageMapper:
        """The compiled raw-page → page-type mapping (built once per world object)."""
        return PageMapper(self)

    # --- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The declaration as plain data (what :func:`parse_world` reads back to an equal world)."""
        out: dict[str, Any] = {
            "version": WORLD_VERSION,
            "name": self.name,
            "tiles": {t: list(self.tile_pages.get(t, ())) for t in self.tiles},
            "products": list(self.products),
            "pages": {p: list(self.page_patterns.get(p, ())) for p in self.page_types},
            "app_pages": {p: list(self.app_page_patterns.get(p, ())) for p in self.app_page_types},
            "funnel": {
                "search": list(self.funnel.search),
                "product": list(self.funnel.product),
                "apply": list(self.funnel.apply),
                "application_start": self.funnel.application_start,
                "application_form": self.funnel.application_form,
            },
            "profile": dict(self.profile),
            "conversion_horizon_days": self.conversion_horizon_days,
            "feast": {"prefix": self.feast_prefix},
            "max_oov_share": self.max_oov_share,
        }
        if self.keywords:
            out["keywords"] = {k: list(v) for k, v in self.keywords.items()}
        return out

    def to_yaml(self) -> str:
        """The declaration as YAML, each section under a comment saying what it is for."""
        import yaml

        _Dumper = _yaml_dumper()  # noqa: N806 - a class
        lines = [
            f"# clicks2intent world declaration: {self.name} (format: docs/world.md).",
            "# One bank's tiles, products, page types, funnel steps and profile columns; every stage reads it.",
        ]
        for key, value in self.to_dict().items():
            if key in _SECTION_COMMENTS:
                lines.append(f"# {_SECTION_COMMENTS[key]}")
            text = yaml.dump({key: value}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
            lines.append(text.rstrip("\n"))
        return "\n".join(lines) + "\n"

    @property
    def digest(self) -> str:
        """A short hash of the declaration: models and feature sources record the world they were built on."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- reading and checking a declaration ---------------------------------------------------------------
def _fail(where: str, key: str, rule: str) -> ConfigError:
    return ConfigError(f"{where}: {key}: {rule}")


def _name(value: Any, where: str, key: str, what: str, pattern: re.Pattern[str] = NAME_RE) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise _fail(
            where,
            key,
            f"{what} {value!r} must match {pattern.pattern} (it becomes a Feast field or a model column)",
        )
    if value in RESERVED:
        raise _fail(where, key, f"{what} {value!r} is reserved (it means 'no click / no conversion')")
    return value


def _str_list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(where, key, f"must be a list of non-empty strings, got {value!r}")
    return tuple(v.strip() for v in value)


def _patterns(value: Any, where: str, key: str) -> tuple[str, ...]:
    patterns = _str_list(value, where, key)
    for p in patterns:
        if p.startswith(REGEX_PREFIX):
            try:
                re.compile(p[len(REGEX_PREFIX) :])
            except re.error as err:
                raise _fail(where, key, f"pattern {p!r} is not a valid regular expression ({err})") from None
    return patterns


def _page_section(
    value: Any, where: str, key: str, required: bool
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """A page section: a mapping type → patterns, or a plain list of type names (no patterns)."""
    if value is None and not required:
        return (), {}
    if isinstance(value, list):
        value = dict.fromkeys(value)
    if not isinstance(value, dict) or (required and not value):
        raise _fail(where, key, "must map each page type to its raw names/URL patterns (at least one type)")
    types: list[str] = []
    patterns: dict[str, tuple[str, ...]] = {}
    for page, pats in value.items():
        _name(page, where, f"{key}.{page}", "page type")
        types.append(page)
        patterns[page] = _patterns(pats, where, f"{key}.{page}")
    return tuple(types), patterns


def _mapping(value: Any, where: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, key, f"must be a mapping, got {type(value).__name__}")
    return value


def _unknown_keys(data: Mapping[str, Any], known: Sequence[str], where: str, key: str) -> None:
    unknown = [k for k in data if k not in known]
    if unknown:
        raise _fail(where, f"{key}{unknown[0]}", f"unknown key (known: {', '.join(known)})")


def parse_world(data: Any, source: str = "world.yaml") -> World:
    """Check a declaration (parsed YAML) and build the :class:`World`; each error is one line naming the key."""
    where = source
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the declaration must be a YAML mapping (see docs/world.md)")
    _unknown_keys(data, _TOP_KEYS, where, "")
    version = data.get("version", WORLD_VERSION)
    if version != WORLD_VERSION:
        raise _fail(where, "version", f"must be {WORLD_VERSION}, got {version!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(where, "name", "must be a non-empty string (the bank's or world's name)")

    page_types, page_patterns = _page_section(data.get("pages"), where, "pages", required=True)
    app_types, app_patterns = _page_section(data.get("app_pages"), where, "app_pages", required=False)
    both = set(page_types) & set(app_types)
    if both:
        raise _fail(where, f"app_pages.{sorted(both)[0]}", "is also declared under pages (one kind per type)")
    web = set(page_types)

    def web_page(value: Any, key: str) -> str:
        if value not in web:
            raise _fail(where, key, f"page type {value!r} is not declared under pages")
        return str(value)

    raw_tiles = data.get("tiles")
    if isinstance(raw_tiles, list):
        raw_tiles = dict.fromkeys(raw_tiles)
    if not isinstance(raw_tiles, dict) or len(raw_tiles) < 2:
        raise _fail(
            where, "tiles", "must map at least two tile ids to the page types that show interest in them"
        )
    tiles: list[str] = []
    tile_pages: dict[str, tuple[str, ...]] = {}
    for tile, pages in raw_tiles.items():
        _name(tile, where, f"tiles.{tile}", "tile id")
        tiles.append(tile)
        tile_pages[tile] = tuple(
            web_page(p, f"tiles.{tile}") for p in _str_list(pages, where, f"tiles.{tile}")
        )

    raw_products = data.get("products")
    products = _str_list(raw_products, where, "products")
    if not products:
        raise _fail(where, "products", "must list at least one product a visitor can apply for")
    for p in products:
        _name(p, where, f"products.{p}", "product id")
    for what, values in (("tiles", tiles), ("products", products)):
        dup = [v for v, n in Counter(values).items() if n > 1]
        if dup:
            raise _fail(where, what, f"{dup[0]!r} is declared twice")

    raw_funnel = _mapping(data.get("funnel"), where, "funnel")
    _unknown_keys(raw_funnel, _FUNNEL_KEYS, where, "funnel.")
    for required in ("product", "application_start", "application_form"):
        if not raw_funnel.get(required):
            raise _fail(
                where, f"funnel.{required}", "is required (see docs/world.md: the baseline's funnel features)"
            )
    start = web_page(raw_funnel["application_start"], "funnel.application_start")
    form = web_page(raw_funnel["application_form"], "funnel.application_form")
    funnel = Funnel(
        product=tuple(
            web_page(p, "funnel.product") for p in _str_list(raw_funnel["product"], where, "funnel.product")
        ),
        application_start=start,
        application_form=form,
        apply=tuple(
            web_page(p, "funnel.apply")
            for p in (_str_list(raw_funnel.get("apply"), where, "funnel.apply") or (start, form))
        ),
        search=tuple(
            web_page(p, "funnel.search") for p in _str_list(raw_funnel.get("search"), where, "funnel.search")
        ),
    )

    raw_profile = data.get("profile")
    if not isinstance(raw_profile, dict) or not raw_profile:
        raise _fail(
            where,
            "profile",
            "must map at least one customer-table column to its kind (int, float, bool, string)",
        )
    profile: dict[str, str] = {}
    for col, kind in raw_profile.items():
        _name(col, where, f"profile.{col}", "profile column", PROFILE_NAME_RE)
        if col in (C.CUSTOMER_ID, C.EVENT_TIMESTAMP):
            raise _fail(where, f"profile.{col}", "is the table's key/time column, not a profile feature")
        if col in N.FEATURE_GROUPS or col.startswith(N.SESSION_PAGES_PREFIX):
            raise _fail(where, f"profile.{col}", "is a clicks2intent feature name; rename the column")
        if kind not in PROFILE_KINDS:
            raise _fail(where, f"profile.{col}", f"kind {kind!r} must be one of {', '.join(PROFILE_KINDS)}")
        profile[col] = kind

    horizon = data.get("conversion_horizon_days", 14)
    if isinstance(horizon, bool) or not isinstance(horizon, int | float) or not 0 < horizon <= 366:
        raise _fail(
            where, "conversion_horizon_days", f"must be a number of days in (0, 366], got {horizon!r}"
        )

    feast = _mapping(data.get("feast"), where, "feast")
    _unknown_keys(feast, _FEAST_KEYS, where, "feast.")
    prefix = feast.get("prefix") or ""
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise _fail(
            where, "feast.prefix", f"{prefix!r} must match {PREFIX_RE.pattern} (it starts Feast names)"
        )

    keywords: dict[str, tuple[str, ...]] = {}
    for label, words in _mapping(data.get("keywords"), where, "keywords").items():
        if not isinstance(label, str) or not label.strip():
            raise _fail(where, "keywords", f"label {label!r} must be a non-empty string")
        ws = _str_list(words, where, f"keywords.{label}")
        if not ws:
            raise _fail(where, f"keywords.{label}", "needs at least one word")
        keywords[label] = ws

    max_oov = data.get("max_oov_share", DEFAULT_MAX_OOV_SHARE)
    if isinstance(max_oov, bool) or not isinstance(max_oov, int | float) or not 0 <= max_oov <= 1:
        raise _fail(where, "max_oov_share", f"must be a share in [0, 1], got {max_oov!r}")

    return World(
        name=name.strip(),
        tiles=tuple(tiles),
        tile_pages=tile_pages,
        products=products,
        page_types=page_types,
        page_patterns=page_patterns,
        app_page_types=app_types,
        app_page_patterns=app_patterns,
        funnel=funnel,
        profile=profile,
        conversion_horizon_days=float(horizon),
        feast_prefix=prefix,
        keywords=keywords,
        max_oov_share=float(max_oov),
        source=source,
    )


def load_world(path: str | Path) -> World:
    """Read and check a ``world.yaml``; a missing or malformed file is one error line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"world declaration {path} not found: write one (`c2i world propose DATA_DIR > world.yaml`, "
            "docs/world.md) or pass --world"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    return parse_world(data, str(path))


def write_world(world: World, path: str | Path) -> Path:
    """Write the declaration (atomically, by one job at a time: a reader never sees half a file)."""
    return write_text(path, world.to_yaml())


def resolve_world_path(explicit: str | Path | None, data_dir: str | Path | None) -> Path:
    """The declaration a command reads: ``--world``, else ``$C2I_WORLD``, else ``<data dir>/world.yaml``."""
    from clicks2intent.common.settings import Settings
    from clicks2intent.names.paths import WORLD_FILE

    if explicit:
        return Path(explicit)
    env = Settings.load().world
    if env:
        return Path(env)
    if data_dir is None:
        raise ConfigError("world: no declaration given: pass --world PATH or set C2I_WORLD")
    return Path(data_dir) / WORLD_FILE


# --- raw page → page type -----------------------------------------------------------------------------
def normalise_page(raw: str) -> str:
    """The form patterns match: stripped, lower case; a URL or path keeps its path only (no scheme, host,
    query or fragment, percent-decoded, no trailing slash)."""
    text = raw.strip()
    if "://" in text or text.startswith("/"):
        parts = urlsplit(text if "://" in text else f"x://h{text}")
        text = unquote(parts.path) or "/"
        if len(text) > 1:
            text = text.rstrip("/") or "/"
    return text.lower()


@dataclass
class PageMappingReport:
    """How raw page values mapped: events per page type and what went to OOV (paths only, scrubbed)."""

    n_events: int = 0
    n_oov: int = 0
    per_type: dict[str, int] = field(default_factory=dict)
    top_unmatched: list[tuple[str, int]] = field(default_factory=list)
    unused_types: list[str] = field(default_factory=list)

    @property
    def oov_share(self) -> float:
        return self.n_oov / self.n_events if self.n_events else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_events": self.n_events,
            "n_oov": self.n_oov,
            "oov_share": round(self.oov_share, 6),
            "top_unmatched": [list(t) for t in self.top_unmatched],
            "unused_types": self.unused_types,
        }

    def to_text(self) -> str:
        line = f"page types: {self.n_oov:,} of {self.n_events:,} events unmatched ({self.oov_share:.1%}) → {C.OOV_PAGE_TYPE}"
        if self.top_unmatched:
            line += "; most frequent unmatched: " + ", ".join(
                f"{p} ({n:,})" for p, n in self.top_unmatched[:5]
            )
        if self.unused_types:
            line += f"; declared but never seen: {', '.join(self.unused_types[:8])}"
        return line


class PageMapper:
    """Raw page names / URLs → the world's page types (declaration order, first match wins; else OOV).

    Each distinct raw value is matched once and remembered (bounded), so mapping a file or a request
    costs a dict lookup per event."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.known = frozenset(world.known_page_types)
        self._rules: list[tuple[str, Any]] = []
        for page in world.known_page_types:
            patterns = world.page_patterns.get(page) or world.app_page_patterns.get(page) or ()
            for p in patterns:
                if p.startswith(REGEX_PREFIX):
                    self._rules.append((page, re.compile(p[len(REGEX_PREFIX) :], re.IGNORECASE).fullmatch))
                else:
                    rx = re.compile(fnmatch.translate(normalise_page(p) if p.startswith("/") else p.lower()))
                    self._rules.append((page, rx.match))
        self._cache: dict[str, str] = {}

    def __call__(self, raw: Any) -> str:
        """One raw value → its page type, or the OOV token (blank/missing → OOV as well)."""
        if not isinstance(raw, str):
            return C.OOV_PAGE_TYPE
        hit = self._cache.get(raw)
        if hit is not None:
            return hit
        out = self._match(raw)
        if len(self._cache) < _MAPPER_CACHE_MAX:
            self._cache[raw] = out
        return out

    def _match(self, raw: str) -> str:
        text = raw.strip()
        if text in self.known:
            return text
        norm = normalise_page(text)
        if norm in self.known:
            return norm
        for page, match in self._rules:
            if match(norm):
                return page
        return C.OOV_PAGE_TYPE

    def map_values(self, values: Iterable[Any]) -> tuple[list[str], PageMappingReport]:
        """Map a column of raw values; the report counts events per type and the unmatched raw paths."""
        from clicks2intent.data.pii import scrub

        values = list(values)
        distinct = Counter(v if isinstance(v, str) else None for v in values)
        table = {v: self(v) for v in distinct}
        out = [table[v if isinstance(v, str) else None] for v in values]
        report = PageMappingReport(n_events=len(values))
        per_type: Counter[str] = Counter()
        unmatched: Counter[str] = Counter()
        for v, n in distinct.items():
            page = table[v]
            per_type[page] += n
            if page == C.OOV_PAGE_TYPE and v != C.OOV_PAGE_TYPE:
                unmatched[scrub(normalise_page(v)) if v is not None else "<missing>"] += n
            if page == C.OOV_PAGE_TYPE:
                report.n_oov += n
        report.per_type = dict(per_type)
        report.top_unmatched = unmatched.most_common(10)
        report.unused_types = [p for p in self.world.known_page_types if p not in per_type]
        return out, report


def check_page_types(values: Iterable[Any], world: World, what: str) -> None:
    """Mapped events hold declared page types or OOV only: a raw value means the mapping step was skipped."""
    known = set(world.known_page_types) | {C.OOV_PAGE_TYPE}
    stray = [v for v in dict.fromkeys(values) if v is not None and v not in known]
    if stray:
        raise ContractError(
            f"{what}: page_type {str(stray[0])[:80]!r} (and {len(stray) - 1} other value(s)) is not a page type of "
            f"world {world.name!r} ({world.source}): map raw pages first with "
            "`c2i validate EVENTS --world WORLD --out CLEAN.parquet` (or `c2i ingest ga4`)"
        )


def check_labels(values: Iterable[Any], allowed: Sequence[str], what: str, column: str, world: World) -> None:
    """Task-log labels must be declared classes (or 'none'): an undeclared tile or product is an error."""
    ok = set(allowed)
    seen = list(dict.fromkeys(values))
    if any(v is None or (isinstance(v, float) and v != v) for v in seen):
        raise ContractError(
            f"{what}: {column} has null values; use '{C.NO_CLICK}' for no click / no conversion"
        )
    bad = [str(v) for v in seen if str(v) not in ok]
    if bad:
        raise ContractError(
            f"{what}: {column} value {bad[0]!r} (and {len(bad) - 1} other(s)) is not declared in world "
            f"{world.name!r} ({world.source}); declared: {', '.join(a for a in allowed if a != C.NO_CLICK)}"
        )

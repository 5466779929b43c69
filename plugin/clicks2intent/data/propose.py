"""A bank's first ``world.yaml``, proposed from its data (``c2i world propose``), and a declaration checked
against a data directory (``c2i world check``).

**Proposing** reads what a bank hands over: raw page views (a GA4 export: :mod:`clicks2intent.data.ingest`,
or an events file whose ``page_type`` holds raw page names or URLs), ``customers.parquet``,
``tile_impressions.parquet`` and ``conversions.parquet``. It writes a *first draft* to edit, never a final
declaration:

* **pages**: URL paths are grouped by their first path segment, and a frequent second segment becomes its
  own page type (``/mortgages/green-mortgage`` → ``mortgages_green_mortgage``: ``["/mortgages/green-mortgage",
  "/mortgages/green-mortgage/*"]``), listed before its section's catch-all (``mortgages``:
  ``["/mortgages", "/mortgages/*"]``) since the first match wins; plain page names become page types of
  their own. Groups under :data:`MIN_PAGE_SHARE` of the page views (or past :data:`MAX_PAGE_TYPES`) are
  left to ``<OOV>``, and that tail's share and most frequent paths (scrubbed) are a comment. Path segments
  holding PII or ids are never made into a pattern. App screens become ``app_pages``;
* **profile**: ``customers.parquet``'s columns (beside ``customer_id`` / ``event_timestamp``) with the kind
  of their Arrow type; columns of no profile kind are left out in a comment;
* **tiles** and **products**: the clicked tile ids and converted products the task logs hold;
* **guesses**, each marked ``# check:``: the pages of each tile (most shared words between the tile id and
  the page type's name), the funnel (pages named like search, apply / application; the product pages are
  the pages guessed for the products), the conversion horizon (from ``converted_at`` when present).

**Checking** (:func:`check_world`) reports, one line each: declared profile columns missing from
``customers.parquet`` or not castable to their kind, clicked tiles and converted products the declaration
does not have (errors), the share of page views matching no page type (an error above the declaration's
``max_oov_share``) and the page types never seen (a warning).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clicks2intent.data.contract import readable_file
from clicks2intent.data.ingest import GA4_SUFFIXES, ga4_files, read_ga4
from clicks2intent.data.pii import scrub
from clicks2intent.data.world import (
    NAME_RE,
    PROFILE_NAME_RE,
    PageMappingReport,
    World,
    check_labels,
    normalise_page,
    parse_world,
)
from clicks2intent.errors import ArtifactError, ContractError
from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names.paths import ARTIFACTS

logger = logging.getLogger(__name__)

MIN_PAGE_SHARE = 0.002  # a page group with fewer page views than this is left to <OOV>
MAX_PAGE_TYPES = 60  # more page types than this is not a first draft anyone reviews
MAX_CHILDREN = 12  # a section with more frequent sub-paths than this (ids, places) stays one page type
HOME_SEGMENTS = frozenset({"home", "index.html", "index.htm", "index.php", "default.aspx"})
_SEARCH_WORDS = frozenset({"search", "find", "results"})
_APPLY_WORDS = frozenset({"apply", "application", "applications", "onboarding", "signup"})
_START_WORDS = frozenset({"start", "begin", "step1", "eligibility"})
_FORM_WORDS = ("form", "detail", "submit", "review", "step2")  # in order of preference
_GENERIC_WORDS = frozenset({"page", "www", "html", "htm", "index", "the", "and", "my", "your"})
_ID_SEGMENT = re.compile(r"^(?=.*\d)[A-Za-z0-9_-]{8,}$|^\d+$")  # ids, dates, numbers: not a page type
_JSON_SUFFIXES = tuple(s for s in GA4_SUFFIXES if s not in (".parquet", ".pq"))
_TASK_FILES = {
    "customers": ARTIFACTS.customers.name,
    "tile_impressions": ARTIFACTS.tile_impressions.name,
    "conversions": ARTIFACTS.conversions.name,
}


# --- which files hold what --------------------------------------------------------------------------
@dataclass
class BankFiles:
    """A bank's files, found in data directories or given one by one."""

    ga4: list[Path] = field(default_factory=list)
    events: list[Path] = field(default_factory=list)  # contract-shaped events (raw or mapped page_type)
    customers: Path | None = None
    tile_impressions: Path | None = None
    conversions: Path | None = None

    @property
    def page_source(self) -> str:
        """Where the page views were read (for comments and messages)."""
        if self.ga4:
            folders = ", ".join(dict.fromkeys(str(f.parent) for f in self.ga4))
            return f"{len(self.ga4)} GA4 export file(s) in {folders}"
        return ", ".join(str(f) for f in self.events)


def _parquet_columns(path: Path) -> list[str]:
    with readable_file(path):
        return pq.ParquetFile(path).schema_arrow.names


def _classify(path: Path, files: BankFiles, scanned: bool = False) -> None:
    """Sort one file into ``files``; in a scanned directory only ``events*`` JSON files are GA4 tables (a
    directory also holds reports and settings as JSON)."""
    for attr, name in _TASK_FILES.items():
        if path.name == name:
            setattr(files, attr, path)
            return
    suffix = path.name.lower().removesuffix(".gz")
    if suffix.endswith((".parquet", ".pq")):
        cols = _parquet_columns(path)
        if "event_name" in cols:
            files.ga4.append(path)
        elif C.PAGE_TYPE in cols:
            files.events.append(path)
    elif suffix.endswith(_JSON_SUFFIXES) and (not scanned or path.name.startswith("events")):
        files.ga4.append(path)
    elif suffix.endswith(".csv") and path.stem.startswith("events"):
        files.events.append(path)


def find_bank_files(sources: Sequence[str | Path]) -> BankFiles:
    """Data directories (their files and those one folder down, e.g. ``ga4/``) or files, classified by
    name (``customers.parquet``, ...) and by content (GA4 rows have ``event_name``; events ``page_type``)."""
    files = BankFiles()
    for src in map(Path, sources):
        if src.is_dir():
            found = sorted(p for p in src.iterdir() if p.is_file())
            found += sorted(
                p for d in sorted(src.iterdir()) if d.is_dir() for p in d.iterdir() if p.is_file()
            )
            for p in found:
                _classify(p, files, scanned=True)
        elif src.is_file():
            _classify(src, files)
        else:
            raise ArtifactError(f"{src}: no such file or data directory")
    if files.ga4:
        files.ga4, _ = ga4_files(files.ga4)  # an intraday table beside its daily one counts once
    return files


def page_counts(files: BankFiles) -> tuple[Counter[str], Counter[str]]:
    """Page views per raw web page (URL path, or name) and per app screen: from the GA4 export when there
    is one (the raw pages), else from the events files' ``page_type`` (by ``channel``)."""
    web: Counter[str] = Counter()
    app: Counter[str] = Counter()
    if files.ga4:
        for path in files.ga4:
            for table, _ in read_ga4(path):
                pages = table.filter(pc.equal(table["kind"], 0)).to_pandas()
                for (name, value), n in pages.groupby(["name", "page"]).size().items():
                    (app if name == "screen_view" else web)[value] += int(n)  # distinct values: cheap
    else:
        for path in files.events:
            frame = _events_pages(path)
            is_app = (
                frame[C.CHANNEL] == "app" if C.CHANNEL in frame.columns else pd.Series(False, frame.index)
            )
            web.update(frame.loc[~is_app, C.PAGE_TYPE].value_counts().to_dict())
            app.update(frame.loc[is_app, C.PAGE_TYPE].value_counts().to_dict())
    out = []
    for counts in (web, app):
        raw: Counter[str] = Counter()
        for value, n in counts.items():
            if isinstance(value, str) and value.strip() and value != C.OOV_PAGE_TYPE:
                raw[_raw_page(value)] += n
        out.append(raw)
    return out[0], out[1]


def _events_pages(path: Path) -> pd.DataFrame:
    """An events file's page_type (and channel) columns."""
    with readable_file(path, "events file"):
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        else:
            cols = [c for c in (C.PAGE_TYPE, C.CHANNEL) if c in _parquet_columns(path)]
            frame = pq.read_table(path, columns=cols).to_pandas()
    if C.PAGE_TYPE not in frame.columns:
        raise ContractError(f"{path}: missing required column ['{C.PAGE_TYPE}']: rule 'required_column'")
    return frame


def _raw_page(value: str) -> str:
    text = value.strip()
    return normalise_page(text) if "://" in text or text.startswith("/") else text


# --- names and words --------------------------------------------------------------------------------
def _slug(text: str) -> str:
    """A page type / section name: lower case, words joined by '_', starting with a letter."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"p_{name}" if name else "page"
    return name[:63]


def _words(name: str) -> set[str]:
    """Words of a name, singular (mortgages → mortgage), without generic ones."""
    out = set()
    for w in re.split(r"[^a-z0-9]+", name.lower()):
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        if w and w not in _GENERIC_WORDS:
            out.add(w)
    return out


def _glob_literal(value: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", value)


def _q(value: str) -> str:
    """A YAML scalar for any string (JSON strings are YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _flow(values: Iterable[str], quote: bool = False) -> str:
    return "[" + ", ".join(_q(v) if quote else v for v in values) + "]"


# --- pages ------------------------------------------------------------------------------------------
@dataclass
class PageGroup:
    """One proposed page type: its name, patterns, page views and whether it is a section's catch-all."""

    name: str
    patterns: list[str]
    count: int
    hub: bool = False
    section: str = ""


def _usable_segment(segment: str) -> bool:
    return bool(segment) and scrub(segment) == segment and not _ID_SEGMENT.match(segment)


def group_paths(counts: Counter[str]) -> list[PageGroup]:
    """URL paths → page groups: the home page; per first segment a catch-all, and its frequent second
    segments as groups of their own (listed before the catch-all). Most frequent sections first."""
    total = sum(counts.values())
    floor = max(1, math.ceil(MIN_PAGE_SHARE * total))
    home = PageGroup("home", ["/"], 0)
    sections: dict[str, Counter[str]] = {}
    for path, n in counts.items():
        parts = [p for p in path.split("/") if p]
        if not parts:
            home.count += n
            continue
        first = parts[0]
        if first in HOME_SEGMENTS and len(parts) == 1:
            if f"/{first}" not in home.patterns:
                home.patterns.append(f"/{first}")
            home.count += n
            continue
        if not _usable_segment(first):
            continue  # a path starting with PII or an id stays unmatched (reported in the tail)
        sections.setdefault(first, Counter())[parts[1] if len(parts) > 1 else ""] += n
    groups: list[tuple[int, list[PageGroup]]] = []
    for first, children in sections.items():
        base = f"/{first}"
        frequent = [c for c, n in children.most_common() if c and n >= floor and _usable_segment(c)]
        split = (
            frequent
            if 1 < len(frequent) <= MAX_CHILDREN or (len(frequent) == 1 and children[""] >= floor)
            else []
        )
        section = [
            PageGroup(_slug(f"{first}_{c}"), [f"{base}/{c}", f"{base}/{c}/*"], children[c], section=first)
            for c in split
        ]
        rest = sum(children.values()) - sum(g.count for g in section)
        if rest:
            section.append(PageGroup(_slug(first), [base, f"{base}/*"], rest, hub=bool(split), section=first))
        groups.append((sum(children.values()), section))
    out = [home] if home.count else []
    for _, section in sorted(groups, key=lambda t: -t[0]):
        out += section
    return _dedupe_names(out)


def group_names(counts: Counter[str]) -> list[PageGroup]:
    """Plain page names → one page type each (the name itself when it is a valid name)."""
    out = []
    for value, n in counts.most_common():
        name = _slug(value)
        patterns = [] if name == value else [_glob_literal(value)]
        out.append(PageGroup(name, patterns, n))
    return _dedupe_names(out)


def _dedupe_names(groups: list[PageGroup]) -> list[PageGroup]:
    """Groups whose names collide are merged (same name from '/a-b' and '/a_b' is one page type)."""
    by_name: dict[str, PageGroup] = {}
    for g in groups:
        if g.name in by_name:
            kept = by_name[g.name]
            kept.patterns += [p for p in g.patterns if p not in kept.patterns]
            kept.count += g.count
        else:
            by_name[g.name] = g
    return list(by_name.values())


def _keep(groups: list[PageGroup], total: int, limit: int) -> tuple[list[PageGroup], int]:
    """The groups kept (at least MIN_PAGE_SHARE, at most ``limit``, in order) and the page views left out."""
    ranked = sorted(groups, key=lambda g: -g.count)
    keep = {id(g) for g in ranked[:limit] if g.count >= MIN_PAGE_SHARE * total}
    kept = [g for g in groups if id(g) in keep]
    return kept, total - sum(g.count for g in kept)


def _tail(counts: Counter[str], world_pages: list[PageGroup], limit: int = 5) -> list[tuple[str, int]]:
    """The most frequent raw pages no kept group's pattern matches (scrubbed: paths can hold PII)."""
    rules = [
        re.compile(fnmatch.translate(p))
        for g in world_pages
        for p in (g.patterns or [g.name])
        if p.startswith("/")
    ]
    names = {g.name for g in world_pages} | {p for g in world_pages for p in g.patterns}
    out: Counter[str] = Counter()
    for value, n in counts.items():
        if value in names or any(r.match(value) for r in rules):
            continue
        out[scrub(value)] += n
    return out.most_common(limit)


# --- the proposal -----------------------------------------------------------------------------------
@dataclass
class _Tables:
    profile: list[tuple[str, str | None, str]]  # column, kind (None: left out), Arrow type
    tiles: list[tuple[str, int]]  # tile id, clicks
    products: list[tuple[str, int]]
    horizon: tuple[float, str]  # days, why


def _read_column(path: Path | None, what: str, column: str) -> pa.ChunkedArray:
    if path is None:
        raise ArtifactError(
            f"{what} not found among the given files: `c2i world propose` needs it ({_TASK_FILES[what]})"
        )
    with readable_file(path):
        if column not in pq.ParquetFile(path).schema_arrow.names:
            raise ContractError(f"{path}: missing column '{column}': rule 'required_column'")
        return pq.read_table(path, columns=[column])[column]


def _value_counts(values: pa.ChunkedArray, reserved: str) -> list[tuple[str, int]]:
    """Distinct labels and their rows, most frequent first (nulls and the 'none' label left out)."""
    counts = pc.value_counts(values.drop_null()).to_pylist()
    out = Counter({str(c["values"]): int(c["counts"]) for c in counts if str(c["values"]) != reserved})
    return out.most_common()


def _profile_kind(t: pa.DataType) -> str | None:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return None


def _tables(files: BankFiles) -> _Tables:
    if files.customers is None:
        raise ArtifactError("customers.parquet not found among the given files: the profile section needs it")
    with readable_file(files.customers):
        schema = pq.ParquetFile(files.customers).schema_arrow
    profile = [
        (f.name, _profile_kind(f.type), str(f.type))
        for f in schema
        if f.name not in (C.CUSTOMER_ID, C.EVENT_TIMESTAMP)
    ]
    tiles = _value_counts(
        _read_column(files.tile_impressions, "tile_impressions", C.CLICKED_TILE), C.NO_CLICK
    )
    products = _value_counts(
        _read_column(files.conversions, "conversions", C.CONVERSION_PRODUCT), C.NO_CONVERSION
    )
    return _Tables(profile, tiles, products, _horizon(files.conversions))


def _horizon(path: Path | None) -> tuple[float, str]:
    """Days from a web session to its application: the 99th percentile of ``converted_at`` - session end."""
    if path is None or "converted_at" not in _parquet_columns(path):
        return 14.0, "no converted_at column: 14 days is a guess"
    with readable_file(path):
        t = pq.read_table(path, columns=[C.EVENT_TIMESTAMP, "converted_at"]).to_pandas()
    days = (t["converted_at"] - t[C.EVENT_TIMESTAMP]).dt.total_seconds().dropna() / 86_400
    if not len(days):
        return 14.0, "no application has a converted_at: 14 days is a guess"
    q = float(np.quantile(days, 0.99))
    horizon = float(min(max(math.ceil(q), 1), 366))
    return horizon, f"99% of applications came within {q:.1f} days of the session"


def _guess_pages(label: str, groups: list[PageGroup]) -> list[str]:
    """The page types sharing the most words with a tile or product id (catch-alls only if nothing else)."""
    want = _words(label)
    if not want:
        return []

    def score(g: PageGroup) -> float:
        have = _words(g.name)
        return len(want & have) / len(want | have) if have else 0.0

    groups = [g for g in groups if g.name != "home"]  # the site's front page shows interest in nothing
    for candidates in ([g for g in groups if not g.hub], [g for g in groups if g.hub]):
        scored = sorted(((score(g), g.name) for g in candidates), key=lambda t: -t[0])
        if scored and scored[0][0] > 0:
            best = scored[0][0]
            return [name for s, name in scored if s >= max(best * 0.6, 0.25)][:3]
    return []


def _named(groups: list[PageGroup], words: frozenset[str]) -> list[str]:
    return [g.name for g in groups if _words(g.name) & words]


def propose_world(sources: Sequence[str | Path] | str | Path, *, name: str | None = None) -> str:
    """A first ``world.yaml`` (YAML text with ``# check:`` comments) from a bank's data; it parses with
    :func:`~clicks2intent.data.world.parse_world` (checked before it is returned)."""
    srcs = [sources] if isinstance(sources, str | Path) else list(sources)
    files = find_bank_files(srcs)
    if not files.ga4 and not files.events:
        raise ArtifactError(
            f"{', '.join(map(str, srcs))}: no page views found (a GA4 export: events_*.json[.gz]/.parquet, "
            "or an events file with page_type)"
        )
    web, app = page_counts(files)
    if not web:
        raise ContractError(f"{files.page_source}: no web page views to propose page types from")
    is_path = sum(n for v, n in web.items() if v.startswith("/")) >= 0.5 * sum(web.values())
    all_groups = group_paths(web) if is_path else group_names(web)
    total = sum(web.values())
    pages, left = _keep(all_groups, total, MAX_PAGE_TYPES)
    app_groups, _ = _keep(group_names(app), sum(app.values()) or 1, MAX_PAGE_TYPES)
    taken = {g.name for g in pages}
    for g in app_groups:
        if g.name in taken:  # one kind per page type: the app screen gets its own name
            g.patterns = g.patterns or [_glob_literal(g.name)]
            g.name = _slug(f"app_{g.name}")
    logger.info(
        "world propose: %d page types cover %.1f%% of %s page views (%s)",
        len(pages), 100 * (1 - left / total), f"{total:,}", files.page_source,
    )  # fmt: skip
    tables = _tables(files)
    text = _render(
        name or _slug(Path(srcs[0]).resolve().name).replace("_", "-"),
        files,
        pages,
        app_groups,
        tables,
        web,
        left,
    )
    import yaml

    parse_world(yaml.safe_load(text), "proposed world.yaml")  # never hand out what fails to parse
    return text


def _render(
    name: str,
    files: BankFiles,
    pages: list[PageGroup],
    app_groups: list[PageGroup],
    tables: _Tables,
    web: Counter[str],
    left: int,
) -> str:
    total = sum(web.values())
    lines = [
        f"# clicks2intent world declaration: a FIRST DRAFT by `c2i world propose` from {files.page_source}",
        "# (format: docs/world.md). Every guess is marked '# check:'. Edit it, then run",
        "# `c2i world check world.yaml --data DIR` and `c2i ingest ga4 ... --world world.yaml`.",
        "version: 1",
        f"name: {_q(name)}  # check: the bank's name",
    ]
    lines += _render_tiles(pages, tables)
    products = [p for p, _ in tables.products if NAME_RE.match(p)]
    lines.append(
        "# What a visitor can apply for (conversions.parquet's product values, most frequent first)."
    )
    lines.append(f"products: {_flow(products)}")
    lines += [
        f"# check: product {p!r} is not a valid name ({NAME_RE.pattern}): rename it in the data"
        for p, _ in tables.products
        if p not in products
    ]
    tail = _tail(web, pages)
    lines.append(
        "# Web page types -> URL paths (globs; first match wins: sub-paths come before their section)."
    )
    lines.append(
        f"# From {total:,} page views. Left to <OOV>: {left / total:.1%} of them"
        + (": " + ", ".join(f"{p} ({n:,})" for p, n in tail) if tail else "")
    )
    lines.append("pages:")
    for g in pages:
        note = " check: merge or rename freely" if g.hub else ""
        lines.append(
            f"  {g.name}: {_flow(g.patterns, quote=True)}  # {g.count / total:.1%} of page views;{note}".rstrip(
                ";"
            )
        )
    if app_groups:
        n_app = sum(g.count for g in app_groups)
        lines.append("# App screens (known page types, not part of the web features).")
        lines.append("app_pages:")
        lines += [
            f"  {g.name}: {_flow(g.patterns, quote=True)}  # {g.count / n_app:.1%} of app screen views"
            for g in app_groups
        ]
    lines += _render_funnel(pages, tables)
    lines += _render_profile(tables)
    days, why = tables.horizon
    lines.append(f"conversion_horizon_days: {days:g}  # check: {why}")
    lines.append("feast:")
    lines.append(
        '  prefix: ""  # check: a prefix for every Feast name (e.g. "mybank_") when several banks share a store'
    )
    lines.append("max_oov_share: 0.5")
    return "\n".join(lines) + "\n"


def _render_tiles(pages: list[PageGroup], tables: _Tables) -> list[str]:
    lines = [
        "# App homepage tiles (tile_impressions.parquet's clicked_tile_id values) -> the pages showing interest."
    ]
    tiles = [(t, n) for t, n in tables.tiles if NAME_RE.match(t)]
    if len(tiles) < 2:
        raise ContractError(
            f"tile_impressions: {len(tiles)} valid clicked tile id(s) "
            f"({', '.join(t for t, _ in tables.tiles[:5]) or 'none'}): a world needs at least two tiles"
        )
    lines.append("tiles:")
    for tile, n in tiles:
        guess = _guess_pages(tile, pages)
        why = (
            f"guessed from shared words ({', '.join(sorted(_words(tile)))})"
            if guess
            else "no page shares a word with it: add its pages"
        )
        lines.append(f"  {tile}: {_flow(guess)}  # check: {why}; {n:,} clicks")
    lines += [
        f"# check: tile {t!r} is not a valid name ({NAME_RE.pattern}): rename it in the data"
        for t, _ in tables.tiles
        if not NAME_RE.match(t)
    ]
    return lines


def _render_funnel(pages: list[PageGroup], tables: _Tables) -> list[str]:
    names = [g.name for g in pages]
    search = _named(pages, _SEARCH_WORDS)
    product = list(dict.fromkeys(p for prod, _ in tables.products for p in _guess_pages(prod, pages)))
    apply = _named(pages, _APPLY_WORDS)
    start = next((p for p in apply if _words(p) & _START_WORDS), apply[0] if apply else None)
    form = next(
        (p for w in _FORM_WORDS for p in apply if w in _words(p) and p != start), apply[-1] if apply else None
    )
    fallback = next((n for n in names if n != "home"), names[0])
    lines = ["# The steps a production team already tracks (the baseline's funnel features).", "funnel:"]
    lines.append(f"  search: {_flow(search)}  # check: pages named like search")
    lines.append(
        f"  product: {_flow(product or [fallback])}  # check: "
        + (
            "the pages guessed for the products"
            if product
            else "no page matches a product: name the product pages"
        )
    )
    lines.append(
        f"  apply: {_flow(apply or [fallback])}  # check: "
        + ("pages named like apply/application" if apply else "no application page found: name them")
    )
    lines.append(f"  application_start: {start or fallback}  # check: the application's first page")
    lines.append(f"  application_form: {form or start or fallback}  # check: the application form")
    return lines


def _render_profile(tables: _Tables) -> list[str]:
    lines = ["# customers.parquet's columns (the production baseline) -> kind (int, float, bool, string)."]
    kept = []
    for col, kind, arrow in tables.profile:
        if kind is None:
            lines.append(f"#   {col}: {arrow} is no profile kind (int, float, bool, string): left out")
        elif (
            not PROFILE_NAME_RE.match(col)
            or col in N.FEATURE_GROUPS
            or col.startswith(N.SESSION_PAGES_PREFIX)
        ):
            lines.append(
                f"#   {col}: not usable as a feature name (a clicks2intent feature, or {PROFILE_NAME_RE.pattern}): left out"
            )
        else:
            kept.append(f"  {col}: {kind}  # {arrow}")
    if not kept:
        raise ContractError(
            "customers.parquet: no column besides customer_id/event_timestamp has a profile kind"
        )
    return [*lines, "profile:", *kept]


# --- checking a declaration against a data directory ------------------------------------------------
@dataclass
class WorldCheck:
    """Findings of :func:`check_world`: errors make the declaration inconsistent with the data."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        return (
            [f"error: {e}" for e in self.errors]
            + [f"warning: {w}" for w in self.warnings]
            + [f"ok: {n}" for n in self.notes]
        )


def _check_profile(world: World, path: Path | None, check: WorldCheck) -> None:
    if path is None:
        check.errors.append("customers.parquet not found: the profile columns cannot be checked")
        return
    with readable_file(path):
        present = pq.ParquetFile(path).schema_arrow.names
    missing = [c for c in world.profile if c not in present]
    for col in missing:
        check.errors.append(
            f"{path}: profile column '{col}' ({world.profile[col]}) declared in {world.source} is missing "
            f"(columns: {', '.join([c for c in present if c not in (C.CUSTOMER_ID, C.EVENT_TIMESTAMP)][:10])})"
        )
    cols = [c for c in world.profile if c in present]
    if not cols:
        return
    with readable_file(path):
        table = pq.read_table(path, columns=cols)
    bad = 0
    for col in cols:
        try:
            table[col].cast(world.profile_schema()[col])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            bad += 1
            check.errors.append(
                f"{path}: profile column '{col}' of type {table[col].type} does not cast to "
                f"{world.profile[col]} ({str(err).splitlines()[0][:100]})"
            )
    if not missing and not bad:
        check.notes.append(f"profile: {len(cols)} column(s) present and castable to their kinds")


def _check_labels(world: World, path: Path | None, what: str, column: str, check: WorldCheck) -> None:
    if path is None:
        check.errors.append(f"{_TASK_FILES[what]} not found: its {column} values cannot be checked")
        return
    values = _read_column(path, what, column)
    allowed = (
        world.classes("tile_ranking") + (C.NO_CLICK,)
        if what == "tile_impressions"
        else world.classes("conversion")
    )
    try:
        check_labels(pc.unique(values).to_pylist(), allowed, str(path), column, world)
    except ContractError as err:
        check.errors.append(str(err))
    else:
        check.notes.append(f"{path.name}: every {column} value is declared")


def _check_pages(world: World, files: BankFiles, check: WorldCheck) -> None:
    if not files.ga4 and not files.events:
        check.warnings.append("no page views found (no GA4 export, no events file): page types not checked")
        return
    web, app = page_counts(files)
    counts = web + app
    mapper = world.mapper
    report = PageMappingReport(n_events=sum(counts.values()))
    per_type: Counter[str] = Counter()
    unmatched: Counter[str] = Counter()
    for value, n in counts.items():
        page = mapper(value)
        per_type[page] += n
        if page == C.OOV_PAGE_TYPE:
            report.n_oov += n
            unmatched[scrub(value)] += n
    report.top_unmatched = unmatched.most_common(5)
    line = f"{files.page_source}: " + report.to_text()
    if report.oov_share > world.max_oov_share:
        check.errors.append(f"{line} (rule max_oov_share {world.max_oov_share:.0%})")
    else:
        check.notes.append(line)
    unseen = [p for p in world.page_types if p not in per_type]
    if app:
        unseen += [p for p in world.app_page_types if p not in per_type]
    elif world.app_page_types:
        check.notes.append(f"app_pages not checked: {files.page_source} hold no app screen views")
    if unseen:
        check.warnings.append(
            f"{len(unseen)} page type(s) declared but never seen in {report.n_events:,} page views "
            f"(a pattern that matches nothing?): {', '.join(unseen)}"
        )


def check_world(world: World, data: str | Path | Sequence[str | Path]) -> WorldCheck:
    """Check a declaration against a data directory (``c2i world check``): profile columns, tile and
    product labels, page coverage. Raw page views (a GA4 export) are preferred to ``events.parquet``."""
    files = find_bank_files([data] if isinstance(data, str | Path) else data)
    check = WorldCheck()
    _check_profile(world, files.customers, check)
    _check_labels(world, files.tile_impressions, "tile_impressions", C.CLICKED_TILE, check)
    _check_labels(world, files.conversions, "conversions", C.CONVERSION_PRODUCT, check)
    _check_pages(world, files, check)
    return check

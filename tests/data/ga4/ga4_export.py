"""GA4 BigQuery export rows for the ingest tests, written from the documented export schema.

The schema (https://support.google.com/analytics/answer/7029846): one row per event; ``event_date``
(YYYYMMDD, the property's time zone), ``event_timestamp`` (INT64, µs UTC), ``event_name``,
``event_params`` (REPEATED RECORD of ``key`` and ``value{string_value, int_value, float_value,
double_value}``), ``user_id`` (set when the site sends one), ``user_pseudo_id``, ``device{category, ...,
web_info{browser, browser_version, hostname}}``, ``geo{...}``, ``traffic_source{name, medium, source}``,
``collected_traffic_source{...}``, ``platform`` (WEB, ANDROID, IOS), ``stream_id``, ``batch_*`` ordering
fields. Daily tables are ``events_YYYYMMDD``; the streaming export writes ``events_intraday_YYYYMMDD``.

:func:`write_ndjson` writes rows as a BigQuery JSON export does (INT64 values as JSON strings, nulls
kept); :func:`write_parquet` writes them with the nested types (:data:`GA4_SCHEMA`, INT64 as int64).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

HOST = "https://www.harborfederal.example"
STREAM_ID = "4209811234"

_VALUE = pa.struct(
    [
        ("string_value", pa.string()),
        ("int_value", pa.int64()),
        ("float_value", pa.float64()),
        ("double_value", pa.float64()),
    ]
)
_PARAMS = pa.list_(pa.struct([("key", pa.string()), ("value", _VALUE)]))
_USER_VALUE = pa.struct(
    [
        ("string_value", pa.string()),
        ("int_value", pa.int64()),
        ("float_value", pa.float64()),
        ("double_value", pa.float64()),
        ("set_timestamp_micros", pa.int64()),
    ]
)
_SOURCE = pa.struct([("name", pa.string()), ("medium", pa.string()), ("source", pa.string())])
GA4_SCHEMA = pa.schema(
    [
        ("event_date", pa.string()),
        ("event_timestamp", pa.int64()),
        ("event_name", pa.string()),
        ("event_params", _PARAMS),
        ("event_previous_timestamp", pa.int64()),
        ("event_value_in_usd", pa.float64()),
        ("event_bundle_sequence_id", pa.int64()),
        ("event_server_timestamp_offset", pa.int64()),
        ("user_id", pa.string()),
        ("user_pseudo_id", pa.string()),
        (
            "privacy_info",
            pa.struct(
                [
                    ("analytics_storage", pa.string()),
                    ("ads_storage", pa.string()),
                    ("uses_transient_token", pa.string()),
                ]
            ),
        ),
        ("user_properties", pa.list_(pa.struct([("key", pa.string()), ("value", _USER_VALUE)]))),
        ("user_first_touch_timestamp", pa.int64()),
        ("user_ltv", pa.struct([("revenue", pa.float64()), ("currency", pa.string())])),
        (
            "device",
            pa.struct(
                [
                    ("category", pa.string()),
                    ("mobile_brand_name", pa.string()),
                    ("mobile_model_name", pa.string()),
                    ("operating_system", pa.string()),
                    ("operating_system_version", pa.string()),
                    ("language", pa.string()),
                    ("is_limited_ad_tracking", pa.string()),
                    (
                        "web_info",
                        pa.struct(
                            [
                                ("browser", pa.string()),
                                ("browser_version", pa.string()),
                                ("hostname", pa.string()),
                            ]
                        ),
                    ),
                ]
            ),
        ),
        (
            "geo",
            pa.struct(
                [
                    ("city", pa.string()),
                    ("country", pa.string()),
                    ("continent", pa.string()),
                    ("region", pa.string()),
                    ("sub_continent", pa.string()),
                    ("metro", pa.string()),
                ]
            ),
        ),
        (
            "app_info",
            pa.struct([("id", pa.string()), ("version", pa.string()), ("install_source", pa.string())]),
        ),
        ("traffic_source", _SOURCE),
        ("stream_id", pa.string()),
        ("platform", pa.string()),
        ("event_dimensions", pa.struct([("hostname", pa.string())])),
        ("items", pa.list_(pa.struct([("item_id", pa.string()), ("item_name", pa.string())]))),
        (
            "collected_traffic_source",
            pa.struct(
                [
                    ("manual_campaign_name", pa.string()),
                    ("manual_source", pa.string()),
                    ("manual_medium", pa.string()),
                    ("gclid", pa.string()),
                ]
            ),
        ),
        ("is_active_user", pa.bool_()),
        ("batch_event_index", pa.int64()),
        ("batch_page_id", pa.int64()),
        ("batch_ordering_id", pa.int64()),
    ]
)
_INT_FIELDS = {f.name for f in GA4_SCHEMA if pa.types.is_integer(f.type)}


def _value(v: Any) -> dict[str, Any]:
    """One event_params value record: exactly one of its four fields set."""
    out: dict[str, Any] = {"string_value": None, "int_value": None, "float_value": None, "double_value": None}
    if isinstance(v, bool | str):
        out["string_value"] = str(v)
    elif isinstance(v, int):
        out["int_value"] = v
    else:
        out["double_value"] = float(v)
    return out


def event(
    name: str,
    ts_us: int,
    user_pseudo_id: str | None,
    ga_session_id: int | None,
    params: dict[str, Any] | None = None,
    *,
    user_id: str | None = None,
    platform: str = "WEB",
    device: str = "desktop",
) -> dict[str, Any]:
    """One export row as GA4 writes it (the fields the schema documents; unused ones null or empty)."""
    all_params = {**({"ga_session_id": ga_session_id} if ga_session_id is not None else {}), **(params or {})}
    import datetime as _dt

    day = _dt.datetime.fromtimestamp(ts_us / 1e6, tz=_dt.UTC).strftime("%Y%m%d")
    return {
        "event_date": day,
        "event_timestamp": ts_us,
        "event_name": name,
        "event_params": [{"key": k, "value": _value(v)} for k, v in all_params.items()],
        "event_previous_timestamp": None,
        "event_value_in_usd": None,
        "event_bundle_sequence_id": 1_000_000 + ts_us % 997,
        "event_server_timestamp_offset": 512,
        "user_id": user_id,
        "user_pseudo_id": user_pseudo_id,
        "privacy_info": {"analytics_storage": "Yes", "ads_storage": "No", "uses_transient_token": "No"},
        "user_properties": [],
        "user_first_touch_timestamp": ts_us - 86_400_000_000,
        "user_ltv": None,
        "device": {
            "category": device,
            "mobile_brand_name": "Apple" if device != "desktop" else "Google",
            "mobile_model_name": "iPhone" if device != "desktop" else "Chrome",
            "operating_system": "iOS" if platform == "IOS" or device == "mobile" else "Windows",
            "operating_system_version": "iOS 17.5" if device == "mobile" else "Windows 11",
            "language": "en-gb",
            "is_limited_ad_tracking": "No",
            "web_info": None
            if platform != "WEB"
            else {"browser": "Chrome", "browser_version": "126.0", "hostname": HOST.split("//")[1]},
        },
        "geo": {
            "city": "Leeds",
            "country": "United Kingdom",
            "continent": "Europe",
            "region": "England",
            "sub_continent": "Northern Europe",
            "metro": "(not set)",
        },
        "app_info": None
        if platform == "WEB"
        else {"id": "com.harborfederal.app", "version": "5.2.0", "install_source": "iTunes"},
        "traffic_source": {"name": "(direct)", "medium": "(none)", "source": "(direct)"},
        "stream_id": STREAM_ID,
        "platform": platform,
        "event_dimensions": None,
        "items": [],
        "collected_traffic_source": None,
        "is_active_user": True,
        "batch_event_index": 0,
        "batch_page_id": 1,
        "batch_ordering_id": 1,
    }


def _bigquery_json(row: dict[str, Any]) -> dict[str, Any]:
    """INT64 as JSON strings, the way BigQuery writes them (64-bit values do not fit a JSON double)."""
    out = {k: (str(v) if k in _INT_FIELDS and v is not None else v) for k, v in row.items()}
    out["event_params"] = [
        {
            "key": p["key"],
            "value": {
                **p["value"],
                "int_value": None if p["value"]["int_value"] is None else str(p["value"]["int_value"]),
            },
        }
        for p in row["event_params"]
    ]
    return out


def write_ndjson(rows: list[dict[str, Any]], path: Path, *, gz: bool = False, ints: str = "strings") -> Path:
    """``ints``: "strings" (BigQuery), "numbers" (other exporters), "mixed" (every other row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    as_strings = [ints == "strings" or (ints == "mixed" and k % 2 == 0) for k in range(len(rows))]
    text = "".join(
        json.dumps(_bigquery_json(r) if s else r, separators=(",", ":")) + "\n"
        for r, s in zip(rows, as_strings, strict=True)
    )
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=GA4_SCHEMA), path)
    return path


# --- the test export: a few visitors of Harbor Federal over three days ---------------------------------
T0 = 1_740_819_600  # 2025-03-01T09:00:00Z, in seconds (ga_session_id is the session's start in seconds)
DAY = 86_400
CARD = "4111 1111 1111 1111"  # a Luhn-valid test card number
EMAIL = "jane.doe@example.com"
PII_MARKERS = ("jane.doe", "example.com", "4111", "bob.smith", "@")


def _us(seconds: float) -> int:
    return int(round(seconds * 1_000_000))


def harbor_export() -> dict[str, list[dict[str, Any]]]:
    """File name → rows: two daily tables and one intraday table (the day the daily one is not out yet)."""
    a, b, c, d, e, g = (
        "1111111111.1740819600",
        "2222222222.1740823200",
        "3333333333.1740826800",
        "4444444444.1740830400",
        "5555555555.1740834000",
        "6666666666.1740837600",
    )
    a1, b1 = T0, T0 + 3600
    day1 = [
        # A1: anonymous; engagement after each page; the third page view (SPA) carries the second's tail.
        event("session_start", _us(a1), a, a1),
        event("first_visit", _us(a1), a, a1),
        event(
            "page_view",
            _us(a1),
            a,
            a1,
            {
                "page_location": f"{HOST}/",
                "page_referrer": f"https://www.google.com/search?q=harbor+mortgage+{EMAIL}",
            },
        ),
        event("user_engagement", _us(a1 + 30), a, a1, {"engagement_time_msec": 25_000}),
        event(
            "page_view",
            _us(a1 + 31),
            a,
            a1,
            {
                "page_location": f"{HOST}/mortgages/green-mortgage?utm_source=newsletter",
                "page_referrer": f"{HOST}/",
            },
        ),
        event("scroll", _us(a1 + 60), a, a1, {"percent_scrolled": 90, "engagement_time_msec": 20_000}),
        event("user_engagement", _us(a1 + 95), a, a1, {"engagement_time_msec": 30_000}),
        event(
            "page_view",
            _us(a1 + 96),
            a,
            a1,
            {"page_location": f"{HOST}/apply/start?product=green_mortgage", "engagement_time_msec": 1_500},
        ),
        event("form_start", _us(a1 + 120), a, a1, {"form_id": "apply"}),
        # B1: signs in; from then on user_id is set; PII in a page URL's query; an unmatched URL.
        event("session_start", _us(b1), b, b1),
        event("page_view", _us(b1), b, b1, {"page_location": f"{HOST}/login"}),
        event("login", _us(b1 + 10), b, b1, {"method": "password"}, user_id="hf-c0042"),
        event(
            "page_view",
            _us(b1 + 12),
            b,
            b1,
            {"page_location": f"{HOST}/cards/travel-card?email={EMAIL}&card={CARD.replace(' ', '')}"},
            user_id="hf-c0042",
        ),
        event("user_engagement", _us(b1 + 40), b, b1, {"engagement_time_msec": 28_000}, user_id="hf-c0042"),
        event(
            "page_view", _us(b1 + 41), b, b1, {"page_location": f"{HOST}/careers/jobs"}, user_id="hf-c0042"
        ),
        event("click", _us(b1 + 50), b, b1, {"link_url": "https://jobs.example.org/"}, user_id="hf-c0042"),
    ]
    a2, b2, d1, e1, g1 = (
        T0 + DAY + 3600,
        T0 + DAY + 7200,
        T0 + DAY + 9000,
        T0 + DAY + 10_000,
        T0 + DAY + 11_000,
    )
    day2 = [
        # A2: a search with a pasted card number (view_search_results' search_term); no engagement time.
        event("page_view", _us(a2), a, a2, {"page_location": f"{HOST}/search?q=travel+card"}),
        event("view_search_results", _us(a2 + 1), a, a2, {"search_term": f"travel card {CARD}"}),
        event("page_view", _us(a2 + 20), a, a2, {"page_location": f"{HOST}/cards/travel-card"}),
        # B2: logged in from the start; the search is in the URL only.
        event(
            "page_view",
            _us(b2),
            b,
            b2,
            {"page_location": f"{HOST}/search?q=fixed+bond+rates"},
            user_id="hf-c0042",
        ),
        event(
            "page_view",
            _us(b2 + 45),
            b,
            b2,
            {"page_location": f"{HOST}/savings/fixed-bond"},
            user_id="hf-c0042",
        ),
        # D1: the iOS app's screens.
        event(
            "screen_view",
            _us(d1),
            d,
            d1,
            {"firebase_screen": "app_dashboard"},
            user_id="hf-c0077",
            platform="IOS",
            device="mobile",
        ),
        event(
            "user_engagement",
            _us(d1 + 30),
            d,
            d1,
            {"engagement_time_msec": 5_000},
            user_id="hf-c0077",
            platform="IOS",
            device="mobile",
        ),
        event(
            "screen_view",
            _us(d1 + 31),
            d,
            d1,
            {"firebase_screen": "app_payments"},
            user_id="hf-c0077",
            platform="IOS",
            device="mobile",
        ),
        # E1: a site that put an e-mail address in user_id; a path with an e-mail in it.
        event("page_view", _us(e1), e, e1, {"page_location": f"{HOST}/"}, user_id="bob.smith@example.com"),
        event(
            "page_view",
            _us(e1 + 15),
            e,
            e1,
            {"page_location": f"{HOST}/profile/bob.smith@example.com/settings"},
            user_id="bob.smith@example.com",
        ),
        # A consent-mode ping: no user_pseudo_id, no session.
        event("page_view", _us(e1 + 20), None, None, {"page_location": f"{HOST}/"}),
        # G1: the search result event arrives before the session's first page view.
        event("view_search_results", _us(g1), g, g1, {"search_term": "loans"}),
        event("page_view", _us(g1 + 5), g, g1, {"page_location": f"{HOST}/loans"}),
    ]
    c1 = T0 + 2 * DAY - 3600
    intraday = [
        event(
            "page_view",
            _us(c1),
            c,
            c1,
            {"page_location": f"{HOST}/home"},
            user_id="hf-c0042",
            device="mobile",
        ),
        event(
            "page_view",
            _us(c1 + 25),
            c,
            c1,
            {"page_location": f"{HOST}/insurance/travel-insurance"},
            user_id="hf-c0042",
            device="mobile",
        ),
    ]
    return {"events_20250301": day1, "events_20250302": day2, "events_intraday_20250303": intraday}


# What the ingest must make of :func:`harbor_export` (worked out by hand from the rows above).
EXPECTED: dict[str, Any] = {
    "rows": 31,
    "page_views": 16,
    "screen_views": 2,
    "valid_events": 17,
    "rejected": {"empty_session_id": 1},
    "sessions": 8,
    "visitors": 6,
    "customers": {"hf-c0042", "hf-c0077"},
    "links": {
        ("2222222222.1740823200", "hf-c0042", T0 + 3600 + 10),
        ("3333333333.1740826800", "hf-c0042", T0 + 2 * DAY - 3600),
        ("4444444444.1740830400", "hf-c0077", T0 + DAY + 9000),
    },
    # session -> [(page_type, dwell_seconds or None, search_query or None)] in order
    "sessions_pages": {
        f"1111111111.1740819600:{T0}": [
            ("home", 25.0, None),
            ("green_mortgage_page", 51.5, None),
            ("apply_begin", None, None),
        ],
        f"1111111111.1740819600:{T0 + DAY + 3600}": [
            ("site_search", 20.0, "travel card <CARD>"),
            ("travel_card_page", None, None),
        ],
        f"2222222222.1740823200:{T0 + 3600}": [
            ("sign_in", 12.0, None),
            ("travel_card_page", 28.0, None),
            ("<OOV>", None, None),
        ],
        f"2222222222.1740823200:{T0 + DAY + 7200}": [
            ("site_search", 45.0, "fixed bond rates"),
            ("fixed_bond_page", None, None),
        ],
        f"3333333333.1740826800:{T0 + 2 * DAY - 3600}": [
            ("home", 25.0, None),
            ("travel_cover_page", None, None),
        ],
        f"4444444444.1740830400:{T0 + DAY + 9000}": [
            ("app_dashboard", 5.0, None),
            ("app_payments", None, None),
        ],
        f"5555555555.1740834000:{T0 + DAY + 10_000}": [("home", 15.0, None), ("<OOV>", None, None)],
        f"6666666666.1740837600:{T0 + DAY + 11_000}": [("<OOV>", None, None)],
    },
    "search_terms_unattached": 1,
    "user_ids_dropped": {"pii_email": 2},
}

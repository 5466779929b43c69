"""Simulated web and app traffic of a retail bank, with the hidden truth that lets us grade models.

No public financial clickstream exists, so this module generates one. Everything is vectorised numpy
(one pass per Markov step, never a Python loop per event) and deterministic for a seed: the same
:class:`SimulatorConfig` gives byte-identical files.

Generative story
----------------
1. **Customers** (``n_customers``) get a baseline in-app profile at the start of the window (the
   snapshot ``event_timestamp`` of ``customers.parquet``): age, tenure, a latent wealth that sets the
   balance band, products held (``has_<product>``, more likely with age/tenure/wealth) and an app
   activity rate (a share ``1 - app_user_share`` never use the app). ``app_sessions_30d`` is that rate observed over the 30 days
   before the window.
2. **Web visitors.** Each customer owns 0..``max_visitors_per_customer`` anonymous web visitor ids
   (cookies/devices, Poisson). Pure **prospects** (people who are not customers) own one visitor each
   and make up ``prospect_share`` of all visitors. Visitor ids are random permutations, so an id says
   nothing about its owner.
3. **Latent needs** (the intents :data:`NEED_INTENTS`: the eight products, fraud/security help,
   account servicing). Each person has Poisson(``needs_per_90d``) need episodes; a need starts at a
   uniform time (up to 30 days before the window) and lasts a lognormal number of days whose median
   depends on the intent (fraud 3 days, mortgage 30). Which need arises follows a multinomial logit
   of the profile (young → credit card, 28–45 → mortgage, older → retirement, wealthy → investing,
   held products are rarely sought again). Prospects only have product needs.
4. **Web sessions.** Each need episode drives Poisson(``web_sessions_per_need``) sessions inside it;
   every visitor also has background sessions (``background_sessions_per_90d``) whose intent is
   ``browsing`` (or ``account_servicing`` for a customer's visitor). A session goes to one of its
   owner's visitors (the first device is favoured). Its page sequence is a Markov chain over the bank's
   site map (:data:`WEB_PAGES`): at step ``t`` the transition matrix is
   ``w_t · F_intent + (1 − w_t) · G`` where ``G`` is a generic browsing chain (site links, popular
   pages, exits) and ``F_intent`` walks the intent's funnel (e.g. product_mortgage → rates →
   mortgage_calculator → apply_start → apply_form). ``w_t = intent_signal · min(1, t / ramp_steps)``
   grows with the position, so ORDER and RECENCY carry signal: early pages are generic (home, search,
   blog), later ones intent-specific, and calculators lead to applications. Funnels share pages
   (rates, apply_start, contact, market_insights), so the bag of pages alone is ambiguous. The entry
   page depends on the referrer (search engines land on product pages, display ads on random products,
   direct traffic on home/login). Dwell times are lognormal per page type, ``relevant_dwell_factor``
   times longer on pages of the session's own funnel; the last page's dwell is unknown (null), as in
   real logs; event times are the session start plus the cumulative dwell. Sessions start at a diurnal
   time of day.
   ``search`` pages carry a query from per-intent templates (``query_intent_prob``; else a generic
   one), with typos (``typo_rate``) and, in ``pii_rate`` of queries, pasted PII: e-mails, Luhn-valid
   card numbers, SSNs, phone numbers, account/routing numbers. Raw events go through
   :func:`clicks2intent.data.contract.validate_events`, which scrubs the PII: it never reaches a file.
   Device is fixed per visitor (desktop/mobile/tablet); channel ``web``; web events carry the visitor
   id only (never a customer id).
5. **App sessions** of logged-in customers: Poisson(rate × days), channel ``app``, ``customer_id``
   set, no visitor id, pages from an intent-free app chain (balance, transactions, transfers…) that
   starts at ``app_home``. Web intent carries into the app the way a bank sees it: an active need
   multiplies the app rate (``need_app_rate_factor``), and a need-driven web session of an app user is
   followed, with probability ``research_app_prob``, by an app session ``research_app_delay_hours``
   after it ended (research on the web, then log in to check eligibility or an offer: the **hand-off**;
   ``truth/session_truth.parquet`` names the web session in ``handoff_from_session_id``).
6. **Tile impressions**: every ``app_home`` view is one impression. The customer clicks tile ``k``
   of :data:`TILES` or ``none`` by a softmax over
   ``tile_affinity_scale · need-prior logit(k) + tile_held_effect · has_k + boost + N(0, tile_noise_sd)``
   against ``tile_none_logit``. ``boost`` goes to the tile of the customer's current need (active at
   the impression) and has two parts: ``tile_need_boost · exp(−need age / tile_recency_days)`` (the
   latent need, whether or not anyone browsed) and ``tile_research_boost · exp(−Δ /
   tile_research_recency_days)`` with ``Δ`` the time since that need's latest web session ended (fresh
   research is what a customer acts on in the app). Both come from the person, linked or not, so web
   intent helps a model only where the bank observed it.
7. **Conversions**: one row per web session. The visitor applies within ``conversion_horizon_days``
   with probability ``sigmoid(conv_base + conv_intent_effect[intent] + conv_apply_start ·
   reached apply_start + conv_apply_form · reached apply_form + conv_depth · log1p(n_events) +
   conv_apply_exit · ended on an application page)``: where the session ENDED matters (left at the form
   vs reached it and drifted to the FAQ), which only the order of the events shows; the
   product is the session's intent product (``conv_same_product``) or one drawn by popularity;
   ``converted_at`` is the session end plus a truncated exponential delay.
8. **Identity links**: a minority (``link_rate``) of the customers' visitors that were seen are
   resolved, at an identity moment (``link_at_identity_moments``): the visitor's first web session
   handed off to the app (method ``app_handoff``) or that reached ``login`` (``login``), whichever
   ended first; a visitor with neither is resolved at a random session (``email_click``). Visitors
   with such a moment are ``link_moment_odds`` times likelier (odds) to be linked at all, the overall
   share staying ``link_rate``. ``linked_at`` = that session's end; from then on every session of the
   visitor (its earlier history too) is attributable to the customer. Prospects are never linked.
   Visitor ids are persistent cookies: one id per device for the whole window.

Calibration (``tests/data/test_simulator.py`` checks the marginals): the tile defaults and the session
readability (``intent_signal``, ``ramp_steps``) were set with scratch oracles so that the observable web
intent is helpful, not dominant, and most of it is readable from the pages; the oracles, their figures
and the settings they rejected are in docs/decisions/0008-data-and-simulator.md. ``c2i evaluate``
reports both oracles beside its variants.
The truth (each session's intent and owner, the need episodes, all parameters and the seed) is written
under ``truth/`` for evaluation only; it is never a column of any other file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clicks2intent.common.files import atomic_output
from clicks2intent.data.contract import ValidationReport, ValidationResult, validate_events, write_events
from clicks2intent.data.pii import luhn_valid
from clicks2intent.data.world import Funnel, World, write_world
from clicks2intent.errors import ConfigError
from clicks2intent.names import columns as C
from clicks2intent.names.paths import ARTIFACTS, WORLD_FILE

logger = logging.getLogger(__name__)

# --- Vocabularies: the simulated bank's world (written to world.yaml; no other module names them) ----
# The products a visitor can apply for, and the app's homepage tiles (a tile per product, two service tiles).
PRODUCTS: tuple[str, ...] = (
    "mortgage",
    "credit_card",
    "auto_loan",
    "personal_loan",
    "savings",
    "investing",
    "retirement",
    "business_banking",
)
TILES: tuple[str, ...] = PRODUCTS + ("security_center", "account_services")
NEED_INTENTS: tuple[str, ...] = PRODUCTS + ("fraud_security", "account_servicing")
BROWSING = "browsing"  # a session with no particular need (true_intent of background sessions)
ALL_INTENTS: tuple[str, ...] = NEED_INTENTS + (BROWSING,)
# The app tile that serves each need (products map to their own tile).
INTENT_TILE: dict[str, str] = {p: p for p in PRODUCTS} | {
    "fraud_security": "security_center",
    "account_servicing": "account_services",
}

PRODUCT_PAGES: tuple[str, ...] = tuple(f"product_{p}" for p in PRODUCTS)
WEB_PAGES: tuple[str, ...] = (
    "home",
    "search",
    "login",
    "faq",
    "contact",
    "branch_locator",
    "blog",
    "about",
    "rates",
    "apply_start",
    "apply_form",
    *PRODUCT_PAGES,
    "mortgage_calculator",
    "auto_loan_calculator",
    "loan_calculator",
    "savings_calculator",
    "compare_cards",
    "market_insights",
    "retirement_planner",
    "business_solutions",
    "security_center",
    "report_fraud",
    "account_help",
)
APP_PAGES: tuple[str, ...] = (
    "app_home",
    "account_balance",
    "transactions",
    "transfers",
    "bill_pay",
    "statements",
    "card_controls",
    "messages",
    "settings",
    "deposit_check",
)
PAGE_TYPES: tuple[str, ...] = WEB_PAGES + APP_PAGES  # the simulator's vocabulary (known_page_types)

# Each need's funnel through the site, in the order a purposeful visitor walks it.
FUNNELS: dict[str, tuple[str, ...]] = {
    "mortgage": ("product_mortgage", "rates", "mortgage_calculator", "apply_start", "apply_form"),
    "credit_card": ("product_credit_card", "compare_cards", "rates", "apply_start", "apply_form"),
    "auto_loan": ("product_auto_loan", "auto_loan_calculator", "rates", "apply_start", "apply_form"),
    "personal_loan": ("product_personal_loan", "loan_calculator", "rates", "apply_start", "apply_form"),
    "savings": ("product_savings", "rates", "savings_calculator", "apply_start", "apply_form"),
    "investing": ("product_investing", "market_insights", "blog", "apply_start", "apply_form"),
    "retirement": ("product_retirement", "retirement_planner", "market_insights", "contact", "apply_start"),
    "business_banking": (
        "product_business_banking",
        "business_solutions",
        "branch_locator",
        "contact",
        "apply_start",
    ),
    "fraud_security": ("security_center", "report_fraud", "login", "contact"),
    "account_servicing": ("login", "account_help", "faq", "branch_locator", "contact"),
}

# Median dwell seconds per page type (lognormal around it).
DWELL_MEDIAN_S: dict[str, float] = {
    "home": 12, "search": 20, "login": 15, "faq": 45, "contact": 40, "branch_locator": 50, "blog": 90,
    "about": 30, "rates": 40, "apply_start": 60, "apply_form": 240, "mortgage_calculator": 120,
    "auto_loan_calculator": 100, "loan_calculator": 100, "savings_calculator": 90, "compare_cards": 80,
    "market_insights": 100, "retirement_planner": 150, "business_solutions": 60, "security_center": 45,
    "report_fraud": 120, "account_help": 50,
    "app_home": 10, "account_balance": 15, "transactions": 30, "transfers": 45, "bill_pay": 60,
    "statements": 40, "card_controls": 30, "messages": 35, "settings": 25, "deposit_check": 50,
} | {p: 50 for p in PRODUCT_PAGES}  # fmt: skip

# Median need duration in days (how long someone keeps researching).
NEED_DURATION_DAYS: dict[str, float] = {
    "mortgage": 30, "credit_card": 10, "auto_loan": 14, "personal_loan": 10, "savings": 14,
    "investing": 20, "retirement": 30, "business_banking": 21, "fraud_security": 3, "account_servicing": 4,
}  # fmt: skip

# Query templates per intent (typos and PII are added at generation time).
QUERY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "mortgage": ("mortgage rates", "30 year fixed mortgage", "refinance my home", "first time home buyer",
                 "mortgage preapproval", "home equity loan"),
    "credit_card": ("best credit card", "cash back card", "travel rewards card", "balance transfer card",
                    "credit card apr", "student credit card"),
    "auto_loan": ("auto loan rates", "car loan calculator", "used car financing", "refinance car loan"),
    "personal_loan": ("personal loan", "debt consolidation loan", "loan for home improvement",
                      "personal loan rates"),
    "savings": ("high yield savings", "savings account rates", "cd rates", "open savings account"),
    "investing": ("brokerage account", "etf investing", "open investment account", "stock trading fees"),
    "retirement": ("ira rollover", "roth ira", "401k rollover", "retirement planning"),
    "business_banking": ("business checking", "small business loan", "merchant services",
                         "business credit card"),
    "fraud_security": ("report fraud", "lost card", "unrecognized transaction", "phishing email",
                       "freeze my card"),
    "account_servicing": ("routing number", "change address", "reset password", "order checks",
                          "direct deposit form", "wire transfer"),
    BROWSING: ("branch hours", "atm near me", "holiday hours", "customer service number", "careers",
               "mobile app"),
}  # fmt: skip

REFERRERS: tuple[str, ...] = (
    "direct",
    "google.com",
    "bing.com",
    "email_campaign",
    "facebook.com",
    "display_ad",
)
DEVICES: tuple[str, ...] = ("desktop", "mobile", "tablet")
LINK_METHODS: tuple[str, ...] = ("login", "email_click", "app_handoff")
BALANCE_BANDS: tuple[str, ...] = ("0-1k", "1k-10k", "10k-50k", "50k-250k", "250k+")
# The customer snapshot's columns (the "production baseline" profile) and their kinds.
PROFILE: dict[str, str] = {
    "tenure_months": "float",
    "age": "int",
    "app_sessions_30d": "int",
    "balance_band": "string",
    "n_products": "int",
} | {f"has_{p}": "bool" for p in PRODUCTS}
# Which web pages show interest in each tile (its prototype's sessions): a product tile's product page,
# the service tiles' own pages.
TILE_PAGES: dict[str, tuple[str, ...]] = {p: (f"product_{p}",) for p in PRODUCTS} | {
    "security_center": ("security_center", "report_fraud"),
    "account_services": ("account_help",),
}
# The word-match reference rule's table (what a retail bank's analyst would write in plain words, not
# this site's page vocabulary or query templates). Order matters only for ties: the more specific needs
# ("lost card" is fraud, "business credit card" is business banking) come before the products whose words
# they share.
RULE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "fraud_security": ("fraud", "security", "lost", "phishing", "unrecognized", "freeze", "stolen", "scam"),
    "business_banking": ("business", "merchant"),
    "retirement": ("retirement", "retire", "ira", "roth", "401k", "rollover", "pension"),
    "investing": ("investing", "invest", "investment", "brokerage", "etf", "stock", "stocks", "trading", "market"),
    "mortgage": ("mortgage", "mortgages", "refinance", "preapproval", "equity", "buyer"),
    "auto_loan": ("auto", "car", "vehicle"),
    "personal_loan": ("personal", "consolidation", "debt", "loan"),
    "credit_card": ("card", "cards", "credit", "apr", "rewards", "cashback"),
    "savings": ("savings", "saving", "cd", "yield"),
    "account_servicing": ("account", "routing", "address", "password", "checks", "deposit", "wire", "statement"),
}  # fmt: skip


@dataclass
class SimulatorConfig:
    """Every generation parameter; written to ``truth/params.json`` with the seed."""

    n_customers: int = 20_000  # ~1M events at the defaults
    seed: int = 0
    end_date: str = "2024-06-30T00:00:00Z"  # fixed so runs are deterministic; window ends here (UTC)
    days: int = 90  # window length

    # Visitors and identity
    visitors_per_customer: float = 0.9  # Poisson mean of web cookies/devices per customer (many have none)
    max_visitors_per_customer: int = 4
    prospect_share: float = 0.30  # share of visitors that are not customers
    link_rate: float = 0.28  # share of a customer's seen visitors ever resolved (the paper's problem)
    link_method_probs: tuple[float, ...] = (0.55, 0.25, 0.20)  # login, email_click, app_handoff (see below)
    # Links happen where a bank really resolves identity: at the visitor's first web session that was
    # handed off to the app (research, then log in) or that reached the login page; from then on the
    # visitor's sessions (and its history) are attributable. False: at a uniformly random session of the
    # visitor, method by link_method_probs (the old world: half the history arrived after the link).
    link_at_identity_moments: bool = True
    # A visitor who logs in or hands off to the app is likelier to be resolved at all: the odds ratio of
    # being linked for a visitor with an identity moment vs one without. The overall share of linked
    # customer visitors stays link_rate (the base odds are solved for it), only WHO is linked changes.
    link_moment_odds: float = 3.0

    # Needs and sessions
    needs_per_90d: float = 2.0  # need episodes per customer per 90 days
    prospect_extra_needs: float = 0.3  # prospects have 1 + Poisson(this) needs (they come for one)
    need_duration_sigma: float = 0.5  # lognormal sigma around NEED_DURATION_DAYS
    web_sessions_per_need: float = 2.5  # sessions a need drives (Poisson), if its owner has a visitor
    background_sessions_per_90d: float = 2.0  # need-free sessions per visitor
    customer_background_servicing: float = (
        0.4  # share of a customer visitor's background sessions that are servicing
    )
    app_sessions_per_day: float = 0.07  # median app sessions/day of an app user (lognormal, sigma 0.7)
    app_user_share: float = 0.85
    # Web research carries into the app: after a need-driven web session, an app user opens the app
    # (to check eligibility, a pre-approved offer, balances before applying) with this probability ...
    research_app_prob: float = 0.6
    research_app_delay_hours: float = (
        2.0  # ... this long after the session ends (exponential mean, cut at 24 h)
    )
    need_app_rate_factor: float = 1.5  # an active need multiplies an app user's app-session rate

    # Signal strengths (defaults: web intent helpful, not dominant)
    # Readability of one session (see "Calibration"): lower values left need-driven sessions unreadable
    # even to a reader trained on the truth (docs/decisions/0008-data-and-simulator.md).
    intent_signal: float = 0.85  # max weight of the intent funnel chain vs the generic chain
    ramp_steps: int = 2  # steps until the funnel weight reaches intent_signal (order/recency signal)
    entry_signal: float = 0.5  # weight of the intent's landing pages at the entry
    relevant_dwell_factor: float = 1.5  # dwell multiplier on pages of the session's own funnel
    dwell_sigma: float = 0.6
    max_web_events: int = 60  # per session (the chain is truncated there)
    max_app_events: int = 30

    # Search queries
    query_intent_prob: float = 0.75  # query from the session's intent templates (else generic)
    typo_rate: float = 0.15
    pii_rate: float = 0.03  # share of queries with pasted PII (scrubbed by validation)

    # Tile clicks (softmax over tiles + none)
    tile_affinity_scale: float = 1.0  # weight of the profile's need-prior logit (what a baseline can learn)
    tile_held_effect: float = 0.8  # products held attract clicks (servicing)
    tile_need_boost: float = 0.5  # logit boost of the current need's tile, decaying with the need's age
    tile_recency_days: float = 10.0  # ... over this many days (the latent part: seen or not, linked or not)
    # The research part: the current need's tile gets this boost, decaying with the time since the
    # latest web session of that need ended (fresh research is what a customer acts on in the app).
    tile_research_boost: float = 8.0
    tile_research_recency_days: float = 1.5
    tile_noise_sd: float = 0.5  # per impression, per tile
    tile_none_logit: float = 3.6  # sets the click rate (docs/decisions/0008-data-and-simulator.md)

    # Conversions
    conversion_horizon_days: float = 14.0
    conv_base: float = -4.6
    conv_product_intent: float = 1.2  # product-intent sessions convert more
    conv_other_intent: float = -1.5  # browsing / servicing / fraud sessions rarely apply
    conv_apply_start: float = 1.0
    conv_apply_form: float = 1.8
    conv_depth: float = 0.3  # per log1p(events)
    # The session ENDED on an application page (apply_start / apply_form): the visitor left at the
    # decision point, where one who reached the form and then drifted to the FAQ or contact pages hit a
    # question (funnel abandonment, what banks' web analytics track). Order, not counts: neither the
    # funnel flags nor a label of the session's topic can see it.
    conv_apply_exit: float = 1.2
    conv_same_product: float = 0.85  # applied product = the session's intent product
    conv_delay_days: float = 2.0  # mean of the (truncated) exponential delay

    def __post_init__(self) -> None:
        if self.n_customers < 1:
            raise ConfigError(f"n_customers must be >= 1, got {self.n_customers}")
        if self.days < 1:
            raise ConfigError(f"days must be >= 1, got {self.days}")
        for name in ("prospect_share", "link_rate", "intent_signal", "entry_signal", "query_intent_prob",
                     "typo_rate", "pii_rate", "app_user_share", "conv_same_product", "research_app_prob"):  # fmt: skip
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0 or (name == "prospect_share" and v >= 1.0):
                raise ConfigError(f"{name} must lie in [0, 1], got {v}")
        for name in ("link_moment_odds", "research_app_delay_hours", "tile_recency_days",
                     "tile_research_recency_days"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.need_app_rate_factor < 1.0:
            raise ConfigError(
                f"need_app_rate_factor must be >= 1 (a need never lowers app use), got {self.need_app_rate_factor}"
            )
        if len(self.link_method_probs) != len(LINK_METHODS):
            raise ConfigError(f"link_method_probs needs {len(LINK_METHODS)} values for {LINK_METHODS}")
        self.link_method_probs = tuple(float(p) for p in self.link_method_probs)


@dataclass
class SimulationResult:
    """The simulated frames (already validated / scrubbed) and what it took to make them."""

    events: pd.DataFrame | None  # None: generate() wrote them chunk by chunk (stats["n_events"] counts them)
    identity_links: pd.DataFrame
    customers: pd.DataFrame
    tile_impressions: pd.DataFrame
    conversions: pd.DataFrame
    session_truth: pd.DataFrame
    needs: pd.DataFrame
    params: dict[str, Any]
    validation: dict[str, Any]
    world: World
    stats: dict[str, float] = field(default_factory=dict)


# --- Small vectorised helpers -------------------------------------------------------------------
_DAY = 86_400.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _categorical(rng: np.random.Generator, cum_rows: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Draw one category per element from row ``row`` of a table of cumulative probabilities.

    Rows are shifted by their index into one increasing array, so a single ``searchsorted`` samples
    every element at once, whatever its row.
    """
    n_rows, k = cum_rows.shape
    flat = (cum_rows + np.arange(n_rows)[:, None]).ravel()
    pos = np.searchsorted(flat, row + rng.random(len(row)), side="right")
    return np.minimum(pos - row * k, k - 1)


def _cumulative(p: np.ndarray) -> np.ndarray:
    """Row-normalised cumulative probabilities whose last column is exactly 1."""
    p = np.asarray(p, dtype=np.float64)
    c = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    c[..., -1] = 1.0
    return c


def _choice(rng: np.random.Generator, probs: np.ndarray | list[float], n: int) -> np.ndarray:
    return _categorical(
        rng, _cumulative(np.asarray(probs, dtype=np.float64))[None, :], np.zeros(n, dtype=np.int64)
    )


def _diurnal_second(rng: np.random.Generator, n: int, app: bool) -> np.ndarray:
    """Seconds into the day: web traffic peaks at lunch and in the evening, the app in the morning too."""
    hours = np.arange(24)
    w = 0.2 + np.exp(-((hours - 12.5) ** 2) / 8) + 1.4 * np.exp(-((hours - 20.0) ** 2) / 6)
    if app:
        w = w + 0.8 * np.exp(-((hours - 8.0) ** 2) / 3)
    return (_choice(rng, w, n) + rng.random(n)) * 3600.0


def _day_time(rng: np.random.Generator, t: np.ndarray, app: bool) -> np.ndarray:
    """Keep the day of ``t`` (seconds), redraw its time of day from the diurnal profile."""
    return np.floor(t / _DAY) * _DAY + _diurnal_second(rng, len(t), app)


# --- Site model ---------------------------------------------------------------------------------
_S = len(PAGE_TYPES)
_EXIT = _S  # absorbing "session ends" state, never emitted
_P = {p: i for i, p in enumerate(PAGE_TYPES)}
_WEB_IDX = np.array([_P[p] for p in WEB_PAGES])
_APP_CHAIN = len(ALL_INTENTS)  # chain index of app sessions (web chains are ALL_INTENTS)
_INTENT_IDX = {name: i for i, name in enumerate(ALL_INTENTS)}
_TOOLS_OF_PRODUCT = {
    "mortgage": ("mortgage_calculator", "rates"),
    "credit_card": ("compare_cards",),
    "auto_loan": ("auto_loan_calculator",),
    "personal_loan": ("loan_calculator",),
    "savings": ("savings_calculator", "rates"),
    "investing": ("market_insights",),
    "retirement": ("retirement_planner",),
    "business_banking": ("business_solutions",),
}


def _generic_web_chain() -> np.ndarray:
    """G: where an aimless visitor goes next from each web page (popularity + site links + exit)."""
    pop = dict.fromkeys(WEB_PAGES, 0.015) | {
        "home": 0.14, "search": 0.07, "login": 0.08, "faq": 0.06, "contact": 0.03, "branch_locator": 0.04,
        "blog": 0.08, "about": 0.03, "rates": 0.05, "apply_start": 0.01, "apply_form": 0.0,
        "security_center": 0.02, "report_fraud": 0.003, "account_help": 0.02,
    } | {p: 0.03 for p in PRODUCT_PAGES}  # fmt: skip
    base = np.zeros(_S + 1)
    for page, w in pop.items():
        base[_P[page]] = w
    base[_EXIT] = 0.30
    G = np.zeros((_S + 1, _S + 1))
    for page in WEB_PAGES:
        row = base.copy()
        row[_P[page]] *= 0.2  # reloads are rare
        if page.startswith("product_"):
            for tool in _TOOLS_OF_PRODUCT[page.removeprefix("product_")]:
                row[_P[tool]] += 0.08
            row[_P["apply_start"]] += 0.04
        if page == "apply_start":
            row[_P["apply_form"]] += 0.35
        if page == "apply_form":
            row[_EXIT] += 0.6
        G[_P[page]] = row / row.sum()
    G[_EXIT, _EXIT] = 1.0
    return G


def _funnel_chain(funnel: tuple[str, ...]) -> np.ndarray:
    """F_intent: forward along the intent's funnel, some back-tracking and searching, exits at the end."""
    F = np.zeros((_S + 1, _S + 1))
    idx = [_P[p] for p in funnel]
    L = len(idx)
    entry = np.zeros(_S + 1)
    for k, w in enumerate((0.55, 0.2, 0.1)[:L]):
        entry[idx[k]] += w
    entry[_P["search"]] += 0.05
    entry[_EXIT] += 0.10
    for page in WEB_PAGES:
        F[_P[page]] = entry / entry.sum()
    for k, i in enumerate(idx):
        row = np.zeros(_S + 1)
        last = k == L - 1
        if not last:
            row[idx[k + 1]] += 0.50
        if k > 0:
            row[idx[k - 1]] += 0.15 if last else 0.10
        row[i] += 0.05
        others = [j for j in idx if j not in (i, idx[k - 1] if k > 0 else -1, idx[k + 1] if not last else -1)]
        for j in others:
            row[j] += 0.10 / max(len(others), 1)
        row[_P["search"]] += 0.03
        row[_EXIT] += 0.55 if last else 0.17
        F[i] = row / row.sum()
    F[_EXIT, _EXIT] = 1.0
    return F


def _app_chain() -> np.ndarray:
    """The app's own chain: balances and transfers dominate, no intent."""
    w = {"account_balance": 0.3, "transactions": 0.2, "transfers": 0.15, "bill_pay": 0.1, "statements": 0.05,
         "card_controls": 0.05, "messages": 0.05, "settings": 0.03, "deposit_check": 0.04, "app_home": 0.03}  # fmt: skip
    base = np.zeros(_S + 1)
    for page, v in w.items():
        base[_P[page]] = v
    base[_EXIT] = 0.38
    A = np.zeros((_S + 1, _S + 1))
    for page in APP_PAGES:
        row = base.copy()
        row[_P[page]] *= 0.2
        A[_P[page]] = row / row.sum()
    A[_EXIT, _EXIT] = 1.0
    return A


def _transition_tables(cfg: SimulatorConfig) -> np.ndarray:
    """Cumulative transition rows indexed by ((chain · ramp_steps) + bucket) · (S+1) + current page.

    Bucket ``b`` (0-based) is the transition into position ``b + 1``; positions past ``ramp_steps``
    use the last bucket. Chains: one per intent in :data:`ALL_INTENTS` (browsing = G only) + the app.
    """
    G = _generic_web_chain()
    ramp = max(cfg.ramp_steps, 1)
    n_chains = len(ALL_INTENTS) + 1
    T = np.zeros((n_chains, ramp, _S + 1, _S + 1))
    for c, intent in enumerate(ALL_INTENTS):
        F = _funnel_chain(FUNNELS[intent]) if intent in FUNNELS else G
        for b in range(ramp):
            w = cfg.intent_signal * min(1.0, (b + 1) / ramp)
            T[c, b] = w * F + (1.0 - w) * G
    T[_APP_CHAIN] = _app_chain()[None]
    # Rows never visited (e.g. app pages under a web chain) still need a valid distribution.
    empty = T.sum(axis=-1) == 0
    T[empty, _EXIT] = 1.0
    return _cumulative(T.reshape(-1, _S + 1))


def _entry_tables(cfg: SimulatorConfig) -> np.ndarray:
    """Cumulative landing-page distributions indexed by chain · len(REFERRERS) + referrer."""

    def dist(weights: dict[str, float]) -> np.ndarray:
        v = np.zeros(_S + 1)
        for page, w in weights.items():
            v[_P[page]] += w
        return v / v.sum()

    products = dict.fromkeys(PRODUCT_PAGES, 1.0 / len(PRODUCT_PAGES))
    browse = {
        "direct": dist({"home": 0.7, "login": 0.2, "search": 0.1}),
        "google.com": dist(
            {"home": 0.3, "blog": 0.3, "rates": 0.1, "faq": 0.1} | {p: 0.2 / 8 for p in PRODUCT_PAGES}
        ),
        "bing.com": dist(
            {"home": 0.3, "blog": 0.3, "rates": 0.1, "faq": 0.1} | {p: 0.2 / 8 for p in PRODUCT_PAGES}
        ),
        "email_campaign": dist({"home": 0.4, "login": 0.3, "blog": 0.3}),
        "facebook.com": dist({"blog": 0.6, "home": 0.4}),
        "display_ad": dist(products | {"home": 0.4}),
    }
    n_chains = len(ALL_INTENTS) + 1
    E = np.zeros((n_chains, len(REFERRERS), _S + 1))
    for c, intent in enumerate(ALL_INTENTS):
        for r, ref in enumerate(REFERRERS):
            if intent not in FUNNELS:
                E[c, r] = browse[ref]
                continue
            f = FUNNELS[intent]
            landing = {
                "direct": {"home": 0.6, f[0]: 0.25, "search": 0.15},
                "google.com": {f[0]: 0.6, f[1]: 0.2, "home": 0.2},
                "bing.com": {f[0]: 0.6, f[1]: 0.2, "home": 0.2},
                "email_campaign": {f[0]: 0.6, "login": 0.4},
                "facebook.com": {f[0]: 0.4, "blog": 0.6},
                "display_ad": products | {f[0]: 0.5},
            }[ref]
            E[c, r] = cfg.entry_signal * dist(landing) + (1 - cfg.entry_signal) * browse[ref]
    E[_APP_CHAIN, :] = dist({"app_home": 1.0})
    return _cumulative(E.reshape(-1, _S + 1))


def _walk(
    rng: np.random.Generator,
    chain: np.ndarray,
    first: np.ndarray,
    max_events: np.ndarray,
    trans_cum: np.ndarray,
    ramp: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run every session's Markov chain in lock-step; returns (session, position, page) per event."""
    sess_parts, pos_parts, page_parts = [np.arange(len(chain))], [np.zeros(len(chain), np.int64)], [first]
    active = np.arange(len(chain))
    cur = first
    t = 1
    while len(active):
        bucket = min(t, ramp) - 1
        row = (chain[active] * ramp + bucket) * (_S + 1) + cur
        nxt = _categorical(rng, trans_cum, row)
        keep = (nxt != _EXIT) & (t < max_events[active])
        active, cur = active[keep], nxt[keep]
        sess_parts.append(active)
        pos_parts.append(np.full(len(active), t, np.int64))
        page_parts.append(cur)
        t += 1
    sess = np.concatenate(sess_parts)
    pos = np.concatenate(pos_parts)
    page = np.concatenate(page_parts)
    order = np.lexsort((pos, sess))
    return sess[order], pos[order], page[order]


# --- Queries and PII ----------------------------------------------------------------------------
_FIRST = ("john", "maria", "wei", "fatima", "james", "olga", "raj", "emily", "carlos", "aisha")
_LAST = ("smith", "garcia", "chen", "khan", "johnson", "ivanova", "patel", "brown", "lopez", "okafor")
_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "example.org", "icloud.com")


def _luhn_complete(body: str) -> str:
    """Append the check digit that makes ``body`` a Luhn-valid number (as real card numbers are)."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


_PII_STREAM = 0x5011  # the PII pool has its own random stream, so audits can rebuild exactly what was pasted


def make_pii_pool(rng: np.random.Generator, n: int = 200) -> list[tuple[str, str, str]]:
    """``n`` (kind, value, query text) triples of fake PII as people paste it into a search box.

    The simulator draws it from ``np.random.default_rng([seed, _PII_STREAM])`` (see :func:`pii_pool`).
    """
    pool: list[tuple[str, str, str]] = []
    kinds = ("email", "card", "ssn", "phone", "account")
    for i in range(n):
        kind = kinds[i % len(kinds)]
        digits = "".join(map(str, rng.integers(0, 10, 20)))
        if kind == "email":
            sep = (".", "_", "")[i % 3]
            value = f"{_FIRST[rng.integers(10)]}{sep}{_LAST[rng.integers(10)]}{rng.integers(1, 99)}@{_DOMAINS[rng.integers(5)]}"
            text = (f"email {value}", f"my email is {value}", f"{value} password reset")[i % 3]
        elif kind == "card":
            card = _luhn_complete(("4", "5", "37")[i % 3] + digits[: 15 - len(("4", "5", "37")[i % 3])])
            value = (
                card,
                " ".join(card[j : j + 4] for j in range(0, 16, 4)),
                "-".join(card[j : j + 4] for j in range(0, 16, 4)),
            )[i % 3]
            text = (f"card {value} declined", f"lost card {value}", f"{value}")[i % 3]
        elif kind == "ssn":
            a, b, c = (
                f"{rng.integers(100, 900):03d}",
                f"{rng.integers(10, 99):02d}",
                f"{rng.integers(1000, 9999):04d}",
            )
            value = (f"{a}-{b}-{c}", f"{a} {b} {c}", f"ssn {a}{b}{c}")[i % 3]
            text = (f"my ssn is {value}", f"{value} tax form", value)[i % 3]
        elif kind == "phone":
            a, b, c = rng.integers(201, 989), rng.integers(200, 999), rng.integers(1000, 9999)
            value = (f"({a}) {b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}")[i % 3]
            text = (f"call me {value}", f"{value} callback", f"phone {value}")[i % 3]
        else:
            value = digits[: 8 + i % 5]
            text = (f"acct {value} balance", f"account number {value}", f"routing {value[:9]}")[i % 3]
            value = value[:9] if i % 3 == 2 else value
        pool.append((kind, value, text))
    return pool


def pii_pool(config: SimulatorConfig, n: int = 200) -> list[tuple[str, str, str]]:
    """The exact fake PII a simulation with ``config`` may paste into queries (for audits and tests)."""
    return make_pii_pool(np.random.default_rng([config.seed, _PII_STREAM]), n)


def _typo(rng: np.random.Generator, text: str) -> str:
    """One keyboard slip: swap, drop or double a letter."""
    if len(text) < 4:
        return text
    i = int(rng.integers(1, len(text) - 1))
    op = int(rng.integers(3))
    if op == 0:
        return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]
    if op == 1:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


def _make_queries(
    rng: np.random.Generator, cfg: SimulatorConfig, intent: np.ndarray, pool: list[tuple[str, str, str]]
) -> np.ndarray:
    """A query per search event: templates (per intent or generic), typo variants, sometimes PII.

    Per-template typo variants and the PII texts are small pools built once, then indexed by numpy:
    no Python work per event.
    """
    n_var = 4  # variant 0 is the clean template
    pools = {
        name: np.array([[t] + [_typo(rng, t) for _ in range(n_var - 1)] for t in temps], dtype=object)
        for name, temps in QUERY_TEMPLATES.items()
    }
    n = len(intent)
    out = np.empty(n, dtype=object)
    own = rng.random(n) < cfg.query_intent_prob
    source = np.where(own, intent, _INTENT_IDX[BROWSING])
    typo = rng.random(n) < cfg.typo_rate
    variant = np.where(typo, rng.integers(1, n_var, n), 0)
    pick = rng.random(n)
    for i, name in enumerate(ALL_INTENTS):
        sel = np.flatnonzero(source == i)
        table = pools[name]
        out[sel] = table[(pick[sel] * len(table)).astype(np.int64), variant[sel]]
    has_pii = rng.random(n) < cfg.pii_rate
    texts = np.array([t for _, _, t in pool], dtype=object)
    k = np.flatnonzero(has_pii)
    which = rng.integers(0, len(texts), len(k))
    glue = rng.random(len(k)) < 0.5
    out[k] = np.where(glue, out[k] + " " + texts[which], texts[which])
    return out


# --- The simulation -----------------------------------------------------------------------------
def _need_prior_logits(
    age: np.ndarray, wealth: np.ndarray, held: np.ndarray, prospect: np.ndarray
) -> np.ndarray:
    """Multinomial-logit scores of which need arises, from the profile (columns: NEED_INTENTS)."""
    n = len(age)
    az = (age - 45.0) / 15.0
    L = np.zeros((n, len(NEED_INTENTS)))
    base = {"mortgage": -0.3, "credit_card": 0.4, "auto_loan": -0.1, "personal_loan": -0.3, "savings": 0.2,
            "investing": -0.2, "retirement": -0.4, "business_banking": -1.3, "fraud_security": -0.5,
            "account_servicing": 0.5}  # fmt: skip
    for j, name in enumerate(NEED_INTENTS):
        L[:, j] = base[name]
    col = {name: j for j, name in enumerate(NEED_INTENTS)}
    L[:, col["mortgage"]] += np.where((age >= 28) & (age <= 45), 1.0, -0.3)
    L[:, col["credit_card"]] -= 0.5 * az
    L[:, col["auto_loan"]] += 0.3 * (np.abs(az) < 1)
    L[:, col["personal_loan"]] -= 0.4 * wealth
    L[:, col["savings"]] += 0.3 * wealth
    L[:, col["investing"]] += 0.8 * wealth
    L[:, col["retirement"]] += 0.9 * az + 0.3 * wealth
    # Held products are rarely sought again (business owners are the exception: they come back).
    for j, p in enumerate(PRODUCTS):
        L[:, j] += np.where(held[:, j], 1.2 if p == "business_banking" else -1.0, 0.0)
    L[prospect, col["fraud_security"]] = -np.inf
    L[prospect, col["account_servicing"]] = -np.inf
    return L


@dataclass(frozen=True)
class _Window:
    """The simulated time window; times inside the simulation are seconds since its start."""

    start: pd.Timestamp
    end: pd.Timestamp
    span: float  # seconds

    @classmethod
    def of(cls, cfg: SimulatorConfig) -> _Window:
        end = pd.Timestamp(cfg.end_date)
        end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
        return cls(start=end - pd.Timedelta(days=cfg.days), end=end, span=cfg.days * _DAY)

    def to_ts(self, seconds: np.ndarray) -> pd.DatetimeIndex:
        """Seconds since the window start → UTC timestamps (microseconds); NaN → NaT."""
        t0_us = self.start.value // 1000  # microseconds since epoch
        sec = np.asarray(seconds, dtype=np.float64)
        us = t0_us + np.round(np.nan_to_num(sec) * 1e6).astype(np.int64)
        ts = pd.to_datetime(us, unit="us", utc=True)
        return ts.where(~np.isnan(sec), pd.NaT) if np.isnan(sec).any() else ts


@dataclass
class _Customers:
    """Step 1: the customers' baseline profile (index = customer number)."""

    age: np.ndarray
    tenure: np.ndarray
    wealth: np.ndarray
    held: np.ndarray  # [n_customers, len(PRODUCTS)] bool
    band: np.ndarray
    app_rate: np.ndarray  # app sessions per day
    app_30d: np.ndarray


@dataclass
class _Visitors:
    """Step 2: persons (customers, then prospects), their visitor ids and the need prior."""

    n_prospects: int
    is_prospect: np.ndarray  # per person
    n_vis: np.ndarray  # visitors per person
    vis_offset: np.ndarray  # first visitor of each person
    n_visitors: int
    owner: np.ndarray  # person of each visitor
    device: np.ndarray  # device index of each visitor
    label: np.ndarray  # public id number of each visitor
    prior: np.ndarray  # need-prior logits per person [n_persons, len(NEED_INTENTS)]


@dataclass
class _Needs:
    """Step 3: need episodes (seconds since the window start)."""

    person: np.ndarray
    intent: np.ndarray  # index into NEED_INTENTS
    duration: np.ndarray
    start: np.ndarray
    end: np.ndarray


@dataclass
class _WebSessions:
    """Step 4: web sessions (need-driven first, then background), before their walk."""

    visitor: np.ndarray
    time: np.ndarray  # start, seconds since the window start
    intent: np.ndarray  # chain index (ALL_INTENTS)
    need: np.ndarray  # need episode, -1 for background sessions


@dataclass
class _Walked:
    """Every session walked (web sessions first, then app sessions) and its events."""

    n_web: int
    n_app: int
    chain: np.ndarray  # per session
    referrer: np.ndarray  # per session (web only; 0 for app)
    sess_start: np.ndarray
    sess_len: np.ndarray
    sess_first: np.ndarray  # first event of each session
    ev_sess: np.ndarray
    ev_page: np.ndarray
    ev_chain: np.ndarray
    ev_time: np.ndarray
    dwell: np.ndarray  # NaN for each session's last page
    is_web: np.ndarray  # per event
    ev_visitor: np.ndarray  # -1: none (app events have no visitor, web events no customer)
    ev_customer: np.ndarray


@dataclass
class _Ids:
    """Public ids: sessions numbered by start time, visitors by a random permutation."""

    sess_order: np.ndarray
    sess_rank: np.ndarray
    session: np.ndarray
    visitor: np.ndarray
    customer: np.ndarray


def _draw_customers(rng: np.random.Generator, cfg: SimulatorConfig) -> _Customers:
    """1. Customers: age, tenure, wealth, products held, balance band, app activity."""
    n_c = cfg.n_customers
    age = np.clip(np.round(rng.normal(45, 15, n_c)), 18, 90)
    tenure = np.minimum(np.round(rng.exponential(80, n_c)), (age - 18) * 12).astype(np.int64)
    wealth = rng.normal(0, 1, n_c) + 0.02 * (age - 45) + 0.004 * tenure
    held_logit = (
        np.column_stack(
            [
                -1.3 + np.where((age >= 30) & (age <= 65), 0.8, -1.0) + 0.3 * wealth,  # mortgage
                0.0 - 0.01 * (age - 45),  # credit_card
                -1.6 + 0.2 * (np.abs(age - 40) < 15),  # auto_loan
                -2.0 - 0.3 * wealth,  # personal_loan
                0.3 + 0.5 * wealth,  # savings
                -1.5 + 0.9 * wealth,  # investing
                -1.4 + 0.04 * (age - 45) + 0.4 * wealth,  # retirement
                -2.7 + 0.2 * wealth,  # business_banking
            ]
        )
        + 0.004 * tenure[:, None]
    )
    held = rng.random((n_c, len(PRODUCTS))) < _sigmoid(held_logit)
    band = np.digitize(wealth, [-1.0, 0.0, 0.9, 1.9])
    app_user = rng.random(n_c) < cfg.app_user_share
    app_rate = np.where(app_user, cfg.app_sessions_per_day * np.exp(rng.normal(0, 0.7, n_c)), 0.0)
    app_30d = rng.poisson(app_rate * 30)
    return _Customers(age, tenure, wealth, held, band, app_rate, app_30d)


def _draw_visitors(rng: np.random.Generator, cfg: SimulatorConfig, cust: _Customers) -> _Visitors:
    """2. Visitors: the customers' cookies/devices, one per prospect; the need prior of every person."""
    n_c = cfg.n_customers
    n_vis_c = np.minimum(rng.poisson(cfg.visitors_per_customer, n_c), cfg.max_visitors_per_customer)
    n_cust_visitors = int(n_vis_c.sum())
    n_p = round(n_cust_visitors * cfg.prospect_share / (1.0 - cfg.prospect_share))
    n_persons = n_c + n_p
    is_prospect = np.arange(n_persons) >= n_c
    n_vis = np.concatenate([n_vis_c, np.ones(n_p, np.int64)])
    vis_offset = np.cumsum(n_vis) - n_vis
    n_visitors = int(n_vis.sum())
    visitor_owner = np.repeat(np.arange(n_persons), n_vis)
    visitor_device = _choice(rng, [0.50, 0.42, 0.08], n_visitors)
    visitor_label = rng.permutation(n_visitors)  # public id number: says nothing about the owner

    # Prospects' hidden profile (only to draw their needs).
    p_age = np.clip(np.round(rng.normal(38, 13, n_p)), 18, 90)
    p_wealth = rng.normal(-0.2, 1, n_p)
    all_age = np.concatenate([cust.age, p_age])
    all_wealth = np.concatenate([cust.wealth, p_wealth])
    all_held = np.concatenate([cust.held, np.zeros((n_p, len(PRODUCTS)), bool)])
    prior = _need_prior_logits(all_age, all_wealth, all_held, is_prospect)
    return _Visitors(
        n_p, is_prospect, n_vis, vis_offset, n_visitors, visitor_owner, visitor_device, visitor_label, prior
    )


def _draw_needs(rng: np.random.Generator, cfg: SimulatorConfig, vis: _Visitors, span: float) -> _Needs:
    """3. Needs: Poisson episodes per person, intent by the profile's logit, lognormal duration."""
    n_persons = len(vis.is_prospect)
    scale = cfg.days / 90.0
    n_needs = np.where(
        vis.is_prospect,
        1 + rng.poisson(cfg.prospect_extra_needs * scale, n_persons),
        rng.poisson(cfg.needs_per_90d * scale, n_persons),
    )
    need_person = np.repeat(np.arange(n_persons), n_needs)
    gumbel = rng.gumbel(size=(len(need_person), len(NEED_INTENTS)))
    need_intent = np.argmax(vis.prior[need_person] + gumbel, axis=1)
    median_days = np.array([NEED_DURATION_DAYS[i] for i in NEED_INTENTS])
    need_dur = (
        median_days[need_intent] * np.exp(rng.normal(0, cfg.need_duration_sigma, len(need_person))) * _DAY
    )
    need_start = rng.uniform(-30 * _DAY, span, len(need_person))
    return _Needs(need_person, need_intent, need_dur, need_start, need_start + need_dur)


def _draw_web_sessions(
    rng: np.random.Generator, cfg: SimulatorConfig, vis: _Visitors, needs: _Needs, span: float
) -> _WebSessions:
    """4. Web sessions: those each need drives, then every visitor's background sessions, in the window."""
    scale = cfg.days / 90.0
    has_visitor = vis.n_vis[needs.person] > 0
    n_need_sess = np.where(has_visitor, rng.poisson(cfg.web_sessions_per_need, len(needs.person)), 0)
    ns_need = np.repeat(np.arange(len(needs.person)), n_need_sess)
    ns_time = needs.start[ns_need] + rng.random(len(ns_need)) * needs.duration[ns_need]
    ns_person = needs.person[ns_need]
    ns_intent = needs.intent[ns_need]

    n_bg = rng.poisson(cfg.background_sessions_per_90d * scale, vis.n_visitors)
    bg_visitor = np.repeat(np.arange(vis.n_visitors), n_bg)
    bg_time = rng.random(len(bg_visitor)) * span
    bg_servicing = ~vis.is_prospect[vis.owner[bg_visitor]] & (
        rng.random(len(bg_visitor)) < cfg.customer_background_servicing
    )
    bg_intent = np.where(bg_servicing, _INTENT_IDX["account_servicing"], _INTENT_IDX[BROWSING])

    # The session's device: the owner's first visitor is favoured.
    ns_visitor = vis.vis_offset[ns_person] + np.floor(
        vis.n_vis[ns_person] * rng.random(len(ns_person)) ** 1.5
    ).astype(np.int64)
    w_visitor = np.concatenate([ns_visitor, bg_visitor])
    w_time = np.concatenate([ns_time, bg_time])
    w_intent = np.concatenate([ns_intent, bg_intent])
    w_need = np.concatenate([ns_need, np.full(len(bg_visitor), -1)])
    inside = (w_time >= 0) & (w_time < span)
    w_visitor, w_time, w_intent, w_need = w_visitor[inside], w_time[inside], w_intent[inside], w_need[inside]
    w_time = _day_time(rng, w_time, app=False)
    return _WebSessions(w_visitor, w_time, w_intent, w_need)


@dataclass
class _AppSessions:
    """Step 5: app sessions before their walk; hand-offs start a delay after their web session ENDS."""

    customer: np.ndarray
    time: np.ndarray  # start (seconds since the window start); for hand-offs, replaced after the walk
    parent: np.ndarray  # the web session handed off to the app, -1 for ordinary app sessions
    delay: np.ndarray  # seconds after the parent web session's end (0 for ordinary sessions)


def _draw_app_sessions(
    rng: np.random.Generator,
    cfg: SimulatorConfig,
    cust: _Customers,
    vis: _Visitors,
    needs: _Needs,
    web: _WebSessions,
    span: float,
) -> _AppSessions:
    """5. App sessions: Poisson(rate × days) per customer, more during a need, and research hand-offs."""
    n_app = rng.poisson(cust.app_rate * cfg.days)
    a_customer = np.repeat(np.arange(cfg.n_customers), n_app)
    a_time = _day_time(rng, rng.random(len(a_customer)) * span, app=True)

    # A need raises the app rate while it lasts (the customer checks balances, offers, limits).
    cust_need = np.flatnonzero(~vis.is_prospect[needs.person])
    lo = np.clip(needs.start[cust_need], 0.0, span)
    hi = np.clip(needs.end[cust_need], 0.0, span)
    rate = cust.app_rate[needs.person[cust_need]] * max(cfg.need_app_rate_factor - 1.0, 0.0)
    n_extra = rng.poisson(rate * (hi - lo) / _DAY)
    x_need = np.repeat(cust_need, n_extra)
    x_time = _day_time(
        rng, np.repeat(lo, n_extra) + rng.random(len(x_need)) * np.repeat(hi - lo, n_extra), app=True
    )
    x_time = np.clip(x_time, 0.0, span - 1.0)

    # Research, then log in: a customer's need-driven web session hands off to the app.
    owner = vis.owner[web.visitor]
    can = (web.need >= 0) & ~vis.is_prospect[owner]
    can[can] &= cust.app_rate[owner[can]] > 0
    hand = np.flatnonzero(can & (rng.random(len(web.visitor)) < cfg.research_app_prob))
    cap = 24 * 3600.0
    mean = max(cfg.research_app_delay_hours, 1e-6) * 3600.0
    delay = -mean * np.log1p(-rng.random(len(hand)) * (1 - np.exp(-cap / mean)))  # truncated at 24 h
    n_base = len(a_customer) + len(x_need)
    return _AppSessions(
        customer=np.concatenate([a_customer, needs.person[x_need], owner[hand]]).astype(np.int64),
        time=np.concatenate([a_time, x_time, web.time[hand]]),
        parent=np.concatenate([np.full(n_base, -1, np.int64), hand]),
        delay=np.concatenate([np.zeros(n_base), delay]),
    )


def _walk_sessions(
    rng: np.random.Generator,
    cfg: SimulatorConfig,
    web: _WebSessions,
    app: _AppSessions,
) -> _Walked:
    """Walk every session (web + app) together; then dwell times and event timestamps.

    A hand-off app session starts its delay after its web session's last event."""
    a_customer = app.customer
    n_w, n_a = len(web.visitor), len(a_customer)
    chain = np.concatenate([web.intent, np.full(n_a, _APP_CHAIN)])
    referrer = np.concatenate(
        [_choice(rng, [0.32, 0.30, 0.08, 0.10, 0.08, 0.12], n_w), np.zeros(n_a, np.int64)]
    )
    first = _categorical(rng, _entry_tables(cfg), chain * len(REFERRERS) + referrer)
    max_events = np.concatenate([np.full(n_w, cfg.max_web_events), np.full(n_a, cfg.max_app_events)])
    ev_sess, ev_pos, ev_page = _walk(
        rng, chain, first, max_events, _transition_tables(cfg), max(cfg.ramp_steps, 1)
    )
    n_ev = len(ev_sess)
    sess_len = np.bincount(ev_sess, minlength=n_w + n_a)
    sess_first = np.cumsum(sess_len) - sess_len
    is_last = ev_pos == sess_len[ev_sess] - 1

    # Dwell and timestamps.
    med = np.array([DWELL_MEDIAN_S[p] for p in PAGE_TYPES])
    relevant = np.zeros((len(ALL_INTENTS) + 1, _S), bool)
    for intent, funnel in FUNNELS.items():
        relevant[_INTENT_IDX[intent], [_P[p] for p in funnel]] = True
    ev_chain = chain[ev_sess]
    mu = np.log(med[ev_page]) + np.log(cfg.relevant_dwell_factor) * relevant[ev_chain, ev_page]
    dwell = np.clip(np.round(np.exp(mu + cfg.dwell_sigma * rng.normal(size=n_ev)), 1), 1.0, 1800.0)
    offset = np.cumsum(dwell) - dwell
    offset -= offset[sess_first][ev_sess]
    web_end = web.time + offset[sess_first[:n_w] + sess_len[:n_w] - 1]
    handoff = app.parent >= 0
    a_start = app.time.copy()
    a_start[handoff] = web_end[app.parent[handoff]] + app.delay[handoff]
    sess_start = np.concatenate([web.time, a_start])
    ev_time = sess_start[ev_sess] + offset
    dwell_out = np.where(is_last, np.nan, dwell)  # nobody knows how long the last page was read

    is_web_ev = ev_sess < n_w
    ev_visitor = np.full(n_ev, -1)  # -1: none (app events have no visitor, web events no customer)
    ev_visitor[is_web_ev] = web.visitor[ev_sess[is_web_ev]]
    ev_customer = np.full(n_ev, -1)
    ev_customer[~is_web_ev] = a_customer[ev_sess[~is_web_ev] - n_w]
    return _Walked(
        n_w,
        n_a,
        chain,
        referrer,
        sess_start,
        sess_len,
        sess_first,
        ev_sess,
        ev_page,
        ev_chain,
        ev_time,
        dwell_out,
        is_web_ev,
        ev_visitor,
        ev_customer,
    )


def _public_ids(sess_start: np.ndarray, visitor_label: np.ndarray, n_c: int) -> _Ids:
    """Public ids: sessions numbered by start time, visitors by their random label, customers in order."""
    sess_order = np.argsort(sess_start, kind="stable")
    sess_rank = np.empty_like(sess_order)
    sess_rank[sess_order] = np.arange(len(sess_order))
    width = max(8, len(str(len(sess_rank))))
    session_ids = np.array([f"s{r:0{width}d}" for r in sess_rank], dtype=object)
    vwidth = max(7, len(str(len(visitor_label))))
    visitor_ids = np.array([f"v{r:0{vwidth}d}" for r in visitor_label], dtype=object)
    customer_ids = np.array([f"c{i:0{_customer_id_width(n_c)}d}" for i in range(n_c)], dtype=object)
    return _Ids(sess_order, sess_rank, session_ids, visitor_ids, customer_ids)


def _customer_id_width(n_c: int) -> int:
    return max(7, len(str(n_c)))


@dataclass
class _RawInputs:
    """The random parts of the raw events (drawn once, in the stream's order): each search event's query
    (pasted PII still in it) and each session's device."""

    queries: np.ndarray  # object per event: None off search pages
    is_search: np.ndarray
    sess_device: np.ndarray


def _raw_inputs(
    rng: np.random.Generator, cfg: SimulatorConfig, ev: _Walked, web: _WebSessions, vis: _Visitors
) -> _RawInputs:
    """Queries on search pages, then the app sessions' devices (the order the stream is drawn in)."""
    is_search = ev.ev_page == _P["search"]
    queries = np.full(len(ev.ev_sess), None, dtype=object)
    queries[is_search] = _make_queries(rng, cfg, ev.ev_chain[is_search], pii_pool(cfg))
    app_device = _choice(rng, [0.0, 0.9, 0.1], ev.n_app)
    return _RawInputs(queries, is_search, np.concatenate([vis.device[web.visitor], app_device]))


def _raw_frame(
    raw: _RawInputs, ev: _Walked, ids: _Ids, window: _Window, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """The events before validation (queries still hold their pasted PII): every event, or ``rows``."""
    take = slice(None) if rows is None else rows
    sess = ev.ev_sess[take]
    is_web = ev.is_web[take]
    visitor_or_none = np.append(ids.visitor, None)  # index -1 → None
    customer_or_none = np.append(ids.customer, None)
    device_names = np.array(DEVICES, dtype=object)
    ref_names = np.array(REFERRERS, dtype=object)
    return pd.DataFrame(
        {
            C.SESSION_ID: ids.session[sess],
            C.EVENT_TIMESTAMP: window.to_ts(ev.ev_time[take]),
            C.PAGE_TYPE: np.array(PAGE_TYPES, dtype=object)[ev.ev_page[take]],
            C.VISITOR_ID: visitor_or_none[ev.ev_visitor[take]],
            C.CUSTOMER_ID: customer_or_none[ev.ev_customer[take]],
            C.CHANNEL: np.where(is_web, "web", "app").astype(object),
            C.DWELL_SECONDS: ev.dwell[take],
            C.SEARCH_QUERY: raw.queries[take],
            C.DEVICE: device_names[raw.sess_device[sess]],
            C.REFERRER: np.append(ref_names, None)[np.where(is_web, ev.referrer[sess], -1)],
        }
    )


def _event_chunks(ev: _Walked, ids: _Ids, max_events: int) -> Iterator[np.ndarray]:
    """Event rows in chunks of whole sessions (at most ``max_events`` unless one session is longer),
    chunks in session-id order (the contract's output order), each chunk's rows in the raw frame's
    order (so validating a chunk is validating those rows of the whole frame)."""
    by_rank = np.argsort(ids.sess_rank[ev.ev_sess], kind="stable")
    ends = np.cumsum(ev.sess_len[ids.sess_order])  # events of the sessions up to each one, in id order
    lo = first = 0
    while first < len(ends):
        last = max(int(np.searchsorted(ends, lo + max_events, side="right")), first + 1)
        hi = int(ends[last - 1])
        yield np.sort(by_rank[lo:hi])
        lo, first = hi, last


def _validate_raw(raw: pd.DataFrame, cfg: SimulatorConfig, window: _Window) -> ValidationResult:
    """Raw events through the contract (it scrubs the pasted PII); the simulator must produce no rejects."""
    validated = validate_events(
        raw,
        world=simulator_world(cfg),
        max_session_events=max(cfg.max_web_events, cfg.max_app_events),
        now=_validation_now(cfg, window),
    )
    if validated.report.n_rejected:
        raise RuntimeError(f"simulator produced rows the contract rejects:\n{validated.report.to_text()}")
    return validated


def _tile_impressions(
    rng: np.random.Generator,
    cfg: SimulatorConfig,
    ev: _Walked,
    cust: _Customers,
    vis: _Visitors,
    needs: _Needs,
    web: _WebSessions,
    ids: _Ids,
    window: _Window,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """6. Tile impressions: every app_home view; the click is a softmax over tiles and ``none``."""
    span = window.span
    n_c = cfg.n_customers
    imp = np.flatnonzero(ev.ev_page == _P["app_home"])
    imp_cust = ev.ev_customer[imp]
    imp_time = ev.ev_time[imp]
    tiles = TILES
    tile_intent = np.array(
        [_INTENT_IDX[next(i for i, t in INTENT_TILE.items() if t == tile)] for tile in tiles]
    )
    held_tile = np.column_stack([cust.held, np.zeros((n_c, len(tiles) - len(PRODUCTS)), bool)])
    util = (
        cfg.tile_affinity_scale * vis.prior[imp_cust][:, tile_intent]
        + cfg.tile_held_effect * held_tile[imp_cust]
    )
    # The customer's current need: the latest-started episode of theirs that covers the impression.
    cust_need = np.flatnonzero(~vis.is_prospect[needs.person])
    key_need = needs.person[cust_need] * (span + 60 * _DAY) + needs.start[cust_need] + 30 * _DAY
    order = np.argsort(key_need, kind="stable")
    cust_need, key_need = cust_need[order], key_need[order]
    key_imp = imp_cust * (span + 60 * _DAY) + imp_time + 30 * _DAY
    j = np.searchsorted(key_need, key_imp, side="right") - 1
    active = np.zeros(len(imp), bool)
    if len(cust_need):
        jj = cust_need[np.maximum(j, 0)]
        active = (
            (j >= 0)
            & (needs.person[jj] == imp_cust)
            & (needs.start[jj] <= imp_time)
            & (needs.end[jj] >= imp_time)
        )
    rows = np.flatnonzero(active)
    need_of_row = jj[rows] if len(rows) else np.zeros(0, np.int64)
    age_days = (imp_time[rows] - needs.start[need_of_row]) / _DAY
    need_tile = np.array([tiles.index(INTENT_TILE[i]) for i in NEED_INTENTS])
    boost = cfg.tile_need_boost * np.exp(-age_days / cfg.tile_recency_days)
    since = _since_latest_research(ev, web, need_of_row, imp_time[rows], span)
    boost += cfg.tile_research_boost * np.exp(-since / (cfg.tile_research_recency_days * _DAY))
    util[rows, need_tile[needs.intent[need_of_row]]] += boost
    util += cfg.tile_noise_sd * rng.normal(size=util.shape)
    util = np.column_stack([util, np.full(len(imp), cfg.tile_none_logit)])
    choice = np.argmax(util + rng.gumbel(size=util.shape), axis=1)
    tile_names = np.array(list(tiles) + [C.NO_CLICK], dtype=object)
    imp_order = np.lexsort((imp_cust, imp_time))
    iwidth = max(8, len(str(len(imp))))
    impressions = pd.DataFrame(
        {
            C.IMPRESSION_ID: [f"i{r:0{iwidth}d}" for r in range(len(imp))],
            C.CUSTOMER_ID: ids.customer[imp_cust[imp_order]],
            C.EVENT_TIMESTAMP: window.to_ts(imp_time[imp_order]),
            C.CLICKED_TILE: tile_names[choice[imp_order]],
        }
    )
    stats = {
        "click_rate": float((choice < len(tiles)).mean()) if len(imp) else 0.0,
        "impressions_with_active_need": float(active.mean()) if len(imp) else 0.0,
        "impressions_within_1d_of_research": float((since < _DAY).sum() / max(len(imp), 1)),
    }
    return impressions, stats


def _web_session_end(ev: _Walked) -> np.ndarray:
    """Seconds since the window start at which each web session's last event happened."""
    n_w = ev.n_web
    return ev.ev_time[ev.sess_first[:n_w] + ev.sess_len[:n_w] - 1] if n_w else np.zeros(0)


def _since_latest_research(
    ev: _Walked, web: _WebSessions, need: np.ndarray, t: np.ndarray, span: float
) -> np.ndarray:
    """Seconds from the end of need ``need[i]``'s latest web session ended by ``t[i]`` (inf: none yet)."""
    end = _web_session_end(ev)
    has = np.flatnonzero(web.need >= 0)
    scale = span + 30 * _DAY  # > any session end: one sorted key per (need, end)
    key = np.sort(web.need[has] * scale + end[has])
    q = need * scale + t
    j = np.searchsorted(key, q, side="right") - 1
    found = (
        (j >= 0) & (np.floor(key[np.maximum(j, 0)] / scale) == need) if len(key) else np.zeros(len(q), bool)
    )
    since = np.full(len(q), np.inf)
    since[found] = q[found] - key[j[found]]
    return since


def _conversions(
    rng: np.random.Generator,
    cfg: SimulatorConfig,
    ev: _Walked,
    web: _WebSessions,
    ids: _Ids,
    window: _Window,
) -> tuple[pd.DataFrame, np.ndarray, float]:
    """7. Conversions: one row per web session; also each web session's end and the conversion rate."""
    n_w = ev.n_web
    w_len = ev.sess_len[:n_w]
    web_ev = ev.is_web
    reached_start = (
        np.bincount(ev.ev_sess[web_ev & (ev.ev_page == _P["apply_start"])], minlength=n_w)[:n_w] > 0
    )
    reached_form = np.bincount(ev.ev_sess[web_ev & (ev.ev_page == _P["apply_form"])], minlength=n_w)[:n_w] > 0
    product_intent = web.intent < len(PRODUCTS)
    last_page = ev.ev_page[ev.sess_first[:n_w] + w_len - 1] if n_w else np.zeros(0, dtype=np.int64)
    left_at_apply = (last_page == _P["apply_start"]) | (last_page == _P["apply_form"])
    logit = (
        cfg.conv_base
        + np.where(product_intent, cfg.conv_product_intent, cfg.conv_other_intent)
        + cfg.conv_apply_start * reached_start
        + cfg.conv_apply_form * reached_form
        + cfg.conv_depth * np.log1p(w_len)
        + cfg.conv_apply_exit * left_at_apply
    )
    converts = rng.random(n_w) < _sigmoid(logit)
    popularity = np.array([0.10, 0.30, 0.10, 0.12, 0.16, 0.10, 0.07, 0.05])
    other = _choice(rng, popularity, n_w)
    same = product_intent & (rng.random(n_w) < cfg.conv_same_product)
    product = np.where(same, web.intent, other)
    sess_end = ev.ev_time[ev.sess_first[:n_w] + w_len - 1] if n_w else np.zeros(0)
    h = cfg.conversion_horizon_days * _DAY
    mean = cfg.conv_delay_days * _DAY
    delay = -mean * np.log1p(-rng.random(n_w) * (1 - np.exp(-h / mean)))  # exponential truncated at h
    product_names = np.array(list(PRODUCTS) + [C.NO_CONVERSION], dtype=object)
    conv_order = np.argsort(ids.sess_rank[:n_w], kind="stable")
    conversions = pd.DataFrame(
        {
            C.SESSION_ID: ids.session[:n_w][conv_order],
            C.VISITOR_ID: ids.visitor[web.visitor][conv_order],
            C.EVENT_TIMESTAMP: window.to_ts(sess_end[conv_order]),
            C.CONVERSION_PRODUCT: product_names[np.where(converts, product, len(PRODUCTS))][conv_order],
            "converted_at": window.to_ts(np.where(converts, sess_end + delay, np.nan)[conv_order]),
        }
    )
    return conversions, sess_end, float(converts.mean()) if n_w else 0.0


def _identity_links(
    rng: np.random.Generator,
    cfg: SimulatorConfig,
    ev: _Walked,
    web: _WebSessions,
    app: _AppSessions,
    vis: _Visitors,
    ids: _Ids,
    sess_end: np.ndarray,
    window: _Window,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """8. Identity links: a minority of the customers' seen visitors, resolved at an identity moment.

    With ``link_at_identity_moments`` a linked visitor is resolved at its first session handed off to
    the app (``app_handoff``) or that reached the login page (``login``), whichever ended first; a
    visitor with neither is resolved at a random session (``email_click``: a link in a bank e-mail)."""
    n_w = len(web.visitor)
    seen = np.bincount(web.visitor, minlength=vis.n_visitors)
    w_by_visitor = np.argsort(web.visitor, kind="stable")
    w_vis_first = np.cumsum(seen) - seen
    cust_visitor = ~vis.is_prospect[vis.owner]
    first_of = _first_identity_moment(ev, web, app, vis, sess_end)
    kind = np.where(_handed_off(app, n_w), LINK_METHODS.index("app_handoff"), LINK_METHODS.index("login"))
    eligible = cust_visitor & (seen > 0)
    p_link = np.full(vis.n_visitors, cfg.link_rate)
    if cfg.link_at_identity_moments:
        p_link = _link_probabilities(first_of >= 0, eligible, cfg.link_rate, cfg.link_moment_odds)
    linked = eligible & (rng.random(vis.n_visitors) < p_link)
    lv = np.flatnonzero(linked)
    at_sess = w_by_visitor[w_vis_first[lv] + np.floor(rng.random(len(lv)) * seen[lv]).astype(np.int64)]
    method = _choice(rng, cfg.link_method_probs, len(lv))
    if cfg.link_at_identity_moments:
        has = first_of[lv] >= 0
        at_sess = np.where(has, first_of[lv], at_sess)
        method = np.where(has, kind[np.maximum(first_of[lv], 0)], LINK_METHODS.index("email_click"))
    link_time = sess_end[at_sess]
    lorder = np.argsort(link_time, kind="stable")
    links = pd.DataFrame(
        {
            C.VISITOR_ID: ids.visitor[lv][lorder],
            C.CUSTOMER_ID: ids.customer[vis.owner[lv]][lorder],
            C.LINKED_AT: window.to_ts(link_time[lorder]),
            C.LINK_METHOD: np.array(LINK_METHODS, dtype=object)[method][lorder],
        }
    )
    n_seen = int((seen > 0).sum())
    stats = {
        "n_visitors_seen": float(n_seen),
        "prospect_share_seen": float(((seen > 0) & ~cust_visitor).sum() / max(n_seen, 1)),
        "link_rate_customer_visitors": float(len(lv) / max(((seen > 0) & cust_visitor).sum(), 1)),
        "link_rate_all_visitors": float(len(lv) / max(n_seen, 1)),
        "web_sessions_per_visitor": float(n_w / max(n_seen, 1)),
        "app_handoff_sessions": float((app.parent >= 0).sum()),
    }
    return links, stats


def _handed_off(app: _AppSessions, n_w: int) -> np.ndarray:
    """Per web session: was it handed off to the app."""
    handed = np.zeros(n_w, bool)
    handed[app.parent[app.parent >= 0]] = True
    return handed


def _first_identity_moment(
    ev: _Walked, web: _WebSessions, app: _AppSessions, vis: _Visitors, sess_end: np.ndarray
) -> np.ndarray:
    """Per visitor: its first web session (by end) handed off to the app or reaching login; -1: none."""
    n_w = len(web.visitor)
    login = np.zeros(n_w, bool)
    login[ev.ev_sess[ev.is_web & (ev.ev_page == _P["login"])]] = True
    moment = np.flatnonzero(_handed_off(app, n_w) | login)
    order = moment[np.lexsort((sess_end[moment], web.visitor[moment]))]
    first = order[np.r_[True, web.visitor[order][1:] != web.visitor[order][:-1]]] if len(order) else order
    first_of = np.full(vis.n_visitors, -1, np.int64)
    first_of[web.visitor[first]] = first
    return first_of


def _link_probabilities(has_moment: np.ndarray, eligible: np.ndarray, rate: float, odds: float) -> np.ndarray:
    """P(linked) per visitor: odds ``odds`` times higher with an identity moment, mean ``rate`` over the eligible."""
    if rate <= 0.0 or rate >= 1.0 or not eligible.any():
        return np.full(len(has_moment), rate)
    share = float(has_moment[eligible].mean())
    lo, hi = -30.0, 30.0
    for _ in range(100):  # bisection on the base log-odds: deterministic, exact to float precision
        a = 0.5 * (lo + hi)
        mean = share * _sigmoid(np.array(a + np.log(odds))) + (1 - share) * _sigmoid(np.array(a))
        lo, hi = (a, hi) if mean < rate else (lo, a)
    return _sigmoid(a + np.log(odds) * has_moment)


def _customer_frame(cust: _Customers, ids: _Ids, window: _Window) -> pd.DataFrame:
    """The customer snapshot at the window start (the "production baseline" profile)."""
    return pd.DataFrame(
        {
            C.CUSTOMER_ID: ids.customer,
            C.EVENT_TIMESTAMP: window.to_ts(np.zeros(len(ids.customer))),
            "tenure_months": cust.tenure,
            "age": cust.age.astype(np.int64),
            "app_sessions_30d": cust.app_30d.astype(np.int64),
            "balance_band": np.array(BALANCE_BANDS, dtype=object)[cust.band],
            "n_products": cust.held.sum(axis=1).astype(np.int64),
        }
        | {f"has_{p}": cust.held[:, j] for j, p in enumerate(PRODUCTS)}
    )


def _truth_frames(
    cfg: SimulatorConfig,
    ev: _Walked,
    web: _WebSessions,
    app: _AppSessions,
    vis: _Visitors,
    needs: _Needs,
    ids: _Ids,
    window: _Window,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Truth (evaluation only): each session's intent and owner, and the need episodes."""
    n_c, n_p, n_w, n_a = cfg.n_customers, vis.n_prospects, ev.n_web, ev.n_app
    owner = np.concatenate([vis.owner[web.visitor], app.customer])
    parent = np.concatenate([np.full(n_w, -1, np.int64), app.parent])  # hand-off: the web session it follows
    cwidth = _customer_id_width(n_c)
    person_id = np.concatenate(
        [ids.customer, np.array([f"p{i:0{cwidth}d}" for i in range(n_p)], dtype=object)]
    )
    owner_id = person_id[owner]
    truth = (
        pd.DataFrame(
            {
                C.SESSION_ID: ids.session,
                C.TRUE_INTENT: np.array(list(ALL_INTENTS) + [BROWSING], dtype=object)[
                    np.where(ev.chain == _APP_CHAIN, len(ALL_INTENTS), ev.chain)
                ],
                C.CHANNEL: np.where(np.arange(n_w + n_a) < n_w, "web", "app").astype(object),
                "true_owner_id": owner_id,
                "is_prospect": owner >= n_c,
                "need_active": np.concatenate([web.need >= 0, np.zeros(n_a, bool)]),
                "handoff_from_session_id": np.append(ids.session, None)[parent],
            }
        )
        .iloc[ids.sess_order]
        .reset_index(drop=True)
    )
    need_frame = (
        pd.DataFrame(
            {
                "person_id": person_id[needs.person],
                "is_prospect": vis.is_prospect[needs.person],
                C.TRUE_INTENT: np.array(NEED_INTENTS, dtype=object)[needs.intent],
                "need_start": window.to_ts(needs.start),
                "need_end": window.to_ts(needs.end),
            }
        )
        .sort_values(["person_id", "need_start"], kind="stable")
        .reset_index(drop=True)
    )
    return truth, need_frame


def _params(cfg: SimulatorConfig, window: _Window, vis: _Visitors) -> dict[str, Any]:
    """Everything needed to reproduce or interpret a run (``truth/params.json``)."""
    return {
        "config": asdict(cfg),
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "need_intents": list(NEED_INTENTS),
        "page_types": list(PAGE_TYPES),
        "funnels": {k: list(v) for k, v in FUNNELS.items()},
        "tiles": list(TILES),
        "products": list(PRODUCTS),
        "n_prospects": vis.n_prospects,
        "n_visitors_total": vis.n_visitors,
    }


def simulator_world(config: SimulatorConfig | None = None) -> World:
    """The simulated bank's declaration: what a real bank writes by hand in its ``world.yaml``."""
    cfg = config or SimulatorConfig()
    return World(
        name="simulated-bank",
        tiles=TILES,
        tile_pages=dict(TILE_PAGES),
        products=PRODUCTS,
        page_types=WEB_PAGES,
        page_patterns={},  # the simulator writes page types, not URLs: each raw value is its own type
        app_page_types=APP_PAGES,
        app_page_patterns={},
        funnel=Funnel(
            product=PRODUCT_PAGES,
            application_start="apply_start",
            application_form="apply_form",
            apply=("apply_start", "apply_form"),
            search=("search",),
        ),
        profile=dict(PROFILE),
        conversion_horizon_days=float(cfg.conversion_horizon_days),
        keywords=dict(RULE_KEYWORDS),
        source="c2i simulate",
    )


@dataclass
class _Run:
    """Everything one simulation draws, in the random stream's order; the events are not validated yet."""

    cfg: SimulatorConfig
    window: _Window
    vis: _Visitors
    ev: _Walked
    ids: _Ids
    raw: _RawInputs
    frames: dict[str, pd.DataFrame]  # every output frame but the events
    stats: dict[str, float]
    t_start: float
    cpu_start: float


def _draw(cfg: SimulatorConfig) -> _Run:
    """Steps 1-8 of the module docstring. Validating the events draws nothing, so drawing the tiles,
    conversions and links before it (not after, as before the events were written in chunks) leaves
    every frame as it was for a seed."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(cfg.seed)
    window = _Window.of(cfg)

    cust = _draw_customers(rng, cfg)  # 1
    vis = _draw_visitors(rng, cfg, cust)  # 2
    needs = _draw_needs(rng, cfg, vis, window.span)  # 3
    web = _draw_web_sessions(rng, cfg, vis, needs, window.span)  # 4
    app = _draw_app_sessions(rng, cfg, cust, vis, needs, web, window.span)  # 5
    ev = _walk_sessions(rng, cfg, web, app)
    ids = _public_ids(ev.sess_start, vis.label, cfg.n_customers)
    raw = _raw_inputs(rng, cfg, ev, web, vis)

    impressions, tile_stats = _tile_impressions(rng, cfg, ev, cust, vis, needs, web, ids, window)  # 6
    conversions, sess_end, conversion_rate = _conversions(rng, cfg, ev, web, ids, window)  # 7
    links, link_stats = _identity_links(rng, cfg, ev, web, app, vis, ids, sess_end, window)  # 8
    truth, need_frame = _truth_frames(cfg, ev, web, app, vis, needs, ids, window)
    frames = {
        "identity_links": links,
        "customers": _customer_frame(cust, ids, window),
        "tile_impressions": impressions,
        "conversions": conversions,
        "session_truth": truth,
        "needs": need_frame,
    }
    n_w, n_a = ev.n_web, ev.n_app
    stats = {
        "n_web_sessions": float(n_w),
        "n_app_sessions": float(n_a),
        **link_stats,
        "web_events_per_session": float(ev.sess_len[:n_w].mean()) if n_w else 0.0,
        "app_events_per_session": float(ev.sess_len[n_w:].mean()) if n_a else 0.0,
        **tile_stats,
        "conversion_rate": conversion_rate,
        "search_query_share": float(raw.is_search.mean()),
        "seconds_generate": time.perf_counter() - t_start,
    }
    return _Run(cfg, window, vis, ev, ids, raw, frames, stats, t_start, cpu_start)


def _validation_now(cfg: SimulatorConfig, window: _Window) -> pd.Timestamp:
    return max(pd.Timestamp.now(tz="UTC"), window.end + pd.Timedelta(days=cfg.conversion_horizon_days + 1))


def _result(
    run: _Run, events: pd.DataFrame | None, report: ValidationReport, n_events: int, t_val: float
) -> SimulationResult:
    t_end = time.perf_counter()
    stats = dict(run.stats)
    stats.update(
        n_events=float(n_events),
        pii_redactions=float(sum(report.pii_redactions.values())),
        seconds_validate=t_val,
        seconds_total=t_end - run.t_start,
        cpu_seconds_total=time.process_time() - run.cpu_start,  # less sensitive to a busy machine
        events_per_second=n_events / max(t_end - run.t_start, 1e-9),
    )
    logger.info(
        "simulated %s events (%s web, %s app sessions) in %.1f s",
        f"{n_events:,}", f"{run.ev.n_web:,}", f"{run.ev.n_app:,}", t_end - run.t_start,
    )  # fmt: skip
    return SimulationResult(
        events=events,
        **run.frames,
        params=_params(run.cfg, run.window, run.vis),
        validation=report.to_dict(),
        world=simulator_world(run.cfg),
        stats=stats,
    )


def simulate(config: SimulatorConfig | None = None) -> SimulationResult:
    """Generate one dataset (see the module docstring); events are validated and PII-scrubbed.

    The steps run in the docstring's order and draw from one random stream in a fixed sequence: the
    same config gives identical frames. Every event is held in memory (about 1 KB each while it is
    validated): :func:`generate` writes a large simulation without holding them.
    """
    cfg = config or SimulatorConfig()
    run = _draw(cfg)
    t = time.perf_counter()
    validated = _validate_raw(_raw_frame(run.raw, run.ev, run.ids, run.window), cfg, run.window)
    t_val = time.perf_counter() - t
    return _result(run, validated.events, validated.report, len(validated.events), t_val)


EVENTS_CHUNK = 500_000  # events validated at once by generate(): bounds its memory (~1 KB per event)
ROW_GROUP = 1024 * 1024  # rows per parquet row group: pyarrow's default, so the file is write_events'


def _write_events(run: _Run, path: Path, chunk_events: int) -> tuple[ValidationReport, int]:
    """Validate the events in chunks of whole sessions and write them as they come, in the contract's
    order and with write_events' row groups: the file ``write_events`` writes of the whole frame."""
    from clicks2intent.data.contract import EVENT_SCHEMA, ReportMerger, to_arrow

    cfg, world, now = run.cfg, simulator_world(run.cfg), _validation_now(run.cfg, run.window)
    merger = ReportMerger()
    n_events = n_sessions = 0
    pending: list[pa.Table] = []
    with atomic_output(path) as tmp:
        writer: pq.ParquetWriter | None = None
        try:
            for rows in _event_chunks(run.ev, run.ids, chunk_events):
                raw = _raw_frame(run.raw, run.ev, run.ids, run.window, rows)
                part = validate_events(raw, world=world, max_session_events=max(cfg.max_web_events,
                                       cfg.max_app_events), now=now)  # fmt: skip
                del raw  # the raw (unscrubbed) queries go no further
                if part.report.n_rejected:
                    raise RuntimeError(
                        f"simulator produced rows the contract rejects:\n{part.report.to_text()}"
                    )
                merger.add(part.report, rows)
                n_events += len(part.events)
                n_sessions += part.report.n_sessions
                pending.append(to_arrow(part.events))
                writer = _flush(pending, writer, tmp, EVENT_SCHEMA, final=False)
            writer = _flush(pending, writer, tmp, EVENT_SCHEMA, final=True)
        finally:
            if writer is not None:
                writer.close()
    return merger.result(n_sessions), n_events


def _flush(
    pending: list[pa.Table], writer: pq.ParquetWriter | None, tmp: Path, schema: pa.Schema, final: bool
) -> pq.ParquetWriter | None:
    """Write the whole row groups in ``pending`` (and, when ``final``, the rest); returns the writer
    (opened with the first rows' schema, pandas metadata included, as ``write_events`` writes it)."""
    table = pa.concat_tables(pending) if pending else schema.empty_table()
    pending.clear()
    while table.num_rows >= ROW_GROUP:
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table.slice(0, ROW_GROUP))
        table = table.slice(ROW_GROUP)
    if final and (table.num_rows or writer is None):
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    elif table.num_rows:
        pending.append(table)
    return writer


def _data_relative(path: Path) -> str:
    return path.relative_to(ARTIFACTS.data).as_posix()


# Each frame's file, relative to the output directory (``artifacts/data`` by default).
OUTPUT_FILES: dict[str, str] = {
    "events": _data_relative(ARTIFACTS.events),
    "identity_links": _data_relative(ARTIFACTS.identity_links),
    "customers": _data_relative(ARTIFACTS.customers),
    "tile_impressions": _data_relative(ARTIFACTS.tile_impressions),
    "conversions": _data_relative(ARTIFACTS.conversions),
    "session_truth": _data_relative(ARTIFACTS.session_truth),
    "needs": _data_relative(ARTIFACTS.truth / "needs.parquet"),
}
_TRUTH_DIR = _data_relative(ARTIFACTS.truth)
PARAMS_FILE = f"{_TRUTH_DIR}/params.json"


def write_simulation(result: SimulationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write every frame as parquet (timestamps in UTC microseconds) plus ``truth/params.json``
    (the events too, unless :func:`generate` already wrote them: ``result.events`` is None)."""
    out = Path(out_dir)
    (out / _TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, rel in OUTPUT_FILES.items():
        frame: pd.DataFrame = getattr(result, name)
        path = out / rel
        if name == "events":
            if frame is not None:
                write_events(frame, path)
        else:
            frame = frame.copy()
            for col in frame.columns:
                if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
                    frame[col] = frame[col].astype("datetime64[us, UTC]")
            frame.to_parquet(path, index=False)
        paths[name] = path
    params_path = out / PARAMS_FILE
    params_path.write_text(json.dumps(result.params, indent=2, sort_keys=True) + "\n")
    paths["params"] = params_path
    # The simulator is one data source like any other: its declaration travels with its data.
    paths["world"] = write_world(result.world, out / WORLD_FILE)
    return paths


def summary(result: SimulationResult, paths: dict[str, Path] | None = None) -> str:
    """The lines ``c2i simulate`` prints: rows per file and the key marginals."""
    s = result.stats
    lines = []
    for name, rel in OUTPUT_FILES.items():
        where = f"  {paths[name]}" if paths else ""
        frame = getattr(result, name)
        rows = int(s["n_events"]) if frame is None else len(frame)
        lines.append(f"{rel:<30} {rows:>10,} rows{where}")
    lines += [
        f"web sessions {int(s['n_web_sessions']):,} ({s['web_events_per_session']:.2f} events each), "
        f"app sessions {int(s['n_app_sessions']):,} ({s['app_events_per_session']:.2f} events each)",
        f"visitors seen {int(s['n_visitors_seen']):,} (prospects {s['prospect_share_seen']:.1%}), "
        f"{s['web_sessions_per_visitor']:.2f} web sessions per visitor",
        f"link rate: {s['link_rate_customer_visitors']:.1%} of customer visitors, {s['link_rate_all_visitors']:.1%} of all",
        f"tile click rate {s['click_rate']:.1%} (impressions during an active need {s['impressions_with_active_need']:.1%})",
        f"conversion rate {s['conversion_rate']:.2%} of web sessions",
        f"PII redactions in search queries: {int(s['pii_redactions'])} ({result.validation.get('pii_redactions', {})})",
        f"{int(s['n_events']):,} events in {s['seconds_total']:.1f} s "
        f"(generate {s['seconds_generate']:.1f} s, validate {s['seconds_validate']:.1f} s): "
        f"{s['events_per_second']:,.0f} events/s (CPU time {s['cpu_seconds_total']:.1f} s)",
    ]
    return "\n".join(lines)


def generate(
    config: SimulatorConfig, out_dir: str | Path, chunk_events: int = EVENTS_CHUNK
) -> tuple[SimulationResult, dict[str, Path]]:
    """Simulate and write (what ``c2i simulate`` does); ``stats["seconds_write"]`` holds the write time.

    The events are validated and written ``chunk_events`` at a time (whole sessions, in the file's
    order), never held together: the files are those of ``write_simulation(simulate(config))`` (tested)
    and ``result.events`` is None. Memory: the simulation's arrays (~120 B per event) plus one chunk."""
    run = _draw(config)
    out = Path(out_dir)
    (out / _TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    report, n_events = _write_events(run, out / OUTPUT_FILES["events"], chunk_events)
    result = _result(run, None, report, n_events, time.perf_counter() - t)
    t = time.perf_counter()
    paths = write_simulation(result, out_dir)
    paths["events"] = out / OUTPUT_FILES["events"]
    result.stats["seconds_write"] = time.perf_counter() - t
    logger.debug("simulation written to %s", Path(out_dir).resolve())
    return result, paths

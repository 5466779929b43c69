"""Conversion labels from a bank's applications table, with the world's conversion horizon.

A bank records applications (who applied for which product, when), not "the conversion of each web
session". The conversion task needs the latter: for every web session, the first application for one of
the world's products by the same person within ``conversion_horizon_days`` after the session ended, else
``none``. The person is the session's visitor, or a customer linked to that visitor (an application
made in a branch or the app carries a customer id). Labels are targets: they may use links made after
the session (unlike features), but never an application before the session ended.

Applications contract (``applications.parquet`` or CSV), one row per application: ``event_timestamp``
(when it was made, UTC), ``product`` (a declared product), and ``visitor_id`` and/or ``customer_id``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clicks2intent.common.files import atomic_output
from clicks2intent.data.contract import parse_timestamps, read_raw
from clicks2intent.data.world import World, check_labels
from clicks2intent.errors import ContractError
from clicks2intent.names import columns as C

logger = logging.getLogger(__name__)

CONVERTED_AT = "converted_at"


@dataclass
class ConversionReport:
    """What :func:`conversions_from_applications` matched."""

    n_sessions: int
    n_applications: int
    n_converted: int
    n_applications_unmatched: int  # no web session of that person ended within the horizon before it
    per_product: dict[str, int]

    def to_text(self) -> str:
        share = self.n_converted / self.n_sessions if self.n_sessions else 0.0
        products = ", ".join(f"{p} {n:,}" for p, n in self.per_product.items())
        return (
            f"conversions: {self.n_converted:,} of {self.n_sessions:,} web sessions ({share:.2%}) led to an "
            f"application within the horizon ({products or 'none'}); {self.n_applications_unmatched:,} of "
            f"{self.n_applications:,} applications follow no web session of their visitor or customer"
        )


def web_sessions(events: pd.DataFrame) -> pd.DataFrame:
    """``session_id, visitor_id, event_timestamp`` (the session's end) of every web session."""
    web = events[events[C.CHANNEL] == "web"] if C.CHANNEL in events else events
    g = web.groupby(C.SESSION_ID, sort=True)
    return pd.DataFrame(
        {C.VISITOR_ID: g[C.VISITOR_ID].first(), C.EVENT_TIMESTAMP: g[C.EVENT_TIMESTAMP].max()}
    ).reset_index()


def conversions_from_applications(
    events: pd.DataFrame, applications: pd.DataFrame, links: pd.DataFrame | None, world: World
) -> tuple[pd.DataFrame, ConversionReport]:
    """One row per web session: ``session_id, visitor_id, event_timestamp, product, converted_at``."""
    for col in (C.EVENT_TIMESTAMP, C.CONVERSION_PRODUCT):
        if col not in applications.columns:
            raise ContractError(f"applications: required column {col!r} is missing")
    if C.VISITOR_ID not in applications.columns and C.CUSTOMER_ID not in applications.columns:
        raise ContractError("applications: needs a visitor_id or a customer_id column (who applied)")
    apps = applications.copy()
    ts, _ = parse_timestamps(apps[C.EVENT_TIMESTAMP])
    if ts.isna().any():
        raise ContractError(
            f"applications: event_timestamp: {int(ts.isna().sum())} value(s) are not timestamps"
        )
    apps[C.EVENT_TIMESTAMP] = ts
    check_labels(apps[C.CONVERSION_PRODUCT], world.products, "applications", C.CONVERSION_PRODUCT, world)
    sessions = web_sessions(events)
    horizon = pd.Timedelta(days=world.conversion_horizon_days)
    # Who applied, as visitor ids: the application's own visitor, and every visitor linked to its customer.
    by_visitor = []
    if C.VISITOR_ID in apps.columns:
        by_visitor.append(apps[apps[C.VISITOR_ID].notna()].assign(_app=lambda d: d.index))
    if C.CUSTOMER_ID in apps.columns and links is not None and len(links):
        with_customer = apps[apps[C.CUSTOMER_ID].notna()].drop(columns=[C.VISITOR_ID], errors="ignore")
        linked = with_customer.assign(_app=lambda d: d.index).merge(
            links[[C.VISITOR_ID, C.CUSTOMER_ID]].drop_duplicates(), on=C.CUSTOMER_ID, how="inner"
        )
        by_visitor.append(linked)
    cols = [C.VISITOR_ID, C.EVENT_TIMESTAMP, C.CONVERSION_PRODUCT, "_app"]
    candidates = pd.concat([d[cols] for d in by_visitor], ignore_index=True) if by_visitor else None
    out = sessions.assign(
        **{
            C.CONVERSION_PRODUCT: C.NO_CONVERSION,
            CONVERTED_AT: pd.Series(pd.NaT, index=sessions.index, dtype="datetime64[us, UTC]"),
        }
    )
    matched_apps: set[int] = set()
    if candidates is not None and len(candidates):
        pairs = sessions.merge(
            candidates.rename(columns={C.EVENT_TIMESTAMP: "_applied"}), on=C.VISITOR_ID, how="inner"
        )
        after = pairs["_applied"] > pairs[C.EVENT_TIMESTAMP]
        within = pairs["_applied"] <= pairs[C.EVENT_TIMESTAMP] + horizon
        pairs = pairs[after & within].sort_values([C.SESSION_ID, "_applied"], kind="stable")
        first = pairs.drop_duplicates(C.SESSION_ID, keep="first").set_index(C.SESSION_ID)
        hit = out[C.SESSION_ID].isin(first.index).to_numpy()
        out.loc[hit, C.CONVERSION_PRODUCT] = (
            out.loc[hit, C.SESSION_ID].map(first[C.CONVERSION_PRODUCT]).to_numpy()
        )
        out.loc[hit, CONVERTED_AT] = out.loc[hit, C.SESSION_ID].map(first["_applied"]).to_numpy()
        matched_apps = set(pairs["_app"].tolist())
    converted = out[out[C.CONVERSION_PRODUCT] != C.NO_CONVERSION]
    report = ConversionReport(
        n_sessions=len(out),
        n_applications=len(apps),
        n_converted=len(converted),
        n_applications_unmatched=int(len(apps) - len(matched_apps)),
        per_product={p: int(n) for p, n in converted[C.CONVERSION_PRODUCT].value_counts().items()},
    )
    logger.info(report.to_text())
    return out.reset_index(drop=True), report


def write_conversions(
    data_dir: str | Path, applications_path: str | Path, world: World
) -> tuple[Path, ConversionReport]:
    """``c2i ingest applications``: ``data_dir``'s events (+ identity links) and the applications file →
    ``data_dir/conversions.parquet``."""
    data_dir = Path(data_dir)
    events_path, links_path = data_dir / "events.parquet", data_dir / "identity_links.parquet"
    if not events_path.is_file():
        raise ContractError(f"{events_path} not found: ingest or validate the events first")
    events = pd.read_parquet(events_path, columns=[C.SESSION_ID, C.EVENT_TIMESTAMP, C.VISITOR_ID, C.CHANNEL])
    links = pd.read_parquet(links_path) if links_path.is_file() else None
    frame, report = conversions_from_applications(events, read_raw(applications_path), links, world)
    out = data_dir / "conversions.parquet"
    frame = frame.assign(**{C.EVENT_TIMESTAMP: frame[C.EVENT_TIMESTAMP].astype("datetime64[us, UTC]")})
    with atomic_output(out) as tmp:
        frame.to_parquet(tmp, index=False)
    return out, report

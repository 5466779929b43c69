"""Oracle columns from the simulator's truth: how much signal the pipeline could recover at best.

Evaluation only. These columns are read from ``truth/`` (the hidden intents and need episodes) and
joined to the ablation's test-period frames AFTER the Feast fetch; they never pass through a feature
view, a feature service or a saved model (``tests/evaluation/test_oracle.py`` fails if one does).

Tile ranking (per impression: ``customer_id``, ``event_timestamp`` t):

* ``oracle_observable``: the TRUE intent and age (days) of the latest web session the bank could see
  at t: a session of a visitor linked to the customer, ended by t, with the link known by t
  (``linked_at`` ≤ t; a link makes the visitor's earlier history attributable from then on, as the
  feature build does). A perfect encoder plus a perfect labeller could know at most this much from
  the latest session, so it marks the *observable headroom*.
* ``oracle_need``: the customer's true active need at t (intent and age), observable or not: the
  ceiling of any web-intent feature.

Conversion (per web session): ``oracle_observable`` is the session's own true intent (the session is
fully seen; what a perfect label of it would say).

If ``oracle_observable`` shows no headroom over the baseline, the simulated world carries no
observable web intent and no feature can help: the report says so instead of blaming the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from clicks2intent.errors import ArtifactError
from clicks2intent.names import columns as C

ORACLE_OBSERVABLE, ORACLE_NEED = "oracle_observable", "oracle_need"
ORACLES: tuple[str, ...] = (ORACLE_OBSERVABLE, ORACLE_NEED)
ORACLE_GROUP = "oracle"  # the feature group of every oracle column (never a Feast feature's group)
PREFIX = "oracle__"  # every oracle column starts with it: a test scans feature services for it
OBS_INTENT, OBS_AGE_DAYS = f"{PREFIX}observed_intent", f"{PREFIX}observed_age_days"
NEED_INTENT, NEED_AGE_DAYS = f"{PREFIX}need_intent", f"{PREFIX}need_age_days"
SESSION_INTENT = f"{PREFIX}session_intent"
TILE_ORACLE_FEATURES: dict[str, tuple[str, ...]] = {
    ORACLE_OBSERVABLE: (OBS_INTENT, OBS_AGE_DAYS),
    ORACLE_NEED: (NEED_INTENT, NEED_AGE_DAYS),
}
CONVERSION_ORACLE_FEATURES: dict[str, tuple[str, ...]] = {ORACLE_OBSERVABLE: (SESSION_INTENT,)}
_DAY = pd.Timedelta(days=1)


def is_oracle_column(name: str) -> bool:
    return name.startswith(PREFIX)


_TRUTH_FILES = {"session_truth": ("truth", "session_truth.parquet"), "needs": ("truth", "needs.parquet")}
_DATA_FILES = {"events": ("events.parquet",), "links": ("identity_links.parquet",)}


def _paths(data_dir: str | Path) -> dict[str, Path]:
    d = Path(data_dir)
    return {what: d.joinpath(*parts) for what, parts in (_DATA_FILES | _TRUTH_FILES).items()}


def has_truth(data_dir: str | Path) -> bool:
    """Whether ``data_dir`` holds simulator truth and its inputs (real data has none: no oracle rows)."""
    return all(p.is_file() for p in _paths(data_dir).values())


def web_session_ends(events_path: Path) -> pd.DataFrame:
    """``session_id, visitor_id, end`` of every web session (from the events: any data source has them)."""
    ev = pq.read_table(
        events_path, columns=[C.SESSION_ID, C.EVENT_TIMESTAMP, C.VISITOR_ID, C.CHANNEL]
    ).to_pandas()
    ev = ev[ev[C.CHANNEL] == "web"]
    g = ev.groupby(C.SESSION_ID, sort=False)
    return pd.DataFrame(
        {C.VISITOR_ID: g[C.VISITOR_ID].first(), "end": g[C.EVENT_TIMESTAMP].max()}
    ).reset_index()


def _utc(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s)
    s = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
    return s.astype("datetime64[ns, UTC]")  # one unit on both sides of every as-of join


def _none_for_missing(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """A missing label is None (an unknown category), not a float NaN inside an object column."""
    col = frame[column].astype(object)
    frame[column] = col.where(col.notna(), None)
    return frame


def observable_latest_session(
    rows: pd.DataFrame, sessions: pd.DataFrame, links: pd.DataFrame, truth: pd.DataFrame
) -> pd.DataFrame:
    """Per row (``customer_id``, ``event_timestamp``): true intent and age of the latest visible session.

    ``sessions``: ``session_id, visitor_id, end``; ``links``: ``visitor_id, customer_id, linked_at``;
    ``truth``: ``session_id, true_intent``. Returns ``OBS_INTENT, OBS_AGE_DAYS`` on ``rows``' index."""
    out = pd.DataFrame({OBS_INTENT: pd.Series(None, index=rows.index, dtype=object), OBS_AGE_DAYS: np.nan})
    if not len(rows) or not len(links) or not len(sessions):
        return out
    q = pd.DataFrame(
        {"_row": np.arange(len(rows)), C.CUSTOMER_ID: rows[C.CUSTOMER_ID].astype(str).to_numpy(),
         "t": _utc(rows[C.EVENT_TIMESTAMP]).reset_index(drop=True)}
    )  # fmt: skip
    lk = links[[C.VISITOR_ID, C.CUSTOMER_ID, C.LINKED_AT]].astype({C.CUSTOMER_ID: str, C.VISITOR_ID: str})
    pairs = q.merge(lk.assign(**{C.LINKED_AT: _utc(lk[C.LINKED_AT])}), on=C.CUSTOMER_ID)
    pairs = pairs[pairs[C.LINKED_AT] <= pairs["t"]].sort_values("t", kind="stable")
    ses = sessions.astype({C.VISITOR_ID: str}).assign(end=lambda d: _utc(d["end"]))
    ses = ses.merge(truth[[C.SESSION_ID, C.TRUE_INTENT]], on=C.SESSION_ID).sort_values("end", kind="stable")
    if not len(pairs):
        return out
    m = pd.merge_asof(pairs, ses, left_on="t", right_on="end", by=C.VISITOR_ID).dropna(subset=["end"])
    latest = m.sort_values(["_row", "end"], kind="stable").groupby("_row").tail(1)
    idx = rows.index[latest["_row"].to_numpy()]
    out.loc[idx, OBS_INTENT] = latest[C.TRUE_INTENT].astype(str).to_numpy()
    out.loc[idx, OBS_AGE_DAYS] = ((latest["t"] - latest["end"]) / _DAY).to_numpy()
    return _none_for_missing(out, OBS_INTENT)


def active_need(rows: pd.DataFrame, needs: pd.DataFrame) -> pd.DataFrame:
    """Per row: the customer's latest-started need episode that covers t (intent, age in days)."""
    out = pd.DataFrame({NEED_INTENT: pd.Series(None, index=rows.index, dtype=object), NEED_AGE_DAYS: np.nan})
    nd = needs[~needs["is_prospect"].astype(bool)].rename(columns={"person_id": C.CUSTOMER_ID})
    if not len(rows) or not len(nd):
        return out
    nd = nd.assign(
        **{C.CUSTOMER_ID: nd[C.CUSTOMER_ID].astype(str), "need_start": _utc(nd["need_start"]),
           "need_end": _utc(nd["need_end"])}
    ).sort_values("need_start", kind="stable")  # fmt: skip
    q = pd.DataFrame(
        {"_row": np.arange(len(rows)), C.CUSTOMER_ID: rows[C.CUSTOMER_ID].astype(str).to_numpy(),
         "t": _utc(rows[C.EVENT_TIMESTAMP]).reset_index(drop=True)}
    ).sort_values("t", kind="stable")  # fmt: skip
    m = pd.merge_asof(q, nd, left_on="t", right_on="need_start", by=C.CUSTOMER_ID)
    m = m[m["need_end"] >= m["t"]]
    idx = rows.index[m["_row"].to_numpy()]
    out.loc[idx, NEED_INTENT] = m[C.TRUE_INTENT].astype(str).to_numpy()
    out.loc[idx, NEED_AGE_DAYS] = ((m["t"] - m["need_start"]) / _DAY).to_numpy()
    return _none_for_missing(out, NEED_INTENT)


class TruthOracle:
    """Reads a simulation's truth once; adds oracle columns to any task frame (evaluation only)."""

    def __init__(self, data_dir: str | Path) -> None:
        p = _paths(data_dir)
        for what, path in p.items():
            if not path.is_file():
                raise ArtifactError(
                    f"oracle: {what} file {path} not found (oracles need the simulator's truth/)"
                )
        self.truth = pd.read_parquet(p["session_truth"], columns=[C.SESSION_ID, C.TRUE_INTENT])
        self.needs = pd.read_parquet(p["needs"])
        self.links = pd.read_parquet(p["links"])
        self.sessions = web_session_ends(p["events"])

    def tile_columns(self, rows: pd.DataFrame) -> pd.DataFrame:
        # (``self.links`` may be replaced, e.g. by the link-rate sweep's re-simulated links.)
        """Both tile oracles' columns for impression rows (``customer_id``, ``event_timestamp``)."""
        return pd.concat(
            [
                observable_latest_session(rows, self.sessions, self.links, self.truth),
                active_need(rows, self.needs),
            ],
            axis=1,
        )

    def conversion_columns(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The session's own true intent for conversion rows (``session_id``)."""
        intent = self.truth.set_index(C.SESSION_ID)[C.TRUE_INTENT]
        return pd.DataFrame({SESSION_INTENT: rows[C.SESSION_ID].map(intent).astype(object)}, index=rows.index)


def oracle_variant_features(
    task_oracles: dict[str, tuple[str, ...]], baseline: Sequence[str]
) -> dict[str, list[str]]:
    """Each oracle variant trains on the baseline's features plus its own oracle columns."""
    return {name: list(baseline) + list(cols) for name, cols in task_oracles.items()}

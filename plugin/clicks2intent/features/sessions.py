"""Per-session statistics over the bank's declared page types: the pure feature math of ``session_activity``.

The offline job (:mod:`clicks2intent.features.build`) runs it over every bucket of sessions and serving
runs it over the one in-flight session, so the two cannot drift apart. Which pages count as searches,
product pages, application steps and which tile each page shows interest in all come from the world
declaration (:class:`clicks2intent.data.world.World`): this module names no page of any bank.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clicks2intent.data.world import World
from clicks2intent.names import columns as C
from clicks2intent.names.features import (
    SESSION_CHANNEL,
    SESSION_DURATION_S,
    SESSION_MEAN_DWELL_S,
    SESSION_N_APPLY_PAGES,
    SESSION_N_DISTINCT_PAGES,
    SESSION_N_EVENTS,
    SESSION_N_PRODUCT_PAGES,
    SESSION_N_SEARCHES,
    SESSION_REACHED_APPLY_FORM,
    SESSION_REACHED_APPLY_START,
)


def session_stats(events: pd.DataFrame, world: World) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract events (any subset of whole sessions) → (session_activity rows, tile hits per session).

    The tile-hit frame has one boolean column per tile of the world: did the session visit one of that
    tile's pages. Page types outside the world's web pages (app screens, OOV) count in the totals only."""
    ev = events
    funnel = world.funnel
    page = ev[C.PAGE_TYPE].astype(str)
    query = ev[C.SEARCH_QUERY] if C.SEARCH_QUERY in ev else pd.Series(None, index=ev.index, dtype=object)
    has_query = query.notna() & (query.astype(str).str.strip() != "")
    derived = pd.DataFrame(
        {
            C.SESSION_ID: ev[C.SESSION_ID].astype(str),
            "_ts": ev[C.EVENT_TIMESTAMP],
            "_page": page,
            "_search": (page.isin(funnel.search) | has_query).astype(np.int64),
            "_apply": page.isin(funnel.apply).astype(np.int64),
            "_product": page.isin(funnel.product).astype(np.int64),
            "_start": (page == funnel.application_start).astype(np.int64),
            "_form": (page == funnel.application_form).astype(np.int64),
            "_dwell": pd.to_numeric(ev[C.DWELL_SECONDS], errors="coerce")
            if C.DWELL_SECONDS in ev
            else np.nan,
            "_visitor": ev.get(C.VISITOR_ID),
            "_channel": ev.get(C.CHANNEL),
        }
    )
    tile_cols = [f"_tile_{i}" for i in range(len(world.tiles))]
    for col, tile in zip(tile_cols, world.tiles, strict=True):
        derived[col] = page.isin(world.tile_pages.get(tile, ()))
    g = derived.groupby(C.SESSION_ID, sort=True)
    start, end = g["_ts"].min(), g["_ts"].max()
    activity = pd.DataFrame(
        {
            C.EVENT_TIMESTAMP: end,
            C.VISITOR_ID: g["_visitor"].first(),
            SESSION_CHANNEL: g["_channel"].first(),
            SESSION_N_EVENTS: g.size().astype(np.int64),
            SESSION_DURATION_S: (end - start).dt.total_seconds(),
            SESSION_N_SEARCHES: g["_search"].sum(),
            SESSION_N_APPLY_PAGES: g["_apply"].sum(),
            SESSION_N_PRODUCT_PAGES: g["_product"].sum(),
            SESSION_N_DISTINCT_PAGES: g["_page"].nunique().astype(np.int64),
            SESSION_MEAN_DWELL_S: g["_dwell"].mean(),
            SESSION_REACHED_APPLY_START: g["_start"].max().astype(np.int64),
            SESSION_REACHED_APPLY_FORM: g["_form"].max().astype(np.int64),
        }
    )
    bag = pd.crosstab(derived[C.SESSION_ID], derived["_page"]).reindex(
        index=activity.index, columns=list(world.page_types), fill_value=0
    )
    bag.columns = list(world.page_count_fields)
    activity = pd.concat([activity, bag.astype(np.int64)], axis=1).reset_index()
    tiles = g[tile_cols].any()
    tiles.columns = list(world.tiles)
    return activity, tiles.reset_index()

"""The distilled label of a session is the same offline and online.

Offline: ``c2i taxonomy distill`` labels finished sessions from their embedding and their events' pages
and search words (``session_texts``). Online: the on-demand view's transform and ``/intent`` label the
in-flight request's arrays (``inflight_request`` → ``inflight_intent_transform`` / ``request_text``).
Both must hand the classifier the same inputs, so the labels agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicks2intent.names import columns as C
from clicks2intent.names import features as N
from clicks2intent.names.paths import ArtifactLayout

pytestmark = pytest.mark.slow  # the tiny pipeline (~30 s to build, once per session)


def _web_sessions(pipeline: Path, n: int = 40) -> tuple[pd.DataFrame, list[str]]:
    layout = ArtifactLayout(pipeline)
    events = pd.read_parquet(layout.events)
    web = events[events[C.CHANNEL] == "web"]
    with_query = web.loc[web[C.SEARCH_QUERY].notna(), C.SESSION_ID].unique().tolist()
    others = [s for s in web[C.SESSION_ID].unique().tolist() if s not in set(with_query)]
    return web, (with_query[: n // 2] + others)[:n]  # sessions with searches first: the words must agree too


def test_offline_and_online_labels_agree(pipeline: Path) -> None:
    from clicks2intent.data.world import load_world
    from clicks2intent.features import store as fs
    from clicks2intent.features import transforms as T
    from clicks2intent.intent.distill import IntentClassifier
    from clicks2intent.intent.inputs import session_texts

    layout = ArtifactLayout(pipeline)
    clf = IntentClassifier.load(layout.intent)
    assert clf.reads_text and clf.inputs_ is not None and clf.inputs_.query_words_
    world = load_world(layout.features_world)
    offline = pd.read_parquet(layout.session_intents).set_index(C.SESSION_ID)
    web, sids = _web_sessions(pipeline)
    texts = session_texts(web, sids)
    requests = [fs.inflight_request(web[web[C.SESSION_ID] == s]) for s in sids]
    inputs = {k: [r[k] for r in requests] for k in requests[0]}
    online = T.inflight_intent_transform(inputs, artifacts_dir=str(pipeline))
    assert any(t.queries for t in texts.values())
    for i, sid in enumerate(sids):
        assert T.request_text(requests[i], world) == texts[sid]  # the classifier's inputs, field by field
        row = offline.loc[sid]
        assert online[N.INFLIGHT_INTENT_CONFIDENCE][i] == pytest.approx(row[C.INTENT_CONFIDENCE], abs=1e-4)
        if row[C.INTENT_CONFIDENCE] < 0.999:  # a tie at float precision may break either way
            assert online[N.INFLIGHT_INTENT_LABEL][i] == row[C.INTENT_LABEL], sid
    # The classifier reads the words: blanking a session's searches changes what it answers.
    sid = next(s for s in sids if texts[s].queries)
    emb = np.asarray(online[N.INFLIGHT_EMBEDDING][sids.index(sid)], dtype=np.float32)
    with_words = clf.predict_one(emb, text=texts[sid])[2]
    without = clf.predict_one(emb, text=type(texts[sid])(texts[sid].pages, ()))[2]
    assert with_words != without

"""Intent labels against the simulator's hidden intents, beside a rule and a reader trained on the truth.

After ``make demo`` (or any ``c2i simulate`` world with its labels), on every web session that has a
distilled label, one run, the same sessions and bootstrap resamples for every row:

* **rule**: the word-match rule over page names and query words (the world's keywords);
* each ``--intents NAME=PATH`` (``session_intents.parquet`` of a ``c2i taxonomy distill`` run: e.g. the
  classifier taught the LLM labels as they are, and the one taught the refined labels);
* **supervised reader** (the ceiling a label that reads pages and searches can aim at): TF-IDF of the
  session's page types and search words → logistic regression trained on the *truth* of the earliest
  70 % of web sessions; AMI on the latest 30 % (the fair figure) and on all sessions.

AMI is printed for all web sessions and for the latest 30 % (where the reader did not train).

    .venv/bin/python benchmarks/intent_ceiling.py --artifacts artifacts \\
        --intents llm=/tmp/intent_llm/session_intents.parquet refined=artifacts/intent/session_intents.parquet
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clicks2intent.data.contract import read_events
from clicks2intent.data.world import load_world
from clicks2intent.intent.distill import compare_to_truth
from clicks2intent.intent.inputs import SessionInputs, session_texts
from clicks2intent.intent.rules import WordMatchRule
from clicks2intent.names import columns as C

TRAIN_SHARE = 0.7


def supervised_reader(texts: list, truth: np.ndarray, n_train: int, page_types: list[str]) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    inputs = SessionInputs(page_types).fit(texts[:n_train])
    X = inputs.transform(texts)
    lr = LogisticRegression(C=10.0, max_iter=2000).fit(X[:n_train], truth[:n_train])
    return lr.predict(X)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument(
        "--intents", nargs="+", default=[], help="NAME=session_intents.parquet (default: the demo's)"
    )
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    data = args.artifacts / "data"
    named = dict(x.split("=", 1) for x in args.intents) or {
        "distilled": str(args.artifacts / "intent" / "session_intents.parquet")
    }
    t0 = time.perf_counter()
    world = load_world(data / "world.yaml")
    events = read_events(data / "events.parquet")
    truth = pd.read_parquet(data / "truth" / "session_truth.parquet")
    truth = truth.drop_duplicates(C.SESSION_ID).set_index(truth[C.SESSION_ID].astype(str))[C.TRUE_INTENT]
    labelings = {}
    for name, path in named.items():
        frame = pd.read_parquet(path)
        labelings[name] = pd.Series(frame[C.INTENT_LABEL].to_numpy(), index=frame[C.SESSION_ID].astype(str))
    sessions = sorted(set.intersection(*(set(s.index) for s in labelings.values())) & set(truth.index))
    starts = events.groupby(events[C.SESSION_ID].astype(str))[C.EVENT_TIMESTAMP].min().reindex(sessions)
    order = list(starts.sort_values(kind="stable").index)  # time order: the reader trains on the earliest
    texts_by_id = session_texts(events, order)
    texts = [texts_by_id.get(s) for s in order]
    if any(t is None for t in texts):
        raise SystemExit("events: a labelled session has no events")
    n_train = int(TRAIN_SHARE * len(order))
    t = truth.reindex(order)
    reader = pd.Series(supervised_reader(texts, t.to_numpy(), n_train, list(world.page_types)), index=order)
    rule = WordMatchRule(world.rule_keywords()).fit().predict(events, order).reindex(order)
    rows = {"rule": rule, **{k: v.reindex(order) for k, v in labelings.items()}, "supervised reader": reader}
    result = {
        "n_sessions": len(order),
        "n_reader_train": n_train,
        "all web sessions": compare_to_truth(t, rows, "rule"),
        "latest 30 %": compare_to_truth(
            t.iloc[n_train:], {k: v.iloc[n_train:] for k, v in rows.items()}, "rule"
        ),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for part in ("all web sessions", "latest 30 %"):
        cmp = result[part]
        print(f"\nAMI against the hidden intents, {part} ({cmp['n']} sessions; reference: the rule)")
        print("| labels | AMI [95 %] | − rule [95 %] |\n|---|---:|---:|")
        for name in rows:
            m = cmp[name]
            lo, hi = m["ami_interval"]
            diff = ""
            if "ami_minus_reference" in m:
                dlo, dhi = m["ami_minus_reference_interval"]
                diff = f"{m['ami_minus_reference']:+.3f} [{dlo:+.3f}, {dhi:+.3f}]"
            note = " (trained on the truth of the earliest 70 %)" if name == "supervised reader" else ""
            print(f"| {name}{note} | {m['ami']:.3f} [{lo:.3f}, {hi:.3f}] | {diff} |")
    print(f"\n{result['seconds']} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

"""Conversion labels from an applications table: the first declared product applied for within the world's
horizon after a web session ended, by its visitor or a customer linked to it; nothing before the session."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clicks2intent.data.conversions import CONVERTED_AT, conversions_from_applications, write_conversions
from clicks2intent.data.world import load_world
from clicks2intent.errors import ContractError
from clicks2intent.names import columns as C

HARBOR = Path(__file__).resolve().parents[1] / "fixtures" / "harbor_bank" / "world.yaml"
T0 = pd.Timestamp("2025-05-01T10:00:00Z")


def _events() -> pd.DataFrame:
    rows = [  # session, visitor, minutes after T0, channel
        ("s1", "v1", 0, "web"), ("s1", "v1", 5, "web"),
        ("s2", "v2", 0, "web"),
        ("s3", "v3", 0, "web"),
        ("s4", "v4", 60 * 24 * 30, "web"),
        ("a1", "v1", 10, "app"),
    ]  # fmt: skip
    return pd.DataFrame(
        {
            C.SESSION_ID: [r[0] for r in rows],
            C.VISITOR_ID: [r[1] for r in rows],
            C.EVENT_TIMESTAMP: [T0 + pd.Timedelta(minutes=r[2]) for r in rows],
            C.CHANNEL: [r[3] for r in rows],
        }
    )


def test_labels_follow_the_horizon_the_visitor_and_the_linked_customer() -> None:
    world = load_world(HARBOR)  # horizon: 21 days
    apps = pd.DataFrame(
        {
            C.EVENT_TIMESTAMP: [
                T0 + pd.Timedelta(days=2),
                T0 + pd.Timedelta(days=3),
                T0 + pd.Timedelta(days=5),
                T0 - pd.Timedelta(days=1),
                T0 + pd.Timedelta(days=22),
            ],  # fmt: skip
            C.CONVERSION_PRODUCT: ["travel_card", "car_finance", "kids_savings", "first_home", "first_home"],
            C.VISITOR_ID: ["v1", "v1", None, "v3", "v3"],
            C.CUSTOMER_ID: [None, None, "c2", None, None],
        }
    )
    links = pd.DataFrame(
        {C.VISITOR_ID: ["v2"], C.CUSTOMER_ID: ["c2"], C.LINKED_AT: [T0 + pd.Timedelta(days=9)]}
    )
    out, report = conversions_from_applications(_events(), apps, links, world)
    label = dict(zip(out[C.SESSION_ID], out[C.CONVERSION_PRODUCT], strict=True))
    assert label == {"s1": "travel_card", "s2": "kids_savings", "s3": C.NO_CONVERSION, "s4": C.NO_CONVERSION}
    assert "a1" not in label  # app sessions are not the task's rows
    assert out.set_index(C.SESSION_ID).loc["s1", CONVERTED_AT] == T0 + pd.Timedelta(days=2)
    assert out.set_index(C.SESSION_ID).loc["s1", C.EVENT_TIMESTAMP] == T0 + pd.Timedelta(minutes=5)
    assert (report.n_converted, report.n_applications, report.n_applications_unmatched) == (2, 5, 2)


def test_bad_applications_are_one_clear_error() -> None:
    world = load_world(HARBOR)
    ok = {C.EVENT_TIMESTAMP: [T0], C.CONVERSION_PRODUCT: ["travel_card"], C.VISITOR_ID: ["v1"]}
    with pytest.raises(ContractError, match="product value 'mortgage' .* not declared"):
        conversions_from_applications(
            _events(), pd.DataFrame(ok | {C.CONVERSION_PRODUCT: ["mortgage"]}), None, world
        )
    with pytest.raises(ContractError, match="needs a visitor_id or a customer_id"):
        conversions_from_applications(_events(), pd.DataFrame(ok).drop(columns=C.VISITOR_ID), None, world)
    with pytest.raises(ContractError, match="event_timestamp: 1 value"):
        conversions_from_applications(
            _events(), pd.DataFrame(ok | {C.EVENT_TIMESTAMP: ["soon"]}), None, world
        )


def test_the_command_writes_conversions_beside_the_events(tmp_path: Path) -> None:
    world = load_world(HARBOR)
    _events().to_parquet(tmp_path / "events.parquet", index=False)
    apps = tmp_path / "applications.csv"
    pd.DataFrame(
        {
            C.EVENT_TIMESTAMP: ["2025-05-02T10:00:00Z"],
            C.CONVERSION_PRODUCT: ["travel_card"],
            C.VISITOR_ID: ["v1"],
        }
    ).to_csv(apps, index=False)
    path, report = write_conversions(tmp_path, apps, world)
    frame = pd.read_parquet(path)
    assert path.name == "conversions.parquet" and report.n_converted == 1 and len(frame) == 4

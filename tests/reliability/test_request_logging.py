"""Rejected requests: one WARNING line each in the service log naming fields and rules, never a value.

Before (hostile probe, issue 26): every 400 was logged at ERROR with a traceback holding pydantic's
``input_value=`` (4 of 6 seeded card numbers, e-mail addresses, IBANs and SSNs were found in the log of
6 rejected requests), and a 400 ``detail`` echoed an unknown JSON key that was an e-mail address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clicks2intent.serving import schemas
from clicks2intent.serving.edge import BENTOML_REQUEST_LOGGER, install_client_error_log

CARD, EMAIL, IBAN, SSN, PHONE, EMAIL_KEY = (
    "4111 1111 1111 1111", "jane.doe@example.com", "GB82WEST12345698765432", "078-05-1120",
    "+44 20 7946 0958", "john.smith@example.org",
)  # fmt: skip
EVENT = {"page_type": "home", "event_timestamp": "2024-03-01T10:00:00Z"}
# (path, body): each rejected by the schema, each carrying a seeded value where pydantic quotes input
REJECTED = [
    ("/rank_tiles", {"customer_id": CARD}),  # pattern mismatch (whitespace)
    ("/rank_tiles", {"customer_id": "c1", "k": IBAN}),  # not an integer
    ("/intent", {"session_events": [{**EVENT, "event_timestamp": SSN}]}),  # not a timestamp
    ("/rank_tiles", {"customer_id": "c1", EMAIL_KEY: 1}),  # an unknown key that is an e-mail address
    ("/intent", {"session_events": [{**EVENT, "dwell_seconds": PHONE}]}),  # not a number
    ("/rank_tiles", {"customer_id": "c1", "candidate_tiles": [EMAIL]}),  # not a tile id
]
SEEDS = (CARD, EMAIL, IBAN, SSN, PHONE, EMAIL_KEY)


def test_bentoml_request_log_of_a_validation_error_is_one_warning_without_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """BentoML's own ``log_exception`` (what its endpoint wrapper calls on a 400) through the filter."""
    from bentoml._internal.server.http_app import log_exception
    from pydantic import ValidationError

    install_client_error_log()
    request: Any = type(
        "Request", (), {"url": type("URL", (), {"path": "/rank_tiles"})(), "method": "POST"}
    )()
    caplog.set_level(logging.INFO, logger=BENTOML_REQUEST_LOGGER)
    for _, body in REJECTED:
        model = schemas.IntentRequest if "session_events" in body else schemas.RankTilesRequest
        try:
            model.model_validate(body)
        except ValidationError:
            log_exception(request)
    records = [r for r in caplog.records if r.name == BENTOML_REQUEST_LOGGER]
    assert len(records) == len(REJECTED)
    text = caplog.text
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records), text
    assert "Traceback" not in text and not [s for s in SEEDS if s in text], text
    assert "<unknown field>: extra_forbidden" in text and "customer_id: string_pattern_mismatch" in text

    try:  # a server error keeps its traceback
        raise RuntimeError("a bug")
    except RuntimeError:
        log_exception(request)
    assert caplog.records[-1].levelno == logging.ERROR and caplog.records[-1].exc_info is not None


@pytest.fixture(scope="module")
def served(pipeline: Path, tmp_path_factory: pytest.TempPathFactory, serve_c2i: Any) -> Iterator[dict]:
    """``c2i serve`` on a free loopback port, one worker, the tiny deployment; its log file."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve_c2i(pipeline, log) as (url, _):
        yield {"url": url, "log": log}


@pytest.mark.slow
def test_rejected_requests_leave_no_value_in_the_answer_or_the_service_log(served: dict) -> None:
    before = served["log"].read_text(errors="replace")
    with httpx.Client(base_url=served["url"], timeout=30) as client:
        answers = [client.post(path, json=body) for path, body in REJECTED]
    assert [a.status_code for a in answers] == [400] * len(REJECTED), [a.text for a in answers]
    time.sleep(1.0)  # the worker's log lines reach the file
    log = served["log"].read_text(errors="replace")[len(before) :]
    found = {
        "values in answers": sorted({s for a in answers for s in SEEDS if s in a.text}),
        "values in the log": sorted(s for s in SEEDS if s in log),
        "tracebacks": log.count("Traceback"),
        "input_value": log.count("input_value"),
        "one-line warnings": sum("client error on" in line for line in log.splitlines()),
    }
    clean = {"values in answers": [], "values in the log": [], "tracebacks": 0, "input_value": 0}
    assert found == {**clean, "one-line warnings": len(REJECTED)}, (found, log[-3000:])
    assert "<unknown field>" in answers[3].json()["detail"]
    print(f"{len(REJECTED)} rejected requests: {found}")

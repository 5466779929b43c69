"""LLM client against the fault-injecting server: retries, validation, cache, ledger, concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clicks2intent.intent.llm.client import (
    InvalidAnswer,
    JsonRequest,
    LLMClient,
    LLMConfigError,
    LLMSettings,
    check_schema,
    request_key,
)

SCHEMA = {
    "type": "object",
    "properties": {"label_id": {"type": "string", "enum": ["mortgage", "savings", "other"]}},
    "required": ["label_id"],
    "additionalProperties": False,
}


def _validate(data: dict) -> None:
    if data["label_id"] not in {"mortgage", "savings", "other"}:
        raise InvalidAnswer(f"label_id {data['label_id']!r} not in taxonomy")


def _settings(server: Any, tmp_path: Path, **kw: object) -> LLMSettings:
    base = {
        "model": server.model,
        "base_url": server.base_url,
        "api_key": "test",
        "timeout_s": 0.3,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retries": 3,
        "cache_path": tmp_path / "cache.sqlite",
    }
    base.update(kw)
    return LLMSettings(**base)  # type: ignore[arg-type]


def _request(marker: str) -> JsonRequest:
    msgs = [{"role": "user", "content": f"Visit: session {marker} mortgages > mortgage rates"}]
    return JsonRequest(msgs, SCHEMA, _validate)


def test_every_fault_is_retried_and_a_rerun_is_served_from_cache(fault_server: Any, tmp_path: Path) -> None:
    fault_server.plan.faults = {
        "m429": ["429", "429"],
        "m500": ["500"],
        "mtimeout": ["timeout"],
        "mmalformed": ["malformed"],
        "moffmenu": ["offmenu", "offmenu"],
        "mdead": ["offmenu*"],  # never valid: must end failed with a reason, not vanish
    }
    markers = ["m429", "m500", "mtimeout", "mmalformed", "moffmenu", "mdead", "mclean"]
    with LLMClient(_settings(fault_server, tmp_path)) as client:
        results = client.map_json([_request(m) for m in markers])
        ledger = client.ledger.to_dict()
    by = dict(zip(markers, results, strict=True))
    assert len(results) == len(markers)
    for m in (m for m in markers if m != "mdead"):
        assert by[m].status == "ok", (m, by[m].error)
        assert by[m].data == {"label_id": "mortgage"}
    assert by["mdead"].status == "failed" and "invalid answer" in by["mdead"].error
    assert by["mdead"].data is None and by["mdead"].attempts == 4
    assert by["m429"].attempts == 3 and by["moffmenu"].attempts == 3
    assert ledger["outcomes"]["rate_limited"] == 2 and ledger["outcomes"]["server_error"] == 1
    assert ledger["outcomes"]["timeout"] == 1 and ledger["outcomes"]["ok"] == 6
    assert ledger["outcomes"]["invalid_answer"] == 1 + 2 + 4
    assert ledger["failures"] == 1 and ledger["prompt_tokens"] > 0 and ledger["completion_tokens"] > 0
    n_before = fault_server.n_requests

    with LLMClient(_settings(fault_server, tmp_path)) as again:
        rerun = again.map_json([_request(m) for m in markers])
        assert again.ledger.cache_hits == len(markers) and again.ledger.api_calls == 0
    assert fault_server.n_requests == n_before  # the re-run cost no call
    assert [(r.status, r.data, r.prompt_sha256) for r in rerun] == [
        (r.status, r.data, r.prompt_sha256) for r in results
    ]


def test_retry_failed_asks_again_only_for_cached_failures(fault_server: Any, tmp_path: Path) -> None:
    fault_server.plan.faults = {"mflaky": ["500*"]}
    with LLMClient(_settings(fault_server, tmp_path, max_retries=1)) as client:
        first = client.map_json([_request("mflaky"), _request("mfine")])
    assert [r.status for r in first] == ["failed", "ok"] and "HTTP 500" in first[0].error
    fault_server.plan.faults = {}  # the endpoint recovered
    n_before = fault_server.n_requests
    with LLMClient(_settings(fault_server, tmp_path), retry_failed=True) as client:
        second = client.map_json([_request("mflaky"), _request("mfine")])
    assert [r.status for r in second] == ["ok", "ok"]
    assert fault_server.n_requests == n_before + 1 and second[1].cached


@pytest.mark.parametrize("reject_code", [500, 422])
def test_auto_format_falls_back_to_llamacpp_json_object(
    fault_server: Any, tmp_path: Path, reject_code: int
) -> None:
    fault_server.plan.accept_json_schema = False
    fault_server.plan.reject_code = reject_code
    with LLMClient(_settings(fault_server, tmp_path, cache_path=None)) as client:
        res = [client.complete_json(r.messages, r.schema, r.validate) for r in (_request("a"), _request("b"))]
    assert all(r.status == "ok" for r in res)
    styles = [req["response_format"]["type"] for req in fault_server.plan.requests]
    assert styles == ["json_schema", "json_object", "json_object"]  # one rejection, then remembered
    assert fault_server.plan.requests[-1]["response_format"]["schema"] == SCHEMA


def test_explicit_json_schema_style_sends_openai_format(fault_server: Any, tmp_path: Path) -> None:
    with LLMClient(_settings(fault_server, tmp_path, response_format="json_schema")) as client:
        assert client.complete_json(*_request("x").__dict__.values()).status == "ok"
    rf = fault_server.plan.requests[0]["response_format"]
    assert (
        rf["type"] == "json_schema" and rf["json_schema"]["schema"] == SCHEMA and rf["json_schema"]["strict"]
    )


def test_auth_error_stops_the_run(fault_server: Any, tmp_path: Path) -> None:
    fault_server.plan.faults = {"x": ["401*"]}
    with (
        LLMClient(_settings(fault_server, tmp_path)) as client,
        pytest.raises(LLMConfigError, match="HTTP 401"),
    ):
        client.complete_json(*_request("x").__dict__.values())


def test_concurrency_is_limited(fault_server: Any, tmp_path: Path) -> None:
    fault_server.plan.delay_s = 0.05
    with LLMClient(_settings(fault_server, tmp_path, concurrency=2, cache_path=None)) as client:
        res = client.map_json([_request(f"c{i}") for i in range(8)])
    assert all(r.status == "ok" for r in res)
    assert fault_server.plan.max_in_flight == 2


def test_requests_spread_over_replicas(fault_server: Any, replica_fault_server: Any, tmp_path: Path) -> None:
    for server in (fault_server, replica_fault_server):
        server.plan.delay_s = 0.05
    settings = _settings(
        fault_server, tmp_path, concurrency=2, cache_path=None, replica_urls=(replica_fault_server.base_url,)
    )
    with LLMClient(settings) as client:
        res = client.map_json([_request(f"r{i}") for i in range(8)])
    assert all(r.status == "ok" for r in res)
    assert fault_server.n_requests + replica_fault_server.n_requests == 8
    assert fault_server.n_requests >= 2 and replica_fault_server.n_requests >= 2
    assert fault_server.plan.max_in_flight == 1 and replica_fault_server.plan.max_in_flight == 1


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"label_id": "savings"}, None),
        ({"label_id": "cars"}, "not one of the allowed"),
        ({}, "required field is missing"),
        ({"label_id": "savings", "why": "x"}, "unexpected field"),
        (["savings"], "expected an object"),
        ({"label_id": 3}, "not one of the allowed"),
    ],
)
def test_check_schema(value: object, error: str | None) -> None:
    if error is None:
        check_schema(value, SCHEMA)
    else:
        with pytest.raises(InvalidAnswer, match=error):
            check_schema(value, SCHEMA)


def test_check_schema_lengths_and_arrays() -> None:
    schema = {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string", "maxLength": 3}}
    check_schema(["abc"], schema)
    for bad, msg in (([], "at least 1"), (["a", "b", "c"], "at most 2"), (["abcd"], "longer than 3")):
        with pytest.raises(InvalidAnswer, match=msg):
            check_schema(bad, schema)


def test_request_key_depends_on_model_prompt_and_schema() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    k = request_key("m", msgs, SCHEMA)
    assert k == request_key("m", [dict(m) for m in msgs], dict(SCHEMA)) and len(k) == 64
    assert k != request_key("m2", msgs, SCHEMA)
    assert k != request_key("m", [{"role": "user", "content": "hi!"}], SCHEMA)
    assert k != request_key("m", msgs, {**SCHEMA, "required": []})


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="response_format"):
        LLMSettings(model="m", response_format="xml")
    with pytest.raises(ValueError, match="concurrency"):
        LLMSettings(model="m", concurrency=0)
    with pytest.raises(ValueError, match="model"):
        LLMSettings(model="")

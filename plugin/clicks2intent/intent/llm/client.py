"""One OpenAI-compatible client wrapper with the guarantees every LLM step needs.

Why a wrapper: taxonomy generation and labelling both send many small structured requests to endpoints
that misbehave in ordinary ways (rate limits, 5xx, timeouts, a small model writing broken or off-menu
JSON). Each request here gets

* structured output: OpenAI's ``{"type": "json_schema", ...}`` or llama.cpp's
  ``{"type": "json_object", "schema": ...}`` (``response_format="auto"`` tries the first and falls back
  to the second when the server rejects it with 400/422), or ``"grammar"``: llama.cpp's own ``grammar``
  field, a GBNF grammar built here from the schema (:func:`json_schema_grammar`), with
  ``repeat_penalty: 1.0``. The embedded servers get the grammar style, so either runtime enforces the
  very same grammar and decodes greedily with no penalty: their answers agree (each runtime converting
  the schema itself gives different grammars, and their default repeat penalties differ; see
  :mod:`clicks2intent.intent.llm.server`);
* validation: the answer must parse, match the schema subset we use, and pass the caller's check
  (e.g. "label id exists in the taxonomy");
* retries with exponential backoff and jitter on 429/5xx/timeouts/connection errors (``Retry-After`` is
  honoured) and on invalid answers (re-sampled at a higher temperature with a new seed, since a
  deterministic repeat would give the same wrong answer);
* a persistent SQLite cache keyed by ``sha256(model + prompt + schema)``: a re-run costs no calls and an
  interrupted run resumes where it stopped (each answer is committed as it arrives);
* a token ledger (in memory and per call in the cache database) and a concurrency limit.

Configuration errors (401/403/404, unknown model) raise :class:`LLMConfigError` instead of failing every
request one by one: they are the operator's problem, not the session's.
"""

from __future__ import annotations

import hashlib
import json
import queue
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clicks2intent.common import settings as env
from clicks2intent.errors import ConfigError, LLMError
from clicks2intent.names.settings import LLM_MODEL

Messages = list[dict[str, str]]
Validator = Callable[[Any], None]

RESPONSE_FORMATS: tuple[str, ...] = ("auto", "json_schema", "json_object", "grammar")
STATUS_OK = "ok"
STATUS_FAILED = "failed"


class InvalidAnswer(LLMError, ValueError):
    """The endpoint answered, but the answer is unusable (bad JSON, wrong shape, label not allowed)."""


class LLMConfigError(ConfigError, LLMError):
    """The endpoint cannot serve us at all (auth, unknown model, bad URL): stop, don't fail each row."""


@dataclass
class LLMSettings:
    """Where and how to call the model. Defaults suit a small local model behind llama.cpp."""

    model: str
    base_url: str | None = None  # None: OPENAI_BASE_URL, else OpenAI's own endpoint
    api_key: str | None = None  # None: OPENAI_API_KEY; local servers accept any key
    response_format: str = "auto"  # auto | json_schema (OpenAI, vLLM) | json_object | grammar (llama.cpp)
    temperature: float = 0.0  # deterministic first attempt: reproducible and cacheable
    retry_temperature: float = 0.7  # an invalid answer is re-sampled, a repeat would be identical
    max_tokens: int = 160  # answers are tiny JSON objects; a cap stops a runaway small model
    timeout_s: float = 60.0  # per HTTP request; a timeout is retried like a 5xx
    max_retries: int = 4  # extra attempts after the first, shared by transport and validity errors
    backoff_s: float = 0.5  # first backoff; doubles per retry, with jitter in [0.5, 1.5)
    backoff_max_s: float = 8.0  # cap, also applied to a server's Retry-After
    concurrency: int = 2  # simultaneous requests; an embedded server (one slot) answers one at a time
    cache_path: Path | None = None  # SQLite file; None disables caching (tests of the raw path)
    seed: int = 0  # sampling seed sent to servers that accept one
    replica_urls: tuple[str, ...] = ()  # more endpoints serving the same model: requests go to a free one

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("LLMSettings.model: must be a non-empty model name")
        if self.response_format not in RESPONSE_FORMATS:
            raise ConfigError(
                f"LLMSettings.response_format: must be one of {RESPONSE_FORMATS}, got {self.response_format!r}"
            )
        if self.concurrency < 1:
            raise ConfigError(f"LLMSettings.concurrency: must be >= 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise ConfigError(f"LLMSettings.max_retries: must be >= 0, got {self.max_retries}")
        if self.timeout_s <= 0:
            raise ConfigError(f"LLMSettings.timeout_s: must be > 0, got {self.timeout_s}")
        if self.cache_path is not None:
            self.cache_path = Path(self.cache_path)

    @classmethod
    def from_env(cls, model: str | None = None, **overrides: Any) -> LLMSettings:
        """Read ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` and ``C2I_LLM_MODEL`` (the standard settings)."""
        model = model or env.llm_model()
        if not model:
            raise ConfigError(
                f"model: required (pass --model or set {LLM_MODEL}) when an endpoint is configured"
            )
        overrides.setdefault("base_url", env.openai_base_url())
        overrides.setdefault("api_key", env.openai_api_key())
        return cls(model=model, **overrides)


@dataclass
class LLMResult:
    """Outcome of one structured request; ``data`` is set exactly when ``status == "ok"``."""

    status: str
    data: Any
    error: str | None
    prompt_sha256: str
    cached: bool = False
    attempts: int = 0


@dataclass
class TokenLedger:
    """Counts calls and tokens so a run's cost is known (and a cached re-run visibly costs nothing)."""

    requests: int = 0
    cache_hits: int = 0
    api_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: int = 0
    outcomes: Counter = field(default_factory=Counter)  # per attempt: ok, rate_limited, timeout, …
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def outcome(self, name: str) -> None:
        with self._lock:
            self.outcomes[name] += 1

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            names = ("requests", "cache_hits", "api_calls", "prompt_tokens", "completion_tokens", "failures")
            out: dict[str, Any] = {k: getattr(self, k) for k in names}
            out["outcomes"] = dict(sorted(self.outcomes.items()))
            out["total_tokens"] = self.prompt_tokens + self.completion_tokens
        return out


class ResponseCache:
    """Validated answers (and final failures) by request hash, in SQLite, committed per answer.

    SQLite because it is in the standard library, survives a kill mid-run, and one file holds both the
    cache and the per-call ledger that an operator may want to query.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, status TEXT, "
            "content TEXT, error TEXT, attempts INTEGER, created_at REAL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (ts REAL, key TEXT, model TEXT, attempt INTEGER, "
            "outcome TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL)"
        )

    def get(self, key: str) -> tuple[str, Any, str | None, int] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status, content, error, attempts FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        status, content, error, attempts = row
        return status, (json.loads(content) if content is not None else None), error, attempts

    def put(self, key: str, model: str, result: LLMResult) -> None:
        content = json.dumps(result.data, sort_keys=True) if result.status == STATUS_OK else None
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, model, result.status, content, result.error, result.attempts, time.time()),
            )

    def log_call(
        self, key: str, model: str, attempt: int, outcome: str, usage: Any, latency_s: float
    ) -> None:
        pt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
        ct = int(getattr(usage, "completion_tokens", 0) or 0) if usage is not None else 0
        with self._lock:
            self._db.execute(
                "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), key, model, attempt, outcome, pt, ct, latency_s),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --- schema subset check ------------------------------------------------------------------------
def check_schema(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """Validate the JSON-schema subset our prompts use (object/array/string/integer/number, enum,
    required, additionalProperties=false, min/maxLength, min/maxItems). A grammar-constrained server
    already obeys it; an unconstrained one may not, and a bad answer must never reach a label."""
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidAnswer(f"{where}: {value!r} is not one of the allowed values")
    if kind == "object":
        if not isinstance(value, dict):
            raise InvalidAnswer(f"{where}: expected an object, got {type(value).__name__}")
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                raise InvalidAnswer(f"{where}.{name}: required field is missing")
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                raise InvalidAnswer(f"{where}: unexpected field(s) {extra}")
        for name, sub in props.items():
            if name in value:
                check_schema(value[name], sub, f"{where}.{name}")
    elif kind == "array":
        if not isinstance(value, list):
            raise InvalidAnswer(f"{where}: expected an array, got {type(value).__name__}")
        if len(value) < schema.get("minItems", 0):
            raise InvalidAnswer(f"{where}: needs at least {schema['minItems']} items, got {len(value)}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise InvalidAnswer(f"{where}: allows at most {schema['maxItems']} items, got {len(value)}")
        for i, item in enumerate(value):
            check_schema(item, schema.get("items", {}), f"{where}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            raise InvalidAnswer(f"{where}: expected a string, got {type(value).__name__}")
        if len(value) < schema.get("minLength", 0):
            raise InvalidAnswer(f"{where}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise InvalidAnswer(f"{where}: longer than {schema['maxLength']} characters")
    elif kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidAnswer(f"{where}: expected an integer, got {type(value).__name__}")
    elif kind == "number" and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise InvalidAnswer(f"{where}: expected a number, got {type(value).__name__}")


# --- JSON schema -> GBNF (llama.cpp's grammar format) ----------------------------------------------
_GBNF_SPACE = 'space ::= " "?'  # one optional space between tokens (no newlines: fewer answer tokens)
_GBNF_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_GBNF_INT = '"-"? ("0" | [1-9] [0-9]{0,15})'
_COMMA = '"," space'


def _gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _gbnf_repeat(expr: str, low: int, high: int | None) -> str:
    """``expr`` repeated ``low`` to ``high`` (None: unbounded) times, as a GBNF expression."""
    if high is not None and high < low:
        raise ConfigError(f"schema: maximum {high} below minimum {low}")
    if high == 0:
        return ""
    if high is None:
        return f"({expr})*" if low == 0 else f"({expr})+" if low == 1 else f"({expr}){{{low},}}"
    if low == high:
        return f"({expr})" if low == 1 else f"({expr}){{{low}}}"
    return f"({expr}){{{low},{high}}}"


def json_schema_grammar(schema: dict[str, Any]) -> str:
    """A GBNF grammar (llama.cpp's ``grammar`` field) for JSON documents matching ``schema``.

    The subset :func:`check_schema` validates: object (properties in schema order, the required ones
    mandatory; no other keys), array (items, minItems, maxItems), string (minLength, maxLength), integer,
    number, boolean, and enum anywhere. Whitespace is one optional space between tokens, as
    llama-cpp-python's own converter writes it; string characters exclude raw control characters (which
    JSON forbids: that converter lets a newline through, and the answer then fails to parse). Anything
    else raises :class:`LLMConfigError`: use ``response_format="json_schema"`` for such schemas."""
    rules: dict[str, str] = {}

    def value(sub: dict[str, Any], name: str) -> str:
        if "enum" in sub:
            alternatives = [_gbnf_literal(json.dumps(v, ensure_ascii=False)) for v in sub["enum"]]
            if not alternatives:
                raise LLMConfigError(f"schema {name}: an empty enum allows no answer")
            return "(" + " | ".join(alternatives) + ")"
        kind = sub.get("type")
        if kind == "object":
            return obj(sub, name)
        if kind == "array":
            item = value(sub.get("items", {"type": "string"}), f"{name}[]")
            low, high = int(sub.get("minItems", 0)), sub.get("maxItems")
            if high == 0:
                return '"[" space "]" space'
            more = None if high is None else int(high) - 1
            rest = _gbnf_repeat(f"{_COMMA} {item}", max(low - 1, 0), more)
            body = f"{item} {rest}" if low else f"({item} {rest})?"
            return f'"[" space {body} "]" space'
        if kind == "string":
            low, high = int(sub.get("minLength", 0)), sub.get("maxLength")
            chars = _gbnf_repeat("char", low, None if high is None else int(high))
            return f'"\\"" {chars} "\\"" space'
        if kind == "integer":
            return f"({_GBNF_INT}) space"
        if kind == "number":
            return f'({_GBNF_INT} ("." [0-9]+)? ([eE] [-+]? [0-9]+)?) space'
        if kind == "boolean":
            return '("true" | "false") space'
        raise LLMConfigError(f"schema {name}: type {kind!r} is not supported by the grammar style")

    def obj(sub: dict[str, Any], name: str) -> str:
        props = list(sub.get("properties", {}).items())
        required = set(sub.get("required", []))
        unknown = required - {k for k, _ in props}
        if unknown:
            raise LLMConfigError(f"schema {name}: required {sorted(unknown)} not among the properties")
        kvs = [
            (
                f'{_gbnf_literal(json.dumps(k, ensure_ascii=False))} space ":" space {value(v, f"{name}.{k}")}',
                k in required,
            )
            for k, v in props
        ]
        prefix = f"obj{sum(name.endswith('-0-a') for name in rules)}"  # this object's rules: objN-*

        def tail(i: int, first: bool) -> str:
            """The key-value pairs from ``i`` on (``first``: none written yet, so no comma first), as a
            rule name, or "" at the end."""
            if i == len(kvs):
                return ""
            rule = f"{prefix}-{i}-{'a' if first else 'b'}"
            if rule not in rules:
                kv, req = kvs[i]
                present = " ".join(x for x in ("" if first else _COMMA, kv, tail(i + 1, False)) if x)
                absent = "" if req else tail(i + 1, first)
                rules[rule] = present if req else f"{present} | {absent}" if absent else f"({present})?"
            return rule

        return " ".join(x for x in ('"{" space', tail(0, True), '"}" space') if x)

    root = value(schema, "$")
    lines = [f"root ::= {root}", *(f"{k} ::= {v}" for k, v in rules.items()), _GBNF_SPACE, _GBNF_CHAR]
    return "\n".join(lines) + "\n"


def failure_reason(error: str | None) -> str:
    """The reason of a failed request without its attempt count, for counting failures by kind."""
    return str(error).split(" (attempt")[0]


def request_key(model: str, messages: Messages, schema: dict[str, Any]) -> str:
    """sha256 of model + prompt (messages and the answer schema, which is part of the prompt)."""
    payload = json.dumps({"model": model, "messages": messages, "schema": schema}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class JsonRequest:
    """One structured request for :meth:`LLMClient.map_json`."""

    messages: Messages
    schema: dict[str, Any]
    validate: Validator | None = None
    name: str = "answer"


class LLMClient:
    """Structured, validated, cached, retried chat completions against any OpenAI-compatible endpoint."""

    def __init__(self, settings: LLMSettings, retry_failed: bool = False) -> None:
        import openai

        self.settings = settings
        # A cached *failure* is served again by default (a re-run is free and reproducible);
        # retry_failed=True asks the endpoint again for those requests only.
        self.retry_failed = retry_failed
        self.ledger = TokenLedger()
        self.cache = ResponseCache(settings.cache_path) if settings.cache_path is not None else None
        api_key = settings.api_key or env.openai_api_key() or "sk-no-key-needed"
        # One SDK client per endpoint; a request borrows whichever is free (replicas of a local server
        # are single-threaded processes, so spreading requests is how several cores get used).
        self._endpoints: queue.Queue[Any] = queue.Queue()
        self._all_endpoints = [
            openai.OpenAI(
                base_url=url or None,
                api_key=api_key,
                max_retries=0,  # retries are ours: one policy for transport and validity errors
                timeout=settings.timeout_s,
            )
            for url in (settings.base_url, *settings.replica_urls)
        ]
        per_endpoint = -(-settings.concurrency // len(self._all_endpoints))  # ceil: slots per endpoint
        for _ in range(per_endpoint):
            for endpoint in self._all_endpoints:
                self._endpoints.put(endpoint)
        self._style = "json_schema" if settings.response_format == "auto" else settings.response_format
        self._style_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._rng = random.Random(settings.seed)

    # --- public API -----------------------------------------------------------------------------
    def complete_json(
        self,
        messages: Messages,
        schema: dict[str, Any],
        validate: Validator | None = None,
        name: str = "answer",
    ) -> LLMResult:
        """Ask for one JSON object matching ``schema``; never raises for a per-request failure."""
        key = request_key(self.settings.model, messages, schema)
        self.ledger.add(requests=1)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None and not (self.retry_failed and hit[0] == STATUS_FAILED):
                status, data, error, attempts = hit
                self.ledger.add(cache_hits=1, failures=int(status == STATUS_FAILED))
                return LLMResult(status, data, error, key, cached=True, attempts=attempts)
        result = self._request_with_retries(key, messages, schema, validate, name)
        if result.status == STATUS_FAILED:
            self.ledger.add(failures=1)
        if self.cache is not None:
            self.cache.put(key, self.settings.model, result)
        return result

    def map_json(self, requests: Sequence[JsonRequest], progress: str | None = None) -> list[LLMResult]:
        """Run many requests with at most ``settings.concurrency`` in flight; results keep input order."""
        from tqdm.auto import tqdm

        def one(req: JsonRequest) -> LLMResult:
            return self.complete_json(req.messages, req.schema, req.validate, req.name)

        with (
            ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool,
            tqdm(total=len(requests), desc=progress, disable=progress is None, unit="req") as bar,
        ):
            futures = [pool.submit(one, r) for r in requests]
            results = []
            for fut in futures:
                results.append(fut.result())
                bar.update(1)
        return results

    def close(self) -> None:
        for endpoint in self._all_endpoints:
            endpoint.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------------
    def _structured(self, style: str, schema: dict[str, Any], name: str) -> dict[str, Any]:
        """The request arguments that constrain the answer to ``schema`` in ``style``."""
        if style == "grammar":
            # llama.cpp's fields (not OpenAI's): passed through the SDK's extra_body.
            return {"extra_body": {"grammar": json_schema_grammar(schema), "repeat_penalty": 1.0}}
        if style == "json_object":
            return {"response_format": {"type": "json_object", "schema": schema}}
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": True},
            }
        }

    def _backoff(self, retry: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.settings.backoff_max_s)
        base = min(self.settings.backoff_s * (2**retry), self.settings.backoff_max_s)
        with self._style_lock:
            return base * (0.5 + self._rng.random())

    def _request_with_retries(
        self,
        key: str,
        messages: Messages,
        schema: dict[str, Any],
        validate: Validator | None,
        name: str,
    ) -> LLMResult:
        import openai

        s = self.settings
        last_error = "no attempt made"
        invalid = 0  # invalid answers so far: each one raises temperature and changes the seed
        attempt = 0
        while attempt <= s.max_retries:
            attempt += 1
            style = self._style
            temperature = s.temperature if invalid == 0 else s.retry_temperature
            wait: float | None = None
            t0 = time.perf_counter()
            usage = None
            try:
                with self._slots:
                    endpoint = self._endpoints.get()
                    try:
                        resp = endpoint.chat.completions.create(
                            model=s.model,
                            messages=messages,  # type: ignore[arg-type]
                            temperature=temperature,
                            max_tokens=s.max_tokens,
                            seed=s.seed + invalid,
                            **self._structured(style, schema, name),
                        )
                    finally:
                        self._endpoints.put(endpoint)
                usage = resp.usage
                self.ledger.add(
                    api_calls=1,
                    prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                    completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                )
                data = self._parse(resp, schema, validate)
            except openai.RateLimitError as e:
                outcome, last_error = "rate_limited", f"HTTP 429 rate limited (attempt {attempt})"
                wait = self._backoff(attempt - 1, _retry_after(e))
            except openai.APITimeoutError:
                outcome, last_error = "timeout", f"timed out after {s.timeout_s:g}s (attempt {attempt})"
                wait = self._backoff(attempt - 1)
            except openai.APIConnectionError as e:
                outcome, last_error = "connection_error", f"connection error: {e} (attempt {attempt})"
                wait = self._backoff(attempt - 1)
            except openai.APIStatusError as e:
                code = e.status_code
                if s.response_format == "auto" and style == "json_schema" and _rejects_json_schema(e):
                    # llama.cpp's python server refuses json_schema (with a 500 wrapping a validation
                    # error; others say 400/422): switch once, for all threads, to json_object+schema.
                    with self._style_lock:
                        self._style = "json_object"
                    outcome, last_error = "format_fallback", f"HTTP {code} on json_schema; using json_object"
                    attempt -= 1  # the endpoint never saw a valid request: not a real attempt
                elif code >= 500 or code == 408:
                    outcome, last_error = "server_error", f"HTTP {code} server error (attempt {attempt})"
                    wait = self._backoff(attempt - 1, _retry_after(e))
                elif code in (401, 403, 404):
                    raise LLMConfigError(
                        f"endpoint {s.base_url or 'OpenAI default'} refused model {s.model!r}: HTTP {code} {e.message}"
                    ) from e
                else:
                    outcome, last_error = "bad_request", f"HTTP {code}: {e.message}"
                    attempt = s.max_retries + 1  # the same request will fail the same way
            except InvalidAnswer as e:
                invalid += 1
                outcome, last_error = "invalid_answer", f"invalid answer: {e} (attempt {attempt})"
            else:
                self.ledger.outcome("ok")
                if self.cache is not None:
                    self.cache.log_call(key, s.model, attempt, "ok", usage, time.perf_counter() - t0)
                return LLMResult(STATUS_OK, data, None, key, cached=False, attempts=attempt)
            self.ledger.outcome(outcome)
            if self.cache is not None:
                self.cache.log_call(key, s.model, attempt, outcome, usage, time.perf_counter() - t0)
            if wait is not None and attempt <= s.max_retries:
                time.sleep(wait)
        return LLMResult(STATUS_FAILED, None, last_error, key, cached=False, attempts=attempt)

    @staticmethod
    def _parse(resp: Any, schema: dict[str, Any], validate: Validator | None) -> Any:
        if not resp.choices:
            raise InvalidAnswer("no choices in the response")
        content = resp.choices[0].message.content
        if not content or not content.strip():
            raise InvalidAnswer("empty answer")
        try:
            data = json.loads(content)
        except json.JSONDecodeError as e:
            raise InvalidAnswer(f"malformed JSON ({e.msg} at char {e.pos}): {content[:80]!r}") from None
        check_schema(data, schema)
        if validate is not None:
            validate(data)
        return data


def _rejects_json_schema(err: Any) -> bool:
    """Whether an error response says the server does not accept ``response_format: json_schema``."""
    if err.status_code not in (400, 422, 500):
        return False
    text = f"{getattr(err, 'message', '')} {getattr(err, 'body', '')}".lower()
    return "response_format" in text or "json_object" in text or "json_schema" in text


def _retry_after(err: Any) -> float | None:
    """Seconds from a Retry-After header, when the server sent a numeric one."""
    response = getattr(err, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

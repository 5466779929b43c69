"""The embedded LLM server's child process: ``python -m clicks2intent.cli.llm_child --runtime … --port …``.

Started by :class:`clicks2intent.intent.llm.server.LocalLLMServer` (never by hand): parses its command
line and runs :func:`clicks2intent.intent.llm.server.run_child`, which dies with its parent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clicks2intent.common.net import LOOPBACK
from clicks2intent.intent.llm.server import RUNTIMES, ChildSettings, ServerConfig, run_child


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clicks2intent.cli.llm_child")
    parser.add_argument("--runtime", choices=RUNTIMES, required=True)
    parser.add_argument("--parent-pid", type=int, required=True, help="the process this server dies with")
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=ServerConfig.n_ctx)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="after --: more runtime settings (see ServerConfig)")
    a = parser.parse_args(argv)
    settings = ChildSettings(
        runtime=a.runtime,
        parent_pid=a.parent_pid,
        model=a.model,
        alias=a.alias,
        port=a.port,
        host=a.host,
        n_ctx=a.n_ctx,
        threads=a.threads,
        extra=tuple(a.extra),
    )
    return run_child(settings)


if __name__ == "__main__":
    sys.exit(main())

"""A Ctrl-C that ``main`` (or a command) handled must not turn into a SIGINT death at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

PROBE = textwrap.dedent(
    """
    import sys
    from clicks2intent.cli import main
    main(["settings"])  # every module the command needs is imported before the interrupt
    try:  # a Ctrl-C landing in code built by exec() of a string, as dataclasses build __init__
        exec("import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nwhile True: pass")
    except KeyboardInterrupt:
        pass
    sys.exit(main(["settings"]))
    """
)


def test_a_handled_interrupt_leaves_the_exit_code_alone_under_python_m(
    tmp_path: Path, as_from_a_terminal: Callable[[], None]
) -> None:
    """CPython 3.11 would kill ``python -m`` with SIGINT at exit here (returncode -2); ``main`` clears it."""
    (tmp_path / "interrupted_probe.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "interrupted_probe"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=as_from_a_terminal,
    )
    assert done.returncode == 0, done.stderr[-2000:]

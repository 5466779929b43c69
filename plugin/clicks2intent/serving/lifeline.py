"""The service's processes end with the process that started them, however it ends.

``c2i serve`` starts ``bentoml serve`` in its own process group (so a SIGTERM stops the whole group);
that also meant a SIGKILLed ``c2i serve`` left ``bentoml serve`` and its workers running, holding the
port. Two links, one per generation:

* :func:`parent_death_signal`: a ``preexec_fn`` that asks Linux to send the child SIGTERM when the
  thread that started it ends (``prctl(PR_SET_PDEATHSIG)``, as the embedded LLM server does); BentoML
  then stops its workers as it would on Ctrl-C.
* :func:`exit_when_orphaned`: each worker watches its parent (BentoML's supervisor); a worker whose
  parent is gone — the supervisor SIGKILLed or crashed, so nobody would ever stop it — asks itself to
  shut down (SIGTERM: uvicorn finishes the requests in flight) and leaves at once if that hangs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
ORPHAN_POLL_S = 0.5  # how often a worker looks at its parent id
ORPHAN_GRACE_S = 5.0  # then SIGTERM to itself; still alive after this: exit at once


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive ``sig`` when the starting thread ends; None off Linux.

    libc is loaded here, in the parent: the function that runs between fork and exec only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call: the signal would never come
            os._exit(1)

    return preexec


def exit_when_orphaned(poll_s: float = ORPHAN_POLL_S, grace_s: float = ORPHAN_GRACE_S) -> threading.Thread:
    """Watch this process's parent from a daemon thread; when it changes (reparented: the parent is
    gone), SIGTERM this process, and ``os._exit`` if it is still running ``grace_s`` later."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        logger.warning("worker %d: its supervisor (pid %d) is gone; shutting down", os.getpid(), parent)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="c2i-orphan-watch", daemon=True)
    thread.start()
    return thread

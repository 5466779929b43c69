"""Job outputs written whole or not at all, by one job at a time; what killed jobs left is cleaned up.

Every job writer goes through this module:

* :func:`atomic_output` (one file) or :class:`AtomicFile` (a file written over time): the job writes a
  temporary name of its own beside the output (``.<name>.c2i-<pid>-<start>-<random>.tmp``) and renames
  it over the output only when complete (``os.replace``, atomic on one file system). A reader sees the
  old file or the new one, never part of one; a failed or killed job leaves the old one in place.
* :func:`exclusive`: one writer per output. An advisory ``fcntl.flock`` on ``<output>.lock`` (beside a
  file, or beside a directory of outputs), taken without waiting: a second writer is refused with one
  line naming the lock and its holder (:class:`~clicks2intent.errors.OutputBusyError`, exit code 4), not
  left to swap files under the first. The kernel drops the lock when its holder dies, even on SIGKILL.
* :func:`job_temp_dir`: a scratch directory named after its owner process, like the temporary files.
* :func:`remove_stale`: temporary files and scratch directories whose owner process is gone (pid no
  longer running, or running but started at another time: a reused pid) are removed by the next job
  that writes there. Only names this module makes are touched.

While a job holds its output, a disk-full, read-only or permission error is re-raised as
:class:`~clicks2intent.errors.OutputIOError` naming the output (pyarrow's errors name no path); the CLI
prints it as one line, exit code 3.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from clicks2intent.errors import Clicks2IntentError, OutputBusyError, OutputIOError

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
TMP_SUFFIX = ".tmp"
# errnos that can only mean "the output cannot be written here" (a read never fails so): one clear line.
IO_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
_IO_WORDS = ("No space left on device", "Disk quota exceeded", "File too large", "Read-only file system")
# <prefix>c2i-<pid>-<start ticks>-<8 hex>[.tmp]: the owner of a temporary name, and where it ends.
_OWNER_RE = re.compile(r"c2i-(\d+)-(\d+)-[0-9a-f]{8}(?:\.tmp)?$")


def _start_ticks(pid: int) -> int:
    """The process's start time (clock ticks since boot; 0 where /proc cannot tell): with the pid, it
    tells a running owner from a process that reused its pid (a container's job is often pid 1)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def owner_tag() -> str:
    """``c2i-<pid>-<start>-<random>``: unique to this process and call, and names its owner."""
    pid = os.getpid()
    return f"c2i-{pid}-{_start_ticks(pid)}-{secrets.token_hex(4)}"


def owner_alive(name: str) -> bool | None:
    """Is the process that made the temporary ``name`` still running? None: not a name of ours."""
    match = _OWNER_RE.search(name)
    if match is None:
        return None
    pid, start = int(match[1]), int(match[2])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: running
    seen = _start_ticks(pid)
    return not (seen and start and seen != start)


def remove_stale(directory: str | Path, prefix: str) -> list[Path]:
    """Remove the temporary files and directories ``<prefix>c2i-…`` in ``directory`` whose owner is gone;
    returns what was removed."""
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = [p for p in directory.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for path in entries:
        if owner_alive(path.name) is not False:
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    if removed:
        logger.info("removed %d leftover(s) of killed jobs in %s: %s", len(removed), directory,
                    ", ".join(p.name for p in removed[:5]))  # fmt: skip
    return removed


def job_temp_dir(parent: str | Path, prefix: str) -> Path:
    """A new scratch directory ``<parent>/<prefix>c2i-<pid>-…``; those of dead jobs are removed first."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent, prefix)
    path = parent / f"{prefix}{owner_tag()}"
    path.mkdir()
    return path


def _is_io_failure(err: BaseException) -> bool:
    if isinstance(err, Clicks2IntentError) or not isinstance(err, OSError):
        return False
    return err.errno in IO_ERRNOS or any(w in str(err) for w in _IO_WORDS)


def io_failure(err: OSError, path: Path) -> OutputIOError:
    """``writing <path>: <reason>`` for an OSError a job hit while writing ``path``."""
    if err.errno in errno.errorcode:  # the system's words, not a library's wrapping of them
        reason = f"{os.strerror(err.errno)} ({errno.errorcode[err.errno]})"
    else:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return OutputIOError(f"writing {path}: {reason}")


def lock_path(path: str | Path) -> Path:
    """The lock file of an output file or output directory: ``<path>.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        return "another job"
    return f"process {pid}" if pid.isdigit() else "another job"


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[Path]:
    """Hold the output ``path`` (a file or a directory of outputs) for this job, or raise
    :class:`~clicks2intent.errors.OutputBusyError` at once if another job holds it. Inside, an I/O
    failure (disk full, read-only, permission) becomes :class:`~clicks2intent.errors.OutputIOError`
    naming ``path``. The lock file is removed on the way out."""
    import fcntl

    path = Path(path)
    lock = lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise io_failure(err, path) from None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise io_failure(err, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusyError(
                f"{path}: {_holder(lock)} is writing it (lock {lock}); wait for it to finish, or write "
                "elsewhere"
            ) from None
        try:  # the holder before us may have removed the file after we opened it: lock the live one
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        with contextlib.suppress(OSError):  # the pid is for the busy message only
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield path
        except BaseException as err:
            if _is_io_failure(err):
                raise io_failure(err, path) from None  # type: ignore[arg-type]
            raise
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # before the unlock: a waiter that opened it re-checks the inode (above)
        os.close(fd)


class AtomicFile:
    """One output file written under a temporary name of this job and renamed over ``path`` on
    :meth:`commit`; :meth:`abort` (or an exception in a ``with`` block) removes the temporary file.

    ``lock``: hold ``path``'s lock (:func:`exclusive`) from creation to commit or abort; False where the
    caller already holds the job's lock (a directory of outputs)."""

    def __init__(self, path: str | Path, *, lock: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock: contextlib.ExitStack | None = None
        if lock:
            self._lock = contextlib.ExitStack()
            self._lock.enter_context(exclusive(self.path))
        prefix = f".{self.path.name}."
        remove_stale(self.path.parent, prefix)
        self.tmp = self.path.with_name(f"{prefix}{owner_tag()}{TMP_SUFFIX}")
        self.done = False

    def commit(self) -> Path:
        """Rename the complete temporary file over the output (durable: flushed to disk first)."""
        try:
            with open(self.tmp, "rb+") as f:  # noqa: PTH123 - an fsync needs the descriptor
                os.fsync(f.fileno())
            os.replace(self.tmp, self.path)
        except OSError as err:
            self.abort()
            raise io_failure(err, self.path) from None
        self.done = True
        self._release()
        return self.path

    def abort(self) -> None:
        """Remove the temporary file; the output (if any) stays as it was."""
        with contextlib.suppress(OSError):
            self.tmp.unlink()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.close()

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if err is None:
            self.commit()
            return
        self.abort()
        if _is_io_failure(err):
            raise io_failure(err, self.path) from None  # type: ignore[arg-type]


def atomic_output(path: str | Path, *, lock: bool = True) -> AtomicFile:
    """``with atomic_output(path) as tmp: write(tmp)``: ``path`` appears complete when the block ends
    without an error, or not at all (see :class:`AtomicFile`)."""
    return AtomicFile(path, lock=lock)


def write_text(path: str | Path, text: str, *, lock: bool = True) -> Path:
    """Write UTF-8 text to ``path`` atomically (and exclusively, unless the caller holds the lock)."""
    with atomic_output(path, lock=lock) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)

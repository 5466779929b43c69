"""A full disk: one line naming the output, exit code 3, the previous output left as it was, no leftovers.

Before (hostile probe on a 2 MB tmpfs): ``validate``, ``embed`` and ``features build`` printed 21-28-line
tracebacks and exited 1, the code ``validate`` documents for "rows were rejected"; ``validate --out``
left a truncated file behind. The disk is a real 2 MB tmpfs where this process may mount one (root);
elsewhere each command runs with ``RLIMIT_FSIZE`` (a file may not grow past a few KB: the kernel fails
the write with EFBIG, through the same real write path).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clicks2intent.errors import EXIT_IO
from clicks2intent.names.paths import ArtifactLayout

pytestmark = pytest.mark.slow
C2I = str(Path(sys.executable).with_name("c2i"))
FREE_BYTES = 16 * 1024  # what is left on the small disk for the command's output


def _mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    """(a directory whose file system has FREE_BYTES left, True) or (a plain directory, False: the
    commands then run with a file-size limit instead)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = _mount_tmpfs(where)
    try:
        if mounted:
            stat = os.statvfs(where)
            filler = stat.f_bavail * stat.f_frsize - FREE_BYTES
            (where / "filler").write_bytes(b"\0" * max(0, filler))
        yield where, mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], check=False)


def _limit_file_size() -> None:  # in the child, before exec: writes past the limit fail with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FREE_BYTES, FREE_BYTES))


def _run(argv: list[str], real_disk: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [C2I, *argv], capture_output=True, text=True, timeout=300, check=False,
        preexec_fn=None if real_disk else _limit_file_size,
    )  # fmt: skip


def _leftovers(directory: Path) -> list[str]:
    return sorted(
        p.name for p in directory.rglob("*") if p.name.endswith((".tmp", ".lock")) or ".spill-" in p.name
    )


def _one_line(done: subprocess.CompletedProcess[str], command: str, path: Path) -> str:
    assert done.returncode == EXIT_IO, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith(f"c2i {command}: error:")]
    assert f"writing {path}" in line and ("ENOSPC" in line or "EFBIG" in line), line
    return line


def test_validate_on_a_full_disk(pipeline: Path, disk: tuple[Path, bool]) -> None:
    where, real = disk
    out = where / "clean.parquet"
    out.write_bytes(b"the previous run's output")
    done = _run(["validate", str(ArtifactLayout(pipeline).events), "--out", str(out)], real)
    print(_one_line(done, "validate", out))
    assert out.read_bytes() == b"the previous run's output"
    assert _leftovers(where) == []


def test_embed_on_a_full_disk(pipeline: Path, disk: tuple[Path, bool]) -> None:
    where, real = disk
    layout = ArtifactLayout(pipeline)
    out = where / "session_embeddings.parquet"
    done = _run(["embed", "--encoder", str(layout.encoder), "--events", str(layout.events), "--out", str(out),
                 "--quiet", "--max-rows-in-memory", "500"], real)  # fmt: skip
    print(_one_line(done, "embed", out))
    assert not out.exists() and _leftovers(where) == []


def test_features_build_on_a_full_disk(pipeline: Path, disk: tuple[Path, bool]) -> None:
    where, real = disk
    layout = ArtifactLayout(pipeline)
    out = where / "features"
    done = _run(["features", "build", "--data", str(layout.data), "--embeddings", str(layout.embeddings),
                 "--intents", str(layout.session_intents), "--intent-model", str(layout.intent),
                 "--out", str(out)],
                real)  # fmt: skip
    print(_one_line(done, "features", out))
    assert _leftovers(where) == []
